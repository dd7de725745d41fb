package main

import (
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// counts is what a refused request must leave unchanged.
type counts struct{ users, builds, registries, blobs int }

func (a *app) counts(t *testing.T, hdr map[string]string) counts {
	t.Helper()
	var c counts
	n := func(path, key string) int {
		resp, body := hostile{method: "GET", path: path, hdr: hdr}.do(t, a.URL)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		var list []json.RawMessage
		_ = json.Unmarshal(m[key], &list)
		return len(list)
	}
	c.users, c.builds, c.registries = n("/api/v1/users", "users"), n("/api/v1/builds?limit=500", "builds"), n("/api/v1/registries", "registries")
	blobs, _ := filepath.Glob(filepath.Join(a.Data, "content", "blobs", "sha256", "*"))
	c.blobs = len(blobs)
	return c
}

// TestSetupModeRefusesWebPages: while no account exists, requests from this
// machine act as admin, but a web page in a browser on this machine (a foreign
// Origin, a rebound Host, a form or text/plain post) reaches nothing, and
// every refused request leaves users, builds and credentials unchanged.
func TestSetupModeRefusesWebPages(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	u, _ := url.Parse(a.URL)
	port := u.Port()
	before := a.counts(t, nil)
	if before.users != 0 {
		t.Fatalf("a fresh server has %d users", before.users)
	}
	user := `{"name":"eve","password":"0123456789abc","role":"admin"}`
	build := `{"dockerfile":"FROM busybox:1\n","platforms":["linux/amd64"]}`
	form := "name=eve&password=0123456789abc"
	evil := map[string]string{"Origin": "http://evil.example"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	var mp strings.Builder
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("options", build)
	_ = mw.Close()
	tests := []hostile{
		{name: "text/plain user from a foreign page", method: "POST", path: "/api/v1/users", body: user, hdr: with(evil, "Content-Type", "text/plain"), status: 403},
		{name: "JSON user from a foreign page", method: "POST", path: "/api/v1/users", body: user, hdr: with(evil, "Content-Type", "application/json"), status: 403},
		{name: "JSON user with a null Origin", method: "POST", path: "/api/v1/users", body: user, hdr: map[string]string{"Origin": "null", "Content-Type": "application/json"}, status: 403},
		{name: "user from a same-site fetch without the token", method: "POST", path: "/api/v1/users", body: user, hdr: map[string]string{"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, status: 403},
		{name: "text/plain user from this machine's curl", method: "POST", path: "/api/v1/users", body: user, hdr: map[string]string{"Content-Type": "text/plain"}, status: 415},
		{name: "form user from this machine's curl", method: "POST", path: "/api/v1/users", body: form + "&role=admin", hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 415},
		{name: "setup form from a foreign page", method: "POST", path: "/setup", body: form, hdr: with(evil, "Content-Type", "application/x-www-form-urlencoded"), status: 403},
		{name: "setup form from a cross-site navigation", method: "POST", path: "/setup", body: form, hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"}, status: 403},
		{name: "setup form with a wrong token", method: "POST", path: "/setup", body: form + "&csrf=guess", hdr: map[string]string{"Origin": a.URL, "Content-Type": "application/x-www-form-urlencoded"}, status: 403},
		{name: "build from a foreign page", method: "POST", path: "/api/v1/builds", body: build, hdr: with(evil, "Content-Type", "application/json"), status: 403},
		{name: "multipart build from a foreign page", method: "POST", path: "/api/v1/builds", body: mp.String(), hdr: with(evil, "Content-Type", mw.FormDataContentType()), status: 403},
		{name: "build form from a foreign page", method: "POST", path: "/builds", body: "dockerfile=FROM+busybox:1", hdr: with(evil, "Content-Type", "application/x-www-form-urlencoded"), status: 403},
		{name: "registry credentials from a foreign page", method: "PUT", path: "/api/v1/registries/r.example.com", body: `{"username":"u","password":"pppppppppp"}`, hdr: with(evil, "Content-Type", "application/json"), status: 403},
		{name: "rebound Host reads the API", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Host": "evil.example:" + port}, status: 403},
		{name: "rebound Host reads a page", method: "GET", path: "/", hdr: map[string]string{"Host": "attacker.example"}, status: 403},
		{name: "rebound Host with a loopback-looking name", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Host": "127.0.0.1.nip.io:" + port}, status: 403},
		{name: "rebound Host posts a user", method: "POST", path: "/api/v1/users", body: user, hdr: map[string]string{"Host": "evil.example:" + port, "Content-Type": "application/json"}, status: 403},
		{name: "loopback Host on another port", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Host": "127.0.0.1:1"}, status: 403},
		{name: "localhost without a port", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Host": "localhost"}, status: 403},
		{name: "localhost with the port", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Host": "localhost:" + port}, status: 200},
		{name: "IPv6 loopback with the port", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Host": "[::1]:" + port}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.do(t, a.URL)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d, want %d: %s", tt.method, tt.path, resp.StatusCode, tt.status, body)
			}
			if tt.status >= 400 && !strings.Contains(string(body), "error") && !strings.Contains(string(body), "Forbidden") {
				t.Fatalf("refusal without a sentence: %s", body)
			}
			if got := a.counts(t, nil); got != before {
				t.Fatalf("a refused request changed state: %+v → %+v", before, got)
			}
		})
	}

	// This machine's own browser, on Manifold's own setup page, creates the first admin.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(a.URL + "/setup")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("the setup page carries no CSRF token:\n%s", page)
	}
	req, _ := http.NewRequest("POST", a.URL+"/setup", strings.NewReader(form+"&csrf="+url.QueryEscape(string(m[1]))))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", a.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("setup from the setup page = %d", resp.StatusCode)
	}
	// Setup is over: this machine's requests no longer act as admin, and any Host is served.
	if resp, _ := (hostile{method: "GET", path: "/api/v1/builds"}).do(t, a.URL); resp.StatusCode != 401 {
		t.Fatalf("after setup an anonymous request = %d", resp.StatusCode)
	}
	if resp, _ := (hostile{method: "GET", path: "/login", hdr: map[string]string{"Host": "manifold.example"}}).do(t, a.URL); resp.StatusCode != 200 {
		t.Fatalf("after setup the login page for another Host = %d", resp.StatusCode)
	}
}

// TestSetupModeCommandLine: a command-line client on this machine (no
// browser headers) still uses the API in setup mode, with JSON only.
func TestSetupModeCommandLine(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	id := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\n", "platforms": []string{"linux/amd64"}})
	if b := a.wait(t, id); b.Status != "succeeded" {
		t.Fatalf("setup-mode build = %s %s", b.Status, b.Error)
	}
}

func TestJSONAPIAcceptsJSONOnly(t *testing.T) {
	data := t.TempDir()
	cli(t, "user", "create", "--admin", "--data", data, "root")
	tok := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "root", "--scope", "admin"))
	a := startApp(t, data, "--buildkit", env.Addr())
	bearer := func(kv ...string) map[string]string {
		m := map[string]string{"Authorization": "Bearer " + tok}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	before := a.counts(t, bearer())
	build := `{"dockerfile":"FROM busybox:1\n","platforms":["linux/amd64"]}`
	tests := []hostile{
		{name: "text/plain build", method: "POST", path: "/api/v1/builds", body: build, hdr: bearer("Content-Type", "text/plain"), status: 415},
		{name: "form build", method: "POST", path: "/api/v1/builds", body: "dockerfile=FROM+busybox", hdr: bearer("Content-Type", "application/x-www-form-urlencoded"), status: 415},
		{name: "build without a type", method: "POST", path: "/api/v1/builds", body: "x" + build, hdr: bearer(), status: 415},
		{name: "text/plain user", method: "POST", path: "/api/v1/users", body: `{"name":"eve","password":"0123456789abc","role":"admin"}`, hdr: bearer("Content-Type", "text/plain;charset=utf-8"), status: 415},
		{name: "multipart user", method: "POST", path: "/api/v1/users", body: "--b--\r\n", hdr: bearer("Content-Type", "multipart/form-data; boundary=b"), status: 415},
		{name: "text/plain credentials", method: "PUT", path: "/api/v1/registries/r.example.com", body: `{"username":"u","password":"pppppppppp"}`, hdr: bearer("Content-Type", "text/plain"), status: 415},
		{name: "json-ish type", method: "PATCH", path: "/api/v1/users/root", body: `{"role":"admin"}`, hdr: bearer("Content-Type", "application/jsonp"), status: 415},
		{name: "a 1 MB tag is quoted short", method: "POST", path: "/api/v1/builds", body: `{"dockerfile":"FROM busybox:1","tags":["` + strings.Repeat("A", 1<<20) + `"]}`, hdr: bearer("Content-Type", "application/json"), status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.do(t, a.URL)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d, want %d: %.300s", tt.method, tt.path, resp.StatusCode, tt.status, body)
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("no JSON error sentence: %.300s", body)
			}
			if len(body) > 600 {
				t.Fatalf("the error echoes %d bytes of input: %.300s", len(body), body)
			}
			if got := a.counts(t, bearer()); got != before {
				t.Fatalf("a refused request changed state: %+v → %+v", before, got)
			}
		})
	}
	// JSON with a charset parameter is JSON.
	resp, body := hostile{method: "POST", path: "/api/v1/builds", body: build, hdr: bearer("Content-Type", "application/json; charset=utf-8")}.do(t, a.URL)
	if resp.StatusCode != 201 {
		t.Fatalf("JSON with charset = %d %s", resp.StatusCode, body)
	}
	b := a.waitAs(t, buildID(t, body), bearer())
	// Raw blobs are downloads, never pages.
	resp, _ = hostile{method: "GET", path: "/api/v1/blobs/" + b.IndexDigest + "/raw", hdr: bearer()}.do(t, a.URL)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") ||
		resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("raw index blob: %d %v", resp.StatusCode, resp.Header)
	}
}

// waitAs is wait with credentials.
func (a *app) waitAs(t *testing.T, id string, hdr map[string]string) buildView {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		_, body := hostile{method: "GET", path: "/api/v1/builds/" + id, hdr: hdr}.do(t, a.URL)
		var b buildView
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		switch b.Status {
		case "succeeded":
			return b
		case "failed", "canceled", "interrupted":
			t.Fatalf("build %s %s: %s", id, b.Status, b.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("build %s did not finish", id)
	return buildView{}
}

type buildView struct {
	Status      string `json:"status"`
	Error       string `json:"error"`
	IndexDigest string `json:"index_digest"`
}

// TestQueueLimitPerUser: one builder cannot fill the whole queue.
func TestQueueLimitPerUser(t *testing.T) {
	data := t.TempDir()
	cli(t, "user", "create", "--role", "builder", "--data", data, "bob")
	cli(t, "user", "create", "--role", "builder", "--data", data, "amy")
	bob := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "bob", "--scope", "build"))
	amy := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "amy", "--scope", "build"))
	a := startApp(t, data, "--buildkit", env.Addr(), "--concurrency", "1", "--max-queued-per-user", "2")
	post := func(tok string, n int) (int, []byte) {
		resp, body := hostile{method: "POST", path: "/api/v1/builds", hdr: map[string]string{"Authorization": "Bearer " + tok},
			body: `{"dockerfile":"FROM busybox:1\nRUN sleep 20 # ` + strings.Repeat("x", n) + `\n","platforms":["linux/amd64"],"no_cache":true}`}.do(t, a.URL)
		return resp.StatusCode, body
	}
	var ids []string
	// One runs, two wait; the fourth is refused.
	for i := range 3 {
		code, body := post(bob, i)
		if code != 201 {
			t.Fatalf("bob's build %d = %d %s", i, code, body)
		}
		ids = append(ids, buildID(t, body))
		if i == 0 { // let the first leave the queue
			a.waitStatus(t, ids[0], "running", map[string]string{"Authorization": "Bearer " + bob})
		}
	}
	code, body := post(bob, 9)
	if code != 429 || !strings.Contains(string(body), "queue_full") || !strings.Contains(string(body), "2 builds waiting") {
		t.Fatalf("bob's fourth build = %d %s", code, body)
	}
	// Another user is not held back by bob.
	code, body = post(amy, 1)
	if code != 201 {
		t.Fatalf("amy's build = %d %s", code, body)
	}
	ids = append(ids, buildID(t, body))
	for _, id := range ids {
		tok := bob
		if id == ids[len(ids)-1] {
			tok = amy
		}
		hostile{method: "POST", path: "/api/v1/builds/" + id + "/cancel", hdr: map[string]string{"Authorization": "Bearer " + tok}}.do(t, a.URL)
	}
}

