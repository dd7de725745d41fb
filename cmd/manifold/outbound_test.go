package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/content"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

// outboundState is everything a refused request must leave as it was: the
// builds and their pushes, the stored credentials, the blob store, and the
// test registry's repositories and tags.
type outboundState struct {
	Builds      []string
	Pushes      int
	Credentials string
	Blobs       []string
	Registry    []string
}

func snapshotOutbound(t *testing.T, a *app) outboundState {
	t.Helper()
	var st outboundState
	var list struct{ Builds []builds.Build }
	if code := getJSON(t, a, "/api/v1/builds?limit=500", &list); code != 200 {
		t.Fatalf("list builds = %d", code)
	}
	for _, b := range list.Builds {
		st.Builds = append(st.Builds, b.ID+" "+string(b.Status))
		st.Pushes += len(b.Pushes)
	}
	_, creds := a.do(t, "GET", "/api/v1/registries", "")
	st.Credentials = string(creds)
	if err := a.store(t).Walk(context.Background(), func(i content.Info) error {
		st.Blobs = append(st.Blobs, i.Digest.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var cat struct{ Repositories []string }
	registryJSON(t, "/v2/_catalog", &cat)
	for _, repo := range cat.Repositories {
		var tags struct{ Tags []string }
		registryJSON(t, "/v2/"+repo+"/tags/list", &tags)
		for _, tag := range tags.Tags {
			st.Registry = append(st.Registry, repo+":"+tag)
		}
	}
	slices.Sort(st.Blobs)
	slices.Sort(st.Registry)
	return st
}

func registryJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + env.Registry + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("registry %s: %v", path, err)
	}
}

func (s outboundState) same(o outboundState) bool {
	return slices.Equal(s.Builds, o.Builds) && s.Pushes == o.Pushes && s.Credentials == o.Credentials &&
		slices.Equal(s.Blobs, o.Blobs) && slices.Equal(s.Registry, o.Registry)
}

// countingServer answers every request and counts them: a refused request must never reach it.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(200)
		io.WriteString(w, "inside")
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestOutboundRequestsAreRefused(t *testing.T) {
	gitURL := gitServer(t)
	gitAddr := strings.TrimSuffix(strings.TrimPrefix(gitURL, "git://"), "/repo.git")
	_, gitPort, _ := strings.Cut(gitAddr, ":")
	_, mirrorPort, _ := strings.Cut(env.Registry, ":")
	closed, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, closedPort, _ := strings.Cut(closed, ":")

	// A registry that is allowed, but redirects its blobs and manifests to a loopback server.
	inside, insideHits := countingServer(t)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(200)
			return
		}
		http.Redirect(w, r, inside.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	redirHost := strings.TrimPrefix(redirector.URL, "http://")

	// The allow-list names the redirecting registry only: not the mirror, not the git server.
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", redirHost)
	built := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64"}}))
	if built.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s", built.Error)
	}
	loopbackSentence := "is a loopback address; this server does not reach those unless an admin adds it to --allow-hosts"
	git := func(u string) string { return mustJSON(map[string]any{"git": map[string]string{"url": u}}) }
	push := func(tag string) string {
		return mustJSON(map[string]any{"dockerfile": example, "tags": []string{tag}, "push": true})
	}
	remote := func(ref string) string { return "/api/v1/remote?ref=" + url.QueryEscape(ref) }
	for _, tt := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		says                     []string
	}{
		{"git decimal", "POST", "/api/v1/builds", git("git://2130706433:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"git host 2130706433:" + gitPort + " (127.0.0.1) " + loopbackSentence}},
		{"git hex", "POST", "/api/v1/builds", git("git://0x7f000001:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},
		{"git short dotted", "POST", "/api/v1/builds", git("git://127.1:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"git host 127.1:" + gitPort + " (127.0.0.1)"}},
		{"git octal", "POST", "/api/v1/builds", git("git://0177.0.0.1:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"loopback"}},
		{"git loopback", "POST", "/api/v1/builds", git(gitURL), 400, "address_not_allowed", []string{"git host " + gitAddr + " " + loopbackSentence}},
		{"git IPv6 loopback", "POST", "/api/v1/builds", git("git://[::1]:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"git host [::1]:" + gitPort + " " + loopbackSentence}},
		{"git IPv4-mapped IPv6", "POST", "/api/v1/builds", git("git://[::ffff:127.0.0.1]:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},
		{"git localhost with a dot", "POST", "/api/v1/builds", git("git://localhost.:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"git host localhost.:" + gitPort + " " + loopbackSentence}},
		{"git zero", "POST", "/api/v1/builds", git("git://0:" + gitPort + "/repo.git"), 400, "address_not_allowed", []string{"unspecified"}},
		{"git metadata", "POST", "/api/v1/builds", git("https://169.254.169.254/latest/meta-data.git"), 400, "address_not_allowed", []string{"git host 169.254.169.254:443 is a link-local address (the cloud metadata service lives there)"}},
		{"git private", "POST", "/api/v1/builds", git("https://10.0.0.1/team/repo.git"), 400, "address_not_allowed", []string{"private-network"}},
		{"git scp loopback", "POST", "/api/v1/builds", git("git@127.0.0.1:team/repo.git"), 400, "address_not_allowed", []string{"git host 127.0.0.1:22 " + loopbackSentence}},
		{"git ssh decimal", "POST", "/api/v1/builds", git("ssh://git@2130706433/team/repo.git"), 400, "address_not_allowed", []string{"loopback"}},
		{"git unresolvable", "POST", "/api/v1/builds", git("https://no-such-host.invalid/r.git"), 400, "address_not_allowed", []string{"git host no-such-host.invalid:443 does not resolve"}},
		{"git scp option as user", "POST", "/api/v1/builds", git("-oProxyCommand@host:x"), 400, "invalid_git", []string{"starts with '-'"}},
		{"git scp option as host", "POST", "/api/v1/builds", git("git@-oProxyCommand:x"), 400, "invalid_git", []string{"host starting with '-'"}},

		{"remote decimal", "GET", remote("2130706433:" + mirrorPort + "/library/busybox:1"), "", 400, "address_not_allowed", []string{"registry host 2130706433:" + mirrorPort + " (127.0.0.1) " + loopbackSentence}},
		{"remote hex", "GET", remote("0x7f000001:" + mirrorPort + "/library/busybox:1"), "", 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},
		{"remote short dotted", "GET", remote("127.1:" + mirrorPort + "/library/busybox:1"), "", 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},
		{"remote IPv6", "GET", remote("[::1]:" + mirrorPort + "/library/busybox:1"), "", 400, "address_not_allowed", []string{"registry host [::1]:" + mirrorPort + " " + loopbackSentence}},
		{"remote IPv4-mapped", "GET", remote("[::ffff:7f00:1]:" + mirrorPort + "/library/busybox:1"), "", 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},
		{"remote localhost", "GET", remote("localhost:" + mirrorPort + "/library/busybox:1"), "", 400, "address_not_allowed", []string{loopbackSentence}},
		{"remote metadata", "GET", remote("169.254.169.254/latest/meta:1"), "", 400, "address_not_allowed", []string{"metadata"}},
		{"remote private", "GET", remote("10.0.0.1:5000/team/app:1"), "", 400, "address_not_allowed", []string{"private-network"}},
		{"remote redirected to loopback", "GET", remote(redirHost + "/library/busybox:1"), "", 400, "address_not_allowed", []string{"registry host " + strings.TrimPrefix(inside.URL, "http://") + " " + loopbackSentence}},

		{"push to the mirror", "POST", "/api/v1/builds", push(env.Registry + "/evil/busybox:1"), 400, "address_not_allowed", []string{"registry host " + env.Registry + " " + loopbackSentence}},
		{"push to the mirror as a number", "POST", "/api/v1/builds", push("2130706433:" + mirrorPort + "/library/busybox:1"), 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},
		{"push to the mirror as localhost", "POST", "/api/v1/builds", push("localhost:" + mirrorPort + "/library/busybox:1"), 400, "address_not_allowed", []string{loopbackSentence}},
		{"promote to the mirror", "POST", "/api/v1/builds/" + built.ID + "/push", `{"tag":"` + env.Registry + `/library/busybox:1"}`, 400, "address_not_allowed", []string{"registry host " + env.Registry + " " + loopbackSentence}},
		{"promote to the mirror in hex", "POST", "/api/v1/builds/" + built.ID + "/push", `{"tag":"0x7f.1:` + mirrorPort + `/library/busybox:1"}`, 400, "address_not_allowed", []string{"(127.0.0.1) " + loopbackSentence}},

		{"credentials for a private address", "PUT", "/api/v1/registries/10.0.0.1", `{"username":"u","password":"p"}`, 400, "address_not_allowed", []string{"registry host 10.0.0.1:443 is a private-network address"}},
		{"credentials for the mirror as a number", "PUT", "/api/v1/registries/2130706433:" + mirrorPort, `{"username":"u","password":"p"}`, 400, "address_not_allowed", []string{"loopback"}},
		{"credentials for the metadata address", "PUT", "/api/v1/registries/169.254.169.254", `{"username":"u","password":"p"}`, 400, "address_not_allowed", []string{"metadata"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotOutbound(t, a)
			code, body := a.do(t, tt.method, tt.path, tt.body)
			var e struct{ Error, Code string }
			_ = json.Unmarshal(body, &e)
			if code != tt.status || e.Code != tt.code {
				t.Fatalf("%s %s = %d %s, want %d %s", tt.method, tt.path, code, body, tt.status, tt.code)
			}
			for _, s := range tt.says {
				if !strings.Contains(e.Error, s) {
					t.Errorf("error %q does not say %q", e.Error, s)
				}
			}
			if after := snapshotOutbound(t, a); !after.same(before) {
				t.Errorf("a refused request changed the state:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	if n := insideHits.Load(); n != 0 {
		t.Fatalf("the loopback server behind the redirect was reached %d times", n)
	}

	// A listening and a closed loopback port look the same from outside.
	say := func(port string) string {
		code, body := a.do(t, "GET", remote("127.0.0.1:"+port+"/library/busybox:1"), "")
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code != 400 || e.Code != "address_not_allowed" {
			t.Fatalf("remote on port %s = %d %s", port, code, body)
		}
		return strings.ReplaceAll(e.Error, port, "PORT")
	}
	if open, shut := say(mirrorPort), say(closedPort); open != shut {
		t.Fatalf("a listening port says %q, a closed one %q", open, shut)
	}
}

func TestOutboundAllowListedButDownLooksLikeAnyFailure(t *testing.T) {
	// Allow-listed, nothing listening: a 502 that names the host and not the errno.
	closed, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", closed)
	code, body := a.do(t, "GET", "/api/v1/remote?ref="+url.QueryEscape(closed+"/team/app:1"), "")
	var e struct{ Error, Code string }
	_ = json.Unmarshal(body, &e)
	if code != 502 || e.Code != "registry_error" || e.Error != "could not reach registry host "+closed {
		t.Fatalf("remote on a closed allow-listed port = %d %s", code, body)
	}
}

func TestBuildSourcesAreRefused(t *testing.T) {
	gitURL := gitServer(t)
	inside, hits := countingServer(t)
	_, insidePort, _ := strings.Cut(strings.TrimPrefix(inside.URL, "http://"), ":")
	_, mirrorPort, _ := strings.Cut(env.Registry, ":")
	a := startApp(t, "", "--buildkit", env.Addr())
	self := strings.TrimPrefix(a.URL, "http://")
	for _, tt := range []struct {
		name, dockerfile string
		says             []string
	}{
		{"ADD from Manifold itself", "FROM busybox:1\nADD http://" + self + "/healthz /x\n",
			[]string{`source http://` + self + `/healthz was refused: URL host ` + self + ` is a loopback address`, "--allow-hosts"}},
		{"ADD through a build arg, as a number", "FROM busybox:1\nARG U=http://2130706433:" + insidePort + "/\nADD $U /y\n",
			[]string{`source http://2130706433:` + insidePort + `/ was refused: URL host 2130706433:` + insidePort + ` (127.0.0.1) is a loopback address`}},
		{"ADD of the metadata service", "FROM busybox:1\nADD http://169.254.169.254/latest/meta-data/ /m\n",
			[]string{"169.254.169.254", "metadata"}},
		{"ADD of a git repository on loopback", "FROM busybox:1\nADD " + gitURL + " /src\n",
			[]string{"git source", "loopback"}},
		{"FROM the mirror by address", "FROM 127.0.0.1:" + mirrorPort + "/library/busybox:1\n",
			[]string{"image 127.0.0.1:" + mirrorPort + "/library/busybox:1 was refused: registry host 127.0.0.1:" + mirrorPort + " is a loopback address"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotOutbound(t, a)
			b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": tt.dockerfile, "platforms": []string{"linux/amd64"}}))
			if b.Status != builds.StatusFailed {
				t.Fatalf("build %s, want failed", b.Status)
			}
			t.Logf("error: %s", b.Error)
			for _, s := range tt.says {
				if !strings.Contains(b.Error, s) {
					t.Errorf("error %q does not say %q", b.Error, s)
				}
			}
			after := snapshotOutbound(t, a)
			if !slices.Equal(before.Blobs, after.Blobs) || !slices.Equal(before.Registry, after.Registry) || after.Pushes != before.Pushes {
				t.Errorf("a refused build changed the store or the registry:\nbefore %+v\nafter  %+v", before, after)
			}
			if len(after.Builds) != len(before.Builds)+1 {
				t.Errorf("builds went from %d to %d, want one failed build more", len(before.Builds), len(after.Builds))
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("a refused source was fetched %d times", n)
	}
	// The same URL is fetched once an admin allows its host.
	allowed := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", "127.0.0.1:"+insidePort)
	b := allowed.wait(t, allowed.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nADD http://127.0.0.1:" + insidePort + "/inside /y\n", "platforms": []string{"linux/amd64"}}))
	if b.Status != builds.StatusSucceeded || hits.Load() == 0 {
		t.Fatalf("allow-listed ADD: %s %q, %d fetches", b.Status, b.Error, hits.Load())
	}
	if got, _ := fileInLayers(t, allowed.store(t), b.Manifests[0].Digest, "y"); got != "inside" {
		t.Fatalf("/y = %q", got)
	}
}

func TestAllowHostsIsCheckedAtStart(t *testing.T) {
	for _, bad := range []string{"http://r.example.com", "r:0", "a b", "x:y:z", "1.2.3.4.5"} {
		err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--allow-hosts", bad}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--allow-hosts entry") {
			t.Errorf("--allow-hosts %q: %v", bad, err)
		}
	}
	err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, func(k string) string {
		if k == "MANIFOLD_ALLOW_HOSTS" {
			return "ok.example.com,bad host"
		}
		return ""
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", "bad host")) {
		t.Errorf("MANIFOLD_ALLOW_HOSTS with a bad entry: %v", err)
	}
}
