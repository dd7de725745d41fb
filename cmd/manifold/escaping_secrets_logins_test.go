package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"manifold/builds"
)

func TestBuildOutputIsEscapedAndColoured(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	xss := `<script>alert(1)</script>`
	df := "FROM busybox:1\n# " + xss + "\nARG A\nRUN printf '<img src=x onerror=alert(2)>\\n\\033[31mred words\\033[0m\\n'\n"
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}, "no_cache": true,
		"labels": map[string]string{"x": xss}, "build_args": map[string]string{"A": `"><svg onload=alert(3)>`}}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s", b.Error)
	}
	for _, path := range []string{"/builds/" + b.ID, "/builds", "/?from=" + b.ID} {
		code, page := get(t, a.URL+path)
		if code != 200 {
			t.Fatalf("%s = %d", path, code)
		}
		for _, raw := range []string{"<script>alert(1)", "<img src=x onerror", "<svg onload", "\x1b["} {
			if strings.Contains(page, raw) {
				t.Fatalf("%s renders %q unescaped", path, raw)
			}
		}
	}
	_, page := get(t, a.URL+"/builds/"+b.ID)
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;", `<span class="ansi-31">red words</span>`} {
		if !strings.Contains(page, want) {
			t.Fatalf("page lacks %s", want)
		}
	}
}

func TestBuildSecretsNeverInTheClear(t *testing.T) {
	data := t.TempDir()
	pass := passwordLine.FindStringSubmatch(cli(t, "user", "create", "--role", "builder", "--data", data, "sam"))[1]
	_ = pass
	tok := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "sam", "--scope", "build"))
	a := startApp(t, data, "--buildkit", env.Addr())
	const value = "npm-token-7f3a9c-very-secret"
	auth := map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	if resp, b := (hostile{method: "PUT", path: "/api/v1/secrets/npmrc", hdr: auth, body: `{"value":"` + value + `"}`}).do(t, a.URL); resp.StatusCode != 204 {
		t.Fatalf("put secret = %d %s", resp.StatusCode, b)
	}
	// The RUN step proves it saw the secret by its hash; the value itself is in no input.
	df := "FROM busybox:1\nRUN --mount=type=secret,id=npmrc sha256sum /run/secrets/npmrc | cut -c1-64 > /sum\n"
	resp, body := hostile{method: "POST", path: "/api/v1/builds", hdr: auth, body: mustJSON(map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}, "secrets": []string{"npmrc"}, "no_cache": true})}.do(t, a.URL)
	if resp.StatusCode != 201 {
		t.Fatalf("build = %d %s", resp.StatusCode, body)
	}
	id := buildID(t, body)
	var b *builds.Build
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, body := hostile{method: "GET", path: "/api/v1/builds/" + id, hdr: auth}.do(t, a.URL)
		var now builds.Build
		if r.StatusCode != 200 || json.Unmarshal(body, &now) != nil {
			t.Fatalf("get = %d %s", r.StatusCode, body)
		}
		// The build's own status: its placements carry a status of their own.
		if now.Status.Final() {
			if now.Status != builds.StatusSucceeded {
				t.Fatalf("secret build: %s", body)
			}
			b = &builds.Build{ID: id}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("secret build did not finish")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = b
	r, body := hostile{method: "GET", path: "/api/v1/builds/" + id, hdr: auth}.do(t, a.URL)
	var got builds.Build
	if err := json.Unmarshal(body, &got); err != nil || r.StatusCode != 200 || len(got.Manifests) != 1 {
		t.Fatalf("build: %s", body)
	}
	sum, _ := fileInLayers(t, a.store(t), got.Manifests[0].Digest, "sum")
	if want := fmt.Sprintf("%x\n", sha256.Sum256([]byte(value))); sum != want {
		t.Fatalf("the RUN step saw a secret hashing to %q, want %q", sum, want)
	}
	if got.CreatedBy != "sam" {
		t.Fatalf("created_by %q", got.CreatedBy)
	}
	// The value is nowhere in clear: not in the database, its log, or the secret list.
	for _, f := range []string{"manifold.db", "manifold.db-wal"} {
		raw, _ := os.ReadFile(filepath.Join(data, f))
		if bytes.Contains(raw, []byte(value)) {
			t.Fatalf("%s holds the secret in clear", f)
		}
	}
	_, logText := hostile{method: "GET", path: "/api/v1/builds/" + id + "/log", hdr: auth}.do(t, a.URL)
	_, list := hostile{method: "GET", path: "/api/v1/secrets", hdr: auth}.do(t, a.URL)
	if bytes.Contains(logText, []byte(value)) || bytes.Contains(list, []byte(value)) || !bytes.Contains(list, []byte("npmrc")) {
		t.Fatalf("log or list show the secret: %s", list)
	}
	// A secret the user does not have is refused up front.
	resp, body = hostile{method: "POST", path: "/api/v1/builds", hdr: auth, body: `{"dockerfile":"FROM busybox:1","secrets":["nope"]}`}.do(t, a.URL)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "secret_not_found") {
		t.Fatalf("unknown secret = %d %s", resp.StatusCode, body)
	}
}

