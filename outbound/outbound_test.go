package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseHostNormalises(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0X7F000001", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0x7f.0.0.0x1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"0177.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"127.000.000.001", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"2130706433.", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"0.0.0.0", "0.0.0.0"},
		{"00", "0.0.0.0"},
		{"[::]", "::"},
		{"::", "::"},
		{"[::1]", "::1"},
		{"::1", "::1"},
		{"[0:0:0:0:0:0:0:1]", "::1"},
		{"[::ffff:127.0.0.1]", "127.0.0.1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"[::ffff:7f00:1]", "127.0.0.1"},
		{"::FFFF:7F00:1", "127.0.0.1"},
		{"[::127.0.0.1]", "127.0.0.1"},
		{"[::7f00:1]", "127.0.0.1"},
		{"[fe80::1%eth0]", "fe80::1"},
		{"fe80::1%25eth0", "fe80::1"},
		{"[::1%lo]", "::1"},
		{"169.254.169.254", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"2852039166", "169.254.169.254"},
		{"0251.0376.0251.0376", "169.254.169.254"},
		{"10.1", "10.0.0.1"},
		{"LOCALHOST", "localhost"},
		{"localhost.", "localhost"},
		{"Foo.LocalHost", "foo.localhost"},
		{"Registry.Example.COM.", "registry.example.com"},
		{"my_host.internal", "my_host.internal"},
		{"0x1g", "0x1g"},
		{"1.2.3.x", "1.2.3.x"},
	} {
		h, err := ParseHost(tt.in)
		if err != nil || h.Name != tt.want {
			t.Errorf("ParseHost(%q) = %q, %v; want %q", tt.in, h.Name, err, tt.want)
		}
		if err == nil && h.IsAddr() != (netip.MustParseAddr("::").IsValid() && parseable(tt.want)) {
			t.Errorf("ParseHost(%q).IsAddr() = %v", tt.in, h.IsAddr())
		}
	}
}

func parseable(s string) bool { _, err := netip.ParseAddr(s); return err == nil }

func TestParseHostRefusesMalformed(t *testing.T) {
	for _, in := range []string{
		"", ".", "..", "1.2.3.4.5", "256.0.0.1", "1.256.0.1", "4294967296", "0x100000000", "127.0.0.08",
		"08", "[::1", "::1]", "[127.0.0.1]", "[example.com]", "[]", "[fe80::1%]",
		"-oProxyCommand=x", "a.-b.com", "a b", "a..b", "ex%41mple.com", "127.0.0.1%eth0", "é.com",
		"a/b", "a@b", ":::", "1:2", "host:80", strings.Repeat("a", 300), strings.Repeat("a", 64) + ".com",
	} {
		if h, err := ParseHost(in); err == nil {
			t.Errorf("ParseHost(%q) = %+v, want an error", in, h)
		} else if len(err.Error()) > 180 {
			t.Errorf("ParseHost(%q) error is %d characters: input not clipped", in, len(err.Error()))
		}
	}
}

// fakeDNS answers names from a table; others do not resolve.
func fakeDNS(table map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, s := range table[host] {
			out = append(out, netip.MustParseAddr(s))
		}
		if len(out) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return out, nil
	}
}