func (a *app) waitStatus(t *testing.T, id, want string, hdr map[string]string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		_, body := hostile{method: "GET", path: "/api/v1/builds/" + id, hdr: hdr}.do(t, a.URL)
		var b buildView
		_ = json.Unmarshal(body, &b)
		if b.Status == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("build %s never became %s", id, want)
}

// TestDataFolderIsPrivate: the database and the folder holding it are the
// owner's only, also when an older version left them open.
func TestDataFolderIsPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "manifold.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, data, "--buildkit", env.Addr())
	a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\n", "platforms": []string{"linux/amd64"}})
	check := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	check(data, 0o700)
	for _, f := range []string{"manifold.db", "manifold.db-wal", "manifold.db-shm", "secret.key"} {
		check(filepath.Join(data, f), 0o600)
	}
}

// TestLoginNextStaysOnSite: the login form never carries a next= that a
// browser would read as another site.
func TestLoginNextStaysOnSite(t *testing.T) {
	data := t.TempDir()
	cli(t, "user", "create", "--role", "viewer", "--data", data, "lee")
	a := startApp(t, data, "--buildkit", env.Addr())
	for _, next := range []string{"/%09/evil.example/", "/%0a/evil.example", "//evil.example", "/%5Cevil.example", "/\\evil.example", "https:evil.example", "/%2509/x"} {
		_, page := get(t, a.URL+"/login?next="+next)
		m := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(page)
		if m == nil || (m[1] != "/" && !strings.HasPrefix(m[1], "/%25")) {
			t.Errorf("next=%s gives the form next=%q", next, m)
		}
	}
}