func TestLoginFailuresLookAlikeThenSlowDown(t *testing.T) {
	data := t.TempDir()
	pass := passwordLine.FindStringSubmatch(cli(t, "user", "create", "--role", "viewer", "--data", data, "lee"))[1]
	a := startApp(t, data, "--buildkit", env.Addr())
	// from gives a client whose requests come from another loopback address.
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{
			Transport:     &http.Transport{DialContext: d.DialContext},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	try := func(c *http.Client, name, password string) (int, string, time.Duration) {
		start := time.Now()
		resp, err := c.PostForm(a.URL+"/login", url.Values{"name": {name}, "password": {password}, "next": {"/\t/evil.example/x"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body) + "\nLocation: " + resp.Header.Get("Location"), time.Since(start)
	}
	here, there := from("127.0.0.1"), from("127.0.0.2")
	codeUnknown, pageUnknown, tUnknown := try(here, "nobody", "wrong-password")
	codeWrong, pageWrong, tWrong := try(here, "lee", "wrong-password")
	if codeUnknown != 401 || codeWrong != 401 || !strings.Contains(pageUnknown, "wrong user name or password") || !strings.Contains(pageWrong, "wrong user name or password") {
		t.Fatalf("unknown user %d, wrong password %d: the answers differ or are not 401", codeUnknown, codeWrong)
	}
	t.Logf("unknown user answered in %v, wrong password in %v", tUnknown, tWrong)
	for range 3 {
		try(here, "lee", "wrong-password")
		try(here, "nobody", "wrong-password")
	}
	// The fifth failure makes the next try from this address wait, for a
	// known name exactly as for an unknown one.
	codeKnown, known, _ := try(here, "lee", "wrong-password")
	codeUnknown, unknown, _ := try(here, "nobody", "wrong-password")
	if codeKnown != 429 || codeUnknown != 429 || !strings.Contains(known, "try again in") || errorBox(known) != errorBox(unknown) {
		t.Fatalf("after 5 failures: known %d %q, unknown %d %q", codeKnown, errorBox(known), codeUnknown, errorBox(unknown))
	}
	if strings.Contains(known, "locked") {
		t.Fatalf("the answer tells the account exists: %q", errorBox(known))
	}
	if code, page, _ := try(here, "lee", pass); code != 429 || !strings.Contains(page, "try again in") {
		t.Fatalf("the right password during the wait from the same address = %d", code)
	}
	// Nobody elsewhere can lock the real user out: from another address the
	// right password works at once, and an off-site next= stays on this site.
	code, page, _ := try(there, "lee", pass)
	if code != 303 || !strings.HasSuffix(page, "Location: /") {
		t.Fatalf("login from another address during the wait = %d %q", code, page)
	}
	// The wait is short: 15 s the first time.
	if !strings.Contains(known, "16 seconds") && !strings.Contains(known, "15 seconds") {
		t.Fatalf("first wait is not about 15 s: %q", errorBox(known))
	}
}

var errorBoxRe = regexp.MustCompile(`(?s)role="alert"[^>]*>(.*?)</p>`)

// errorBox is the error sentence a page shows.
func errorBox(page string) string {
	if m := errorBoxRe.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}
