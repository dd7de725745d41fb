package main

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"manifold/builds"
)

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPagesRender(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())

	code, page := get(t, a.URL+"/")
	for _, want := range []string{`data-testid="new-build-form"`, `data-testid="platform-linux/amd64"`, `data-testid="platform-linux/arm64"`,
		"FROM busybox:1", `LABEL description=&#34;Image for my Docker course&#34;`} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("new-build page (%d) lacks %s:\n%s", code, want, page)
		}
	}

	// Submitting the form redirects to the build's page.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"dockerfile": {example}, "platform": {"linux/amd64", "linux/arm64"}}
	resp, err := client.PostForm(a.URL+"/builds", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/builds/") {
		t.Fatalf("form POST = %d to %q, want 303 to /builds/{id}", resp.StatusCode, loc)
	}
	id := strings.TrimPrefix(loc, "/builds/")
	b := a.wait(t, id)
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	code, page = get(t, a.URL+loc)
	for _, want := range []string{`data-status="succeeded"`, b.IndexDigest, b.Manifests[0].Digest, b.Manifests[1].ConfigDigest,
		`data-platform="linux/arm64"`, `data-testid="log"`, "exporting manifest list"} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("build page (%d) lacks %s:\n%s", code, want, page)
		}
	}

	code, page = get(t, a.URL+"/builds")
	if code != 200 || !strings.Contains(page, `data-build-id="`+id+`"`) {
		t.Fatalf("history (%d) lacks the build:\n%s", code, page)
	}

	// A bad form comes back with the user's input and a sentence.
	resp, err = client.PostForm(a.URL+"/builds", url.Values{"dockerfile": {"FROM scratch\n# mine\n"}, "platform": {"linux/amd65"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), `data-testid="form-error"`) || !strings.Contains(string(body), "# mine") ||
		!strings.Contains(string(body), "unknown architecture") {
		t.Fatalf("bad form = %d:\n%s", resp.StatusCode, body)
	}

	// Unknown pages get a page, not JSON; the stylesheet is served under its hashed name.
	code, page = get(t, a.URL+"/builds/01m8evrp2r0004ny3xknjd6vgd")
	if code != 404 || !strings.Contains(page, `data-testid="error-message"`) {
		t.Fatalf("unknown build page = %d:\n%s", code, page)
	}
	start := strings.Index(page, `href="/static/app.`)
	if start < 0 {
		t.Fatal("no stylesheet link")
	}
	href := page[start+6 : start+6+strings.Index(page[start+6:], `"`)]
	resp, err = http.Get(a.URL + href)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("stylesheet %s = %d %q", href, resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

func TestEmbeddedBuildkitd(t *testing.T) {
	data, err := os.MkdirTemp("", "mf-emb-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	a := startApp(t, data, "--buildkitd-bin", filepath.Join(env.Bin, "buildkitd"), "--mirror", env.Registry)
	code, body := a.do(t, "GET", "/healthz", "")
	if code != 200 || !strings.Contains(string(body), `"name": "embedded"`) || !strings.Contains(string(body), filepath.Join(data, "buildkit", "buildkitd.sock")) {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	id := a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/arm64"}})
	if b := a.wait(t, id); b.Status != builds.StatusSucceeded || len(b.Manifests) != 1 || b.Manifests[0].Platform != "linux/arm64" {
		t.Fatalf("build on the embedded daemon: %+v", b)
	}
	a.stop()
	// The child is gone once manifold has stopped.
	if out, _ := os.ReadFile(filepath.Join(data, "buildkit", "buildkitd.toml")); !strings.Contains(string(out), env.Registry) {
		t.Fatalf("buildkitd.toml does not name the mirror:\n%s", out)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		if strings.Contains(string(cmdline), filepath.Join(data, "buildkit", "buildkitd.toml")) {
			t.Fatalf("buildkitd still runs after manifold stopped: %s", p)
		}
	}
}
