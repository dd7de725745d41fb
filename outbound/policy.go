package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Policy is the allow-list and the rules every outbound request on a user's
// behalf goes through. The zero value and a nil *Policy refuse every
// non-public address and allow nothing extra.
type Policy struct {
	allow []entry
	log   *slog.Logger
	// lookup resolves names; tests replace it.
	lookup    func(ctx context.Context, host string) ([]netip.Addr, error)
	transport *http.Transport
}

// entry is one allow-list item: a host name or an address, and a port ("" for every port).
type entry struct {
	name string
	addr netip.Addr
	port string
}

func (e entry) String() string {
	h := e.name
	if e.addr.Is6() {
		h = "[" + h + "]"
	}
	if e.port != "" {
		return h + ":" + e.port
	}
	return h
}

// MaxRedirects is how many redirects one request may follow.
const MaxRedirects = 10

// resolveTimeout bounds a name lookup made to check a host.
const resolveTimeout = 5 * time.Second

// New parses allowHosts (comma-separated "host" or "host:port"; IPv6 in
// brackets with a port) into a Policy. A malformed entry is an error that
// names it. log receives the details of failed connections, at debug level.
func New(allowHosts string, log *slog.Logger) (*Policy, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Policy{log: log}
	for _, raw := range strings.Split(allowHosts, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		e, err := parseEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("--allow-hosts entry %s: %v; give host or host:port, like registry.internal:5000 or [fd00::1]:443", Quote(raw), err)
		}
		p.allow = append(p.allow, e)
	}
	p.transport = p.newTransport()
	return p, nil
}

func parseEntry(raw string) (entry, error) {
	host, port := raw, ""
	switch {
	case strings.Contains(raw, "://") || strings.ContainsAny(raw, "/?#@ "):
		return entry{}, errors.New("is a URL or holds characters a host cannot; give the host alone")
	case strings.HasPrefix(raw, "["):
		i := strings.LastIndex(raw, "]")
		if i < 0 {
			return entry{}, errors.New("has an unclosed '['")
		}
		host = raw[:i+1]
		if rest := raw[i+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return entry{}, errors.New("has text after ']' that is not a port")
			}
			port = rest[1:]
		}
	case strings.Count(raw, ":") == 1:
		host, port, _ = strings.Cut(raw, ":")
	}
	if host != raw && port == "" {
		return entry{}, errors.New("has an empty port")
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return entry{}, fmt.Errorf("port %s is not a number from 1 to 65535", Quote(port))
		}
	}
	h, err := ParseHost(host)
	if err != nil {
		return entry{}, err
	}
	return entry{name: h.Name, addr: h.Addr, port: port}, nil
}

// AllowList is the allow-list in normalised form, for logs and messages.
func (p *Policy) AllowList() []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.allow))
	for i, e := range p.allow {
		out[i] = e.String()
	}
	return out
}

// allowed reports whether the allow-list holds h (by name as written, or by
// its normalised address) for port.
func (p *Policy) allowed(h Host, port string) bool {
	if p == nil {
		return false
	}
	for _, e := range p.allow {
		if e.port != "" && e.port != port {
			continue
		}
		if e.addr.IsValid() {
			if h.Addr.IsValid() && e.addr == h.Addr {
				return true
			}
		} else if e.name == h.Name {
			return true
		}
	}
	return false
}

// Refusal is the policy's "no": a sentence the user can act on.
type Refusal struct {
	// Host is the host:port as the user wrote it, quoted for display.
	Host string
	// Addr is the address that was refused, when there was one.
	Addr netip.Addr
	msg  string
}

func (r *Refusal) Error() string { return r.msg }

const adminHint = "; this server does not reach those unless an admin adds it to --allow-hosts"

func refuse(host, port string, h Host, a netip.Addr, reason string) *Refusal {
	shown := showHostPort(host, port)
	var msg string
	switch {
	case h.IsAddr() && h.Name == host:
		msg = fmt.Sprintf("host %s is %s%s", shown, reason, adminHint)
	case h.IsAddr():
		msg = fmt.Sprintf("host %s (%s) is %s%s", shown, a, reason, adminHint)
	case h.IsLocalhost():
		msg = fmt.Sprintf("host %s is %s%s", shown, reason, adminHint)
	default:
		msg = fmt.Sprintf("host %s resolves to %s, %s%s", shown, a, reason, adminHint)
	}
	return &Refusal{Host: shown, Addr: a, msg: msg}
}