func testPolicy(t *testing.T, allow string) *Policy {
	t.Helper()
	p, err := New(allow, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.lookup = fakeDNS(map[string][]string{
		"public.test":       {"93.184.216.34"},
		"public6.test":      {"2606:4700::1111"},
		"rebind.test":       {"127.0.0.1"},
		"mixed.test":        {"93.184.216.34", "10.0.0.1"},
		"mapped.test":       {"::ffff:192.168.1.1"},
		"metadata.test":     {"169.254.169.254"},
		"registry.internal": {"10.1.2.3"},
		"mirror.test":       {"10.0.0.7"},
	})
	return p
}

func TestCheckRefusesNonPublicAddresses(t *testing.T) {
	p := testPolicy(t, "")
	ctx := context.Background()
	for _, tt := range []struct{ host, why string }{
		{"127.0.0.1", "loopback"}, {"2130706433", "(127.0.0.1) is a loopback"}, {"0x7f000001", "loopback"},
		{"0x7f.1", "loopback"}, {"0177.0.0.1", "loopback"}, {"127.1", "loopback"}, {"127.0.1", "loopback"},
		{"127.0.0.1.", "loopback"}, {"127.255.255.254", "loopback"}, {"::1", "loopback"}, {"[::1]", "loopback"},
		{"::ffff:127.0.0.1", "loopback"}, {"::ffff:7f00:1", "loopback"}, {"[::ffff:7f00:1]", "loopback"},
		{"localhost", "loopback"}, {"localhost.", "loopback"}, {"LocalHost", "loopback"}, {"api.localhost", "loopback"},
		{"0", "unspecified"}, {"0.0.0.0", "unspecified"}, {"[::]", "unspecified"}, {"0.1.2.3", "reserved"},
		{"169.254.169.254", "metadata"}, {"0xa9fea9fe", "metadata"}, {"[::ffff:169.254.169.254]", "metadata"},
		{"169.254.0.1", "link-local"}, {"fe80::1", "link-local"}, {"[fe80::1%eth0]", "link-local"},
		{"10.0.0.1", "private"}, {"10.1", "private"}, {"172.16.0.1", "private"}, {"172.31.255.255", "private"},
		{"192.168.1.1", "private"}, {"100.64.0.1", "private"}, {"100.127.255.255", "private"},
		{"fc00::1", "private"}, {"fd12:3456::1", "private"}, {"fec0::1", "private"},
		{"224.0.0.1", "multicast"}, {"239.255.255.250", "multicast"}, {"ff02::1", "multicast"},
		{"255.255.255.255", "reserved"}, {"240.0.0.1", "reserved"}, {"192.0.2.1", "reserved"},
		{"198.18.0.1", "reserved"}, {"203.0.113.9", "reserved"}, {"2001:db8::1", "reserved"},
		{"64:ff9b::7f00:1", "loopback"}, {"64:ff9b::a00:1", "private"}, {"2002:7f00:1::", "loopback"},
		{"2002:c0a8:101::1", "private"}, {"100::1", "reserved"}, {"2001::1", "reserved"}, {"::2", "reserved"},
		{"rebind.test", "resolves to 127.0.0.1, a loopback"}, {"mixed.test", "resolves to 10.0.0.1"},
		{"mapped.test", "resolves to 192.168.1.1"}, {"metadata.test", "metadata"},
		{"nx.test", "does not resolve"}, {"-oProxyCommand=x", "starting with '-'"}, {"1.2.3.4.5", "not a valid"},
	} {
		err := p.Check(ctx, tt.host, "5000")
		var r *Refusal
		if !errors.As(err, &r) {
			t.Errorf("Check(%q) = %v, want a refusal", tt.host, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.why) || !strings.HasPrefix(err.Error(), "host ") {
			t.Errorf("Check(%q) = %q, want it to say %q", tt.host, err, tt.why)
		}
		if tt.why != "does not resolve" && !strings.Contains(tt.why, "valid") && !strings.Contains(tt.why, "'-'") && !strings.Contains(err.Error(), "--allow-hosts") {
			t.Errorf("Check(%q) = %q does not say how to allow it", tt.host, err)
		}
		if err := p.CheckLiteral(tt.host, "5000"); err == nil && !strings.HasSuffix(tt.host, ".test") {
			t.Errorf("CheckLiteral(%q) allowed it", tt.host)
		}
	}
	want := "host 127.0.0.1:5000 is a loopback address; this server does not reach those unless an admin adds it to --allow-hosts"
	if err := p.Check(ctx, "127.0.0.1", "5000"); err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestCheckAllowsPublicAddresses(t *testing.T) {
	p := testPolicy(t, "")
	for _, h := range []string{"8.8.8.8", "1.1.1.1", "134744072", "0x8080808", "[2606:4700::1111]", "64:ff9b::808:808",
		"public.test", "Public.Test.", "public6.test", "::ffff:8.8.8.8"} {
		if err := p.Check(context.Background(), h, "443"); err != nil {
			t.Errorf("Check(%q) = %v", h, err)
		}
	}
	// Image references are not looked up: a name passes CheckLiteral even when it does not resolve.
	for _, h := range []string{"docker.io", "nx.test", "rebind.test", "8.8.8.8"} {
		if err := p.CheckLiteral(h, ""); err != nil {
			t.Errorf("CheckLiteral(%q) = %v", h, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	p := testPolicy(t, " 127.0.0.1:5000 , registry.internal,LOCALHOST.:8080,[::1]:443, 10.0.0.7,0x0a000009:9")
	ctx := context.Background()
	for _, tt := range []struct {
		host, port string
		ok         bool
	}{
		{"127.0.0.1", "5000", true},
		{"2130706433", "5000", true}, // the allow-list matches the normalised address
		{"[::ffff:127.0.0.1]", "5000", true},
		{"127.1", "5000", true},
		{"127.0.0.1", "5001", false}, // host:port allows that port only
		{"127.0.0.1", "", false},
		{"localhost", "5000", false}, // names are not resolved for matching
		{"registry.internal", "1", true},
		{"REGISTRY.internal.", "443", true},
		{"localhost", "8080", true},
		{"localhost", "8081", false},
		{"::1", "443", true},
		{"::1", "80", false},
		{"mirror.test", "443", true}, // resolves to an allow-listed address
		{"10.0.0.7", "22", true},
		{"10.0.0.9", "9", true},
		{"10.0.0.9", "10", false},
		{"10.0.0.8", "22", false},
	} {
		err := p.Check(ctx, tt.host, tt.port)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q, %q) = %v, want allowed %v", tt.host, tt.port, err, tt.ok)
		}
		if lit := p.CheckLiteral(tt.host, tt.port); tt.ok && lit != nil {
			t.Errorf("CheckLiteral(%q, %q) = %v, want allowed", tt.host, tt.port, lit)
		}
	}
	if got := strings.Join(p.AllowList(), ","); got != "127.0.0.1:5000,registry.internal,localhost:8080,[::1]:443,10.0.0.7,10.0.0.9:9" {
		t.Errorf("AllowList() = %s", got)
	}
}

func TestAllowListRefusesMalformedEntries(t *testing.T) {
	for _, s := range []string{"http://r.example.com", "r.example.com/x", "r:0", "r:65536", "r:", "r:http", "a b",
		"[::1", "[::1]x", "x:y:z", "*.example.com", "user@host", "r:08", "2130706433:-1", "1.2.3.4.5", "[::1]:"} {
		if _, err := New(s, nil); err == nil {
			t.Errorf("New(%q) accepted it", s)
		} else if !strings.Contains(err.Error(), "--allow-hosts entry") {
			t.Errorf("New(%q) = %q, want a sentence naming the entry", s, err)
		}
	}
	if p, err := New(",, ,", nil); err != nil || len(p.AllowList()) != 0 {
		t.Errorf("empty entries: %v %v", p.AllowList(), err)
	}
}

func TestNilPolicyRefuses(t *testing.T) {
	var p *Policy
	if err := p.Check(context.Background(), "127.0.0.1", "80"); err == nil {
		t.Fatal("a nil policy allowed loopback")
	}
	if err := p.CheckLiteral("0x7f.1", ""); err == nil {
		t.Fatal("a nil policy allowed loopback")
	}
	if _, err := p.DialContext(context.Background(), "tcp", "127.0.0.1:1"); err == nil {
		t.Fatal("a nil policy dialled loopback")
	}
}

func TestIsLoopback(t *testing.T) {
	for h, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "2130706433": true, "[::1]": true, "::1": true,
		"::ffff:127.0.0.1": true, "x.localhost": true, "127.1": true, "10.0.0.1": false, "example.com": false, "": false} {
		if got := IsLoopback(h); got != want {
			t.Errorf("IsLoopback(%q) = %v", h, got)
		}
	}
}

func listen(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), accepted
}

func TestDialChecksTheAddressDialled(t *testing.T) {
	addr, accepted := listen(t)
	_, port, _ := net.SplitHostPort(addr)
	ctx := context.Background()
	strict := testPolicy(t, "")
	for _, a := range []string{addr, "2130706433:" + port, "0x7f.1:" + port, "[::ffff:127.0.0.1]:" + port, "localhost:" + port, "LOCALHOST.:" + port, "0:" + port} {
		_, err := strict.DialContext(ctx, "tcp", a)
		var r *Refusal
		if !errors.As(err, &r) {
			t.Errorf("dial %s = %v, want a refusal", a, err)
		}
	}
	// A name that resolves to loopback at dial time is refused at the socket, before connecting.
	if _, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", "vm"); err == nil {
		_, err := strict.DialContext(ctx, "tcp", "vm:"+port)
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(err.Error(), "resolves to 127.0.0.1") {
			t.Errorf("dial vm:%s = %v, want a refusal naming the address", port, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d refused dials reached the listener", n)
	}
	open := testPolicy(t, addr)
	for _, a := range []string{addr, "2130706433:" + port, "127.1:" + port} {
		c, err := open.DialContext(ctx, "tcp", a)
		if err != nil {
			t.Errorf("allow-listed dial %s = %v", a, err)
			continue
		}
		c.Close()
	}
	named := testPolicy(t, "localhost:"+port)
	if c, err := named.DialContext(ctx, "tcp", "localhost:"+port); err != nil {
		t.Errorf("allow-listed name: %v", err)
	} else {
		c.Close()
	}
}

func TestDialControlRefusesRebinding(t *testing.T) {
	// The socket-level check, as it sees a resolved address.
	p := testPolicy(t, "10.0.0.7:443")
	for _, tt := range []struct {
		addr string
		ok   bool
	}{{"93.184.216.34:443", true}, {"127.0.0.1:443", false}, {"[::ffff:127.0.0.1]:443", false}, {"[::1]:443", false},
		{"169.254.169.254:80", false}, {"10.0.0.7:443", true}, {"10.0.0.7:80", false}, {"[fe80::1%eth0]:443", false}} {
		ap := netip.MustParseAddrPort(tt.addr)
		a := unwrap(ap.Addr())
		ok := p.allowed(hostOf(a), fmt.Sprint(ap.Port())) || classify(a) == ""
		if ok != tt.ok {
			t.Errorf("%s: allowed %v, want %v", tt.addr, ok, tt.ok)
		}
	}
}

func TestDialErrorsLookAlike(t *testing.T) {
	// A closed port and a port that never answers give the same words: no port map.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	p := testPolicy(t, closed+",93.184.216.34")
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	_, e1 := p.DialContext(context.Background(), "tcp", closed)
	_, e2 := p.DialContext(ctx, "tcp", "93.184.216.34:80") // times out at once
	var d1, d2 *DialError
	if !errors.As(e1, &d1) || !errors.As(e2, &d2) {
		t.Fatalf("dial errors %T %v / %T %v, want *DialError", e1, e1, e2, e2)
	}
	norm := func(s string) string {
		return strings.NewReplacer(closed, "X", "93.184.216.34:80", "X").Replace(s)
	}
	if norm(e1.Error()) != norm(e2.Error()) || norm(e1.Error()) != "could not reach host X" {
		t.Fatalf("closed port: %q, silent address: %q", e1, e2)
	}
	for _, word := range []string{"refused", "timeout", "i/o", "unreachable", "deadline"} {
		if strings.Contains(e1.Error()+e2.Error(), word) {
			t.Fatalf("dial errors say %q: %q %q", word, e1, e2)
		}
	}
}

func TestClientChecksRedirects(t *testing.T) {
	var hitInner atomic.Int32
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hitInner.Add(1)
		io.WriteString(w, "secret")
	}))
	defer inner.Close()
	var outer *httptest.Server
	outer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.WriteHeader(200)
		case "/loop":
			http.Redirect(w, r, outer.URL+"/loop", http.StatusTemporaryRedirect)
		case "/ftp":
			http.Redirect(w, r, "ftp://example.com/x", http.StatusFound)
		case "/numeric":
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(inner.URL, "http://"))
			http.Redirect(w, r, "http://2130706433:"+port+"/", http.StatusFound)
		default:
			http.Redirect(w, r, inner.URL+"/x", http.StatusTemporaryRedirect)
		}
	}))
	defer outer.Close()
	outerHost := strings.TrimPrefix(outer.URL, "http://")
	p := testPolicy(t, outerHost)
	c := p.Client()
	if resp, err := c.Get(outer.URL + "/v2/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("allow-listed host: %v", err)
	}
	for _, path := range []string{"/blob", "/numeric"} {
		_, err := c.Get(outer.URL + path)
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("redirect %s to a loopback address: %v, want a refusal", path, err)
		}
	}
	if _, err := c.Get(outer.URL + "/loop"); err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("redirect loop: %v", err)
	}
	if _, err := c.Get(outer.URL + "/ftp"); err == nil {
		t.Errorf("redirect to ftp followed")
	}
	if n := hitInner.Load(); n != 0 {
		t.Fatalf("the refused server was reached %d times", n)
	}
	// Without the redirect check, the dial-time check still refuses.
	plain := &http.Client{Transport: p.Transport()}
	var r *Refusal
	if _, err := plain.Get(outer.URL + "/blob"); !errors.As(err, &r) {
		t.Fatalf("transport redirect to loopback: %v, want a refusal", err)
	}
	if hitInner.Load() != 0 {
		t.Fatal("the refused server was reached")
	}
}

