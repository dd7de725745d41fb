package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"manifold/builds/accounts"
)

// cli runs a manifold subcommand as main would and returns what it printed.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("manifold %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

var passwordLine = regexp.MustCompile(`password: (\S+)`)

// person is a logged-in browser: a cookie jar and the page's CSRF token.
type person struct {
	c    *http.Client
	csrf string
	base string
}

func login(t *testing.T, base, name, password string) *person {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(base+"/login", url.Values{"name": {name}, "password": {password}, "next": {"/builds"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/builds" {
		t.Fatalf("login %s = %d %s", name, resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "manifold_session" && (!ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode) {
			t.Fatalf("session cookie lacks HttpOnly or SameSite=Lax: %+v", ck)
		}
	}
	p := &person{c: c, base: base}
	resp, err = c.Get(base + "/account")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the account page:\n%s", page)
	}
	p.csrf = string(m[1])
	return p
}

type hostile struct {
	name, method, path, body string
	hdr                      map[string]string
	as                       *person // a session instead of headers
	status                   int
}

func (h hostile) do(t *testing.T, base string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(h.method, base+h.path, strings.NewReader(h.body))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(h.body, "{") {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h.hdr {
		if k == "Host" { // the client sends req.Host, not a Host header
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if h.as != nil {
		c = h.as.c
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func TestSecurityHostileRequests(t *testing.T) {
	data := t.TempDir()
	rootPass := passwordLine.FindStringSubmatch(cli(t, "user", "create", "--admin", "--data", data, "root"))[1]
	bobPass := passwordLine.FindStringSubmatch(cli(t, "user", "create", "--role", "builder", "--data", data, "bob"))[1]
	vicPass := passwordLine.FindStringSubmatch(cli(t, "user", "create", "--role", "viewer", "--data", data, "vic"))[1]
	tok := func(user, scope string) string {
		return strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", user, "--scope", scope))
	}
	admin, build, read, vicBuild, revoked := tok("root", "admin"), tok("bob", "build"), tok("bob", "read"), tok("vic", "build"), tok("bob", "build")
	a := startApp(t, data, "--buildkit", env.Addr())
	bearer := func(s string) map[string]string { return map[string]string{"Authorization": "Bearer " + s} }

	// Revoke one token through the API.
	var list struct{ Tokens []accounts.Token }
	_, body := hostile{method: "GET", path: "/api/v1/tokens", hdr: bearer(build)}.do(t, a.URL)
	_ = json.Unmarshal(body, &list)
	for _, tk := range list.Tokens {
		_ = tk
	}
	h := hostile{method: "GET", path: "/api/v1/tokens?all=1", hdr: bearer(admin)}
	_, body = h.do(t, a.URL)
	_ = json.Unmarshal(body, &list)
	var revokedID string
	for _, tk := range list.Tokens {
		if tk.User == "bob" && tk.Scope == "build" {
			revokedID = jsonNumber(tk.ID) // the newest build token of bob: the last created
			break
		}
	}
	if resp, b := (hostile{method: "DELETE", path: "/api/v1/tokens/" + revokedID, hdr: bearer(admin)}).do(t, a.URL); resp.StatusCode != 204 {
		t.Fatalf("revoke = %d %s", resp.StatusCode, b)
	}
	bob := login(t, a.URL, "bob", bobPass)
	vic := login(t, a.URL, "vic", vicPass)
	root := login(t, a.URL, "root", rootPass)

	// A build to act on.
	resp, body := hostile{method: "POST", path: "/api/v1/builds", hdr: bearer(build), body: `{"dockerfile":"FROM busybox:1\nRUN sleep 30\n","platforms":["linux/amd64"],"no_cache":true}`}.do(t, a.URL)
	if resp.StatusCode != 201 {
		t.Fatalf("builder token build = %d %s", resp.StatusCode, body)
	}
	id := buildID(t, body)
	big := strings.Repeat("x", 3<<20)
	tests := []hostile{
		{name: "no login, API", method: "GET", path: "/api/v1/builds", status: 401},
		{name: "no login, build", method: "POST", path: "/api/v1/builds", body: `{"dockerfile":"FROM busybox:1"}`, status: 401},
		{name: "no login, page", method: "GET", path: "/builds", status: 303},
		{name: "no login, new-build page", method: "GET", path: "/", status: 303},
		{name: "no login, pull API", method: "GET", path: "/v2/builds/tags/list", status: 401},
		{name: "no login, export", method: "GET", path: "/api/v1/builds/" + id + "/export", status: 401},
		{name: "no login, events", method: "GET", path: "/api/v1/builds/" + id + "/events", status: 401},
		{name: "no login, healthz is open", method: "GET", path: "/healthz", status: 200},
		{name: "no login, login page is open", method: "GET", path: "/login", status: 200},
		{name: "unknown bearer token", method: "GET", path: "/api/v1/builds", hdr: bearer("mf_nope"), status: 401},
		{name: "revoked token", method: "GET", path: "/api/v1/builds", hdr: bearer(revoked), status: 401},
		{name: "garbage Authorization", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Authorization": "Token abc"}, status: 401},
		{name: "expired or forged session", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Cookie": "manifold_session=forged"}, status: 401},
		{name: "forged session on a page", method: "GET", path: "/builds", hdr: map[string]string{"Cookie": "manifold_session=forged"}, status: 303},
		{name: "read token reads", method: "GET", path: "/api/v1/builds", hdr: bearer(read), status: 200},
		{name: "read token builds", method: "POST", path: "/api/v1/builds", hdr: bearer(read), body: `{"dockerfile":"FROM busybox:1"}`, status: 403},
		{name: "read token cancels", method: "POST", path: "/api/v1/builds/" + id + "/cancel", hdr: bearer(read), status: 403},
		{name: "read token pushes", method: "POST", path: "/api/v1/builds/" + id + "/push", hdr: bearer(read), body: `{"tag":"r/x:1"}`, status: 403},
		{name: "read token deletes", method: "DELETE", path: "/api/v1/builds/" + id, hdr: bearer(read), status: 403},
		{name: "viewer's build-scope token is still a viewer", method: "POST", path: "/api/v1/builds", hdr: bearer(vicBuild), body: `{"dockerfile":"FROM busybox:1"}`, status: 403},
		{name: "builder lists users", method: "GET", path: "/api/v1/users", hdr: bearer(build), status: 403},
		{name: "builder opens the users page", method: "GET", path: "/admin/users", hdr: bearer(build), status: 403},
		{name: "builder reads the audit log", method: "GET", path: "/api/v1/audit", hdr: bearer(build), status: 403},
		{name: "builder sets registry credentials", method: "PUT", path: "/api/v1/registries/r.example.com", hdr: bearer(build), body: `{"username":"u","password":"pppppppppp"}`, status: 403},
		{name: "builder runs gc", method: "POST", path: "/api/v1/gc", hdr: bearer(build), status: 403},
		{name: "builder creates a user", method: "POST", path: "/api/v1/users", hdr: bearer(build), body: `{"name":"eve","password":"0123456789","role":"admin"}`, status: 403},
		{name: "builder mints an admin token", method: "POST", path: "/api/v1/tokens", hdr: bearer(build), body: `{"name":"x","scope":"admin"}`, status: 403},
		{name: "viewer session on a builder form", method: "POST", path: "/builds/" + id + "/cancel", as: vic, body: "csrf=" + vic.csrf, hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 403},
		{name: "admin lists users", method: "GET", path: "/api/v1/users", hdr: bearer(admin), status: 200},
		{name: "admin reads the audit log", method: "GET", path: "/api/v1/audit", hdr: bearer(admin), status: 200},
		{name: "session form without CSRF token", method: "POST", path: "/builds/" + id + "/pin", as: bob, hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 403},
		{name: "session form with a wrong CSRF token", method: "POST", path: "/builds/" + id + "/pin", as: bob, body: "csrf=wrong", hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 403},
		{name: "session JSON without CSRF header", method: "POST", path: "/api/v1/builds", as: bob, body: `{"dockerfile":"FROM busybox:1"}`, status: 403},
		{name: "session logout without CSRF", method: "POST", path: "/logout", as: bob, status: 403},
		{name: "session from another origin", method: "POST", path: "/builds/" + id + "/pin", as: bob, body: "csrf=" + bob.csrf, hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}, status: 403},
		{name: "multipart upload without CSRF query", method: "POST", path: "/builds", as: bob, body: "--x--\r\n", hdr: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, status: 403},
		{name: "pull API with Basic token", method: "GET", path: "/v2/builds/tags/list", hdr: map[string]string{"Authorization": "Basic " + basic("anyone", read)}, status: 200},
		{name: "pull API with a wrong Basic password", method: "GET", path: "/v2/builds/tags/list", hdr: map[string]string{"Authorization": "Basic " + basic("bob", "wrong")}, status: 401},
		{name: "oversized JSON body", method: "POST", path: "/api/v1/builds", hdr: bearer(build), body: `{"dockerfile":"` + big + `"}`, status: 400},
		{name: "malformed JSON", method: "POST", path: "/api/v1/builds", hdr: bearer(build), body: `{"dockerfile":`, status: 400},
		{name: "unknown field", method: "POST", path: "/api/v1/builds", hdr: bearer(build), body: `{"dockerfile":"FROM busybox:1","privileged":true}`, status: 400},
		{name: "SQL in a build id", method: "GET", path: "/api/v1/builds/" + url.PathEscape("' OR 1=1--"), hdr: bearer(read), status: 404},
		{name: "SQL in a cursor", method: "GET", path: "/api/v1/builds?before=" + url.QueryEscape("x' OR '1'='1"), hdr: bearer(read), status: 400},
		{name: "SQL in a user name", method: "POST", path: "/api/v1/users", hdr: bearer(admin), body: `{"name":"x'; DROP TABLE users;--","password":"0123456789","role":"viewer"}`, status: 400},
		{name: "path traversal in an upload name", method: "POST", path: "/api/v1/builds", hdr: map[string]string{"Authorization": "Bearer " + build, "Content-Type": "multipart/form-data; boundary=b"},
			body: multipartBody(t, "b", string(makeTar(t, false, tarEntry{name: "Dockerfile", body: "FROM busybox:1"}, tarEntry{name: "../../etc/x", body: "x"}))), status: 400},
		{name: "huge header", method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Authorization": "Bearer " + read, "X-Junk": strings.Repeat("j", 200<<10)}, status: 431},
		{name: "secret value never listed", method: "GET", path: "/api/v1/secrets", hdr: bearer(build), status: 200},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d hostile requests", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tt.do(t, a.URL)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d, want %d: %s", tt.method, tt.path, resp.StatusCode, tt.status, body)
			}
			if tt.status == 303 && !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
				t.Fatalf("redirects to %q, want the login page", resp.Header.Get("Location"))
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without a WWW-Authenticate challenge")
			}
		})
	}
	// Security headers on every answer.
	resp, _ = hostile{method: "GET", path: "/login"}.do(t, a.URL)
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") == "" {
		t.Fatalf("headers %v", resp.Header)
	}
	// With the right CSRF token, the same session form works; logout ends the session on the server.
	resp, _ = hostile{method: "POST", path: "/builds/" + id + "/cancel", as: bob, body: "csrf=" + url.QueryEscape(bob.csrf), hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}.do(t, a.URL)
	if resp.StatusCode != 303 {
		t.Fatalf("cancel with CSRF = %d", resp.StatusCode)
	}
	var stolen string
	for _, ck := range bob.c.Jar.Cookies(mustURL(a.URL)) {
		if ck.Name == "manifold_session" {
			stolen = ck.Value
		}
	}
	resp, _ = hostile{method: "POST", path: "/logout", as: bob, body: "csrf=" + url.QueryEscape(bob.csrf), hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}.do(t, a.URL)
	if resp.StatusCode != 303 {
		t.Fatalf("logout = %d", resp.StatusCode)
	}
	if resp, _ := (hostile{method: "GET", path: "/api/v1/builds", hdr: map[string]string{"Cookie": "manifold_session=" + stolen}}).do(t, a.URL); resp.StatusCode != 401 {
		t.Fatalf("the session still works after logout: %d", resp.StatusCode)
	}
	// The audit log saw it.
	_, body = hostile{method: "GET", path: "/api/v1/audit", hdr: bearer(admin)}.do(t, a.URL)
	for _, want := range []string{`"build.start"`, `"build.cancel"`, `"token.revoke"`, `"login"`, `"actor": "bob"`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("audit log lacks %s:\n%s", want, body)
		}
	}
	_ = root
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func mustURL(s string) *url.URL { u, _ := url.Parse(s); return u }

func multipartBody(t *testing.T, boundary, archive string) string {
	t.Helper()
	return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{\"platforms\":[\"linux/amd64\"]}\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"context\"; filename=\"c.tar\"\r\n\r\n" + archive + "\r\n--" + boundary + "--\r\n"
}