func showHostPort(host, port string) string {
	if port == "" {
		return Quote(host)
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return Quote(host + ":" + port)
}

// Check decides whether host (a name or an address in any notation, without
// port) may be reached on port ("" when unknown). Allow-listed hosts pass;
// otherwise addresses must be public unicast, and names must resolve, to
// public unicast addresses only. The error is a *Refusal.
func (p *Policy) Check(ctx context.Context, host, port string) error {
	h, done, err := p.literal(host, port)
	if done {
		return err
	}
	addrs, err := p.resolve(ctx, h.Name)
	if err != nil || len(addrs) == 0 {
		if err != nil {
			p.logger().Debug("outbound name lookup failed", "host", h.Name, "err", err)
		}
		shown := showHostPort(host, port)
		return &Refusal{Host: shown, msg: fmt.Sprintf("host %s does not resolve; check the name", shown)}
	}
	for _, a := range addrs {
		a = unwrap(a)
		if p.allowed(hostOf(a), port) {
			continue
		}
		if reason := classify(a); reason != "" {
			return refuse(host, port, h, a, reason)
		}
	}
	return nil
}

// CheckLiteral is Check without a name lookup: it refuses only hosts that are
// refused addresses in any notation, or localhost names. It is for image
// references, which BuildKit may map to a mirror and which an offline machine
// cannot resolve.
func (p *Policy) CheckLiteral(host, port string) error {
	_, _, err := p.literal(host, port)
	return err
}

// literal decides what needs no name lookup: a host that does not parse, an
// allow-listed one, an address in any notation, a localhost name. done is
// false for any other name, which Check resolves.
func (p *Policy) literal(host, port string) (h Host, done bool, err error) {
	h, err = ParseHost(host)
	switch {
	case err != nil:
		return h, true, &Refusal{Host: showHostPort(host, port), msg: "host " + err.Error()}
	case p.allowed(h, port):
		return h, true, nil
	case h.IsAddr():
		if reason := classify(h.Addr); reason != "" {
			return h, true, refuse(host, port, h, h.Addr, reason)
		}
		return h, true, nil
	case h.IsLocalhost():
		return h, true, refuse(host, port, h, netip.Addr{}, reasonLoopback)
	}
	return h, false, nil
}

// IsLoopback reports whether host (no port) is a loopback address in any
// notation, or a localhost name.
func IsLoopback(host string) bool {
	h, err := ParseHost(host)
	if err != nil {
		return false
	}
	return h.IsLocalhost() || h.IsAddr() && h.Addr.IsLoopback()
}

func (p *Policy) logger() *slog.Logger {
	if p == nil || p.log == nil {
		return slog.Default()
	}
	return p.log
}

func (p *Policy) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	if p != nil && p.lookup != nil {
		return p.lookup(ctx, name)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

// DialError is a connection that could not be made. It says nothing about
// why (refused, timed out, no route): those differences would map ports.
type DialError struct {
	// Host is the host:port dialled, quoted for display.
	Host string
}

func (e *DialError) Error() string { return "could not reach host " + e.Host }

// DialContext connects like net.Dialer.DialContext, checking the address
// actually connected to, after the name was resolved, so a name that resolves
// differently at dial time (DNS rebinding) gains nothing. Names on the
// allow-list may connect to whatever they resolve to. A refused address gives
// a *Refusal; any other failure a *DialError, with the detail logged at debug.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &DialError{Host: Quote(address)}
	}
	h, err := ParseHost(host)
	if err != nil {
		return nil, &Refusal{Host: showHostPort(host, port), msg: "host " + err.Error()}
	}
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	target := address
	if !p.allowed(h, port) {
		if h.IsAddr() {
			if reason := classify(h.Addr); reason != "" {
				return nil, refuse(host, port, h, h.Addr, reason)
			}
		} else if h.IsLocalhost() {
			return nil, refuse(host, port, h, netip.Addr{}, reasonLoopback)
		}
		d.Control = func(_, addr string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return &Refusal{Host: showHostPort(host, port), msg: fmt.Sprintf("host %s gave an address that cannot be checked", showHostPort(host, port))}
			}
			a := unwrap(ap.Addr())
			if p.allowed(hostOf(a), strconv.Itoa(int(ap.Port()))) {
				return nil
			}
			if reason := classify(a); reason != "" {
				return refuse(host, port, h, a, reason)
			}
			return nil
		}
	}
	if h.IsAddr() {
		// Dial the normalised address: the system resolver need not read 0x7f.1 the same way.
		target = net.JoinHostPort(h.Addr.String(), port)
	}
	conn, err := d.DialContext(ctx, network, target)
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			return nil, r
		}
		p.logger().Debug("outbound connection failed", "addr", address, "err", err)
		return nil, &DialError{Host: showHostPort(host, port)}
	}
	return conn, nil
}

func (p *Policy) newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // a proxy would dial for us, past the check
		DialContext:           p.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          20,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 5 * time.Second,
	}
}

// Transport is an HTTP transport whose every connection goes through
// DialContext and never through a proxy. It is shared, so connections are reused.
func (p *Policy) Transport() *http.Transport {
	if p == nil || p.transport == nil {
		return (&Policy{log: p.logger(), allow: p.allowList()}).newTransport()
	}
	return p.transport
}

func (p *Policy) allowList() []entry {
	if p == nil {
		return nil
	}
	return p.allow
}

// Client is an HTTP client on Transport whose redirects are checked too.
func (p *Policy) Client() *http.Client {
	return &http.Client{Transport: p.Transport(), CheckRedirect: p.CheckRedirect}
}

// CheckRedirect is an http.Client CheckRedirect: at most MaxRedirects, each
// target's scheme http or https and its host allowed by Check.
func (p *Policy) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("stopped after %d redirects", MaxRedirects)
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return &Refusal{Host: Quote(u.Host), msg: fmt.Sprintf("a redirect to a %s URL is not followed", Quote(u.Scheme))}
	}
	return p.Check(req.Context(), u.Hostname(), DefaultPort(u.Scheme, u.Port()))
}

// DefaultPort is port, or the scheme's well-known port when port is empty.
func DefaultPort(scheme, port string) string {
	if port != "" {
		return port
	}
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	case "ssh":
		return "22"
	case "git":
		return "9418"
	}
	return ""
}