func TestTransportIgnoresProxies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") }))
	defer srv.Close()
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")
	p := testPolicy(t, strings.TrimPrefix(srv.URL, "http://"))
	if p.Transport().Proxy != nil {
		t.Fatal("the transport has a proxy function")
	}
	resp, err := p.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "direct" {
		t.Fatalf("got %q", b)
	}
}

func TestRedirectCheckUsesDefaultPorts(t *testing.T) {
	p := testPolicy(t, "127.0.0.1:443")
	req := func(u string) *http.Request {
		pu, _ := url.Parse(u)
		return (&http.Request{URL: pu}).WithContext(context.Background())
	}
	if err := p.CheckRedirect(req("https://127.0.0.1/x"), nil); err != nil {
		t.Errorf("https default port: %v", err)
	}
	if err := p.CheckRedirect(req("http://127.0.0.1/x"), nil); err == nil {
		t.Errorf("http on port 80 allowed by a :443 entry")
	}
}

func TestQuoteClips(t *testing.T) {
	if got := Quote("127.0.0.1:5000"); got != "127.0.0.1:5000" {
		t.Errorf("plain host quoted: %s", got)
	}
	if got := Quote("a b"); got != `"a b"` {
		t.Errorf("Quote(a b) = %s", got)
	}
	long := strings.Repeat("x", 500)
	if got := Quote(long); len([]rune(got)) > 101 {
		t.Errorf("Quote kept %d characters", len(got))
	}
}
