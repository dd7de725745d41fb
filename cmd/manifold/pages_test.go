package main

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
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
	// It was stopped once, gracefully: buildkitd's goodbye (its first
	// signal's "forcing shutdown" and a stack) is not in the log at info.
	logText := a.logs.String()
	if !strings.Contains(logText, `msg="buildkitd stopped"`) || strings.Contains(logText, "forcing shutdown") ||
		strings.Contains(logText, "appcontext") || strings.Contains(logText, "did not stop in time") {
		t.Fatalf("buildkitd's stop in the log:\n%s", logText)
	}
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

func TestFormFolderUploadAndEditRebuild(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	field := func(k, v string) { w, _ := mw.CreateFormField(k); io.WriteString(w, v) }
	field("dockerfile", "")
	field("platform", "linux/amd64")
	field("platform", "linux/arm64")
	field("build_args", "MESSAGE=from the form\n\n")
	field("labels", "team=tools")
	field("target", "")
	// Browsers name each file of a chosen folder by its path under the folder.
	for name, content := range map[string]string{
		"myapp/Dockerfile":     "FROM busybox:1\nARG MESSAGE\nCOPY src/ /src/\nRUN echo \"$MESSAGE\" > /message\n",
		"myapp/src/a.txt":      "file a\n",
		"myapp/src/deep/b.txt": "file b\n",
	} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="folder"; filename="`+name+`"`)
		h.Set("Content-Type", "text/plain")
		w, _ := mw.CreatePart(h)
		io.WriteString(w, content)
	}
	mw.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Post(a.URL+"/builds", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form = %d:\n%s", resp.StatusCode, page)
	}
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/builds/")
	b := a.wait(t, id)
	if b.Status != builds.StatusSucceeded || b.Context.Type != "upload" || b.Context.Files != 3 {
		t.Fatalf("folder build %s (%s), context %+v", b.Status, b.Error, b.Context)
	}
	s := a.store(t)
	for _, m := range b.Manifests {
		if got, _ := fileInLayers(t, s, m.Digest, "src/deep/b.txt"); got != "file b\n" {
			t.Fatalf("%s: /src/deep/b.txt = %q", m.Platform, got)
		}
		if got, _ := fileInLayers(t, s, m.Digest, "message"); got != "from the form\n" {
			t.Fatalf("%s: /message = %q", m.Platform, got)
		}
	}
	// "Edit and rebuild" shows the same inputs, reusing the upload.
	code, form := get(t, a.URL+"/?from="+id)
	for _, want := range []string{`name="context_from" value="` + id + `"`, "MESSAGE=from the form", "team=tools", `value="linux/arm64" checked`} {
		if code != 200 || !strings.Contains(form, want) {
			t.Fatalf("edit form lacks %s:\n%s", want, form)
		}
	}
	resp, err = client.PostForm(a.URL+"/builds", url.Values{"context_from": {id}, "platform": {"linux/amd64"}, "build_args": {"MESSAGE=edited"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("edited rebuild = %d", resp.StatusCode)
	}
	e := a.wait(t, strings.TrimPrefix(resp.Header.Get("Location"), "/builds/"))
	if e.Status != builds.StatusSucceeded || e.Context.Digest != b.Context.Digest {
		t.Fatalf("edited rebuild %s (%s) context %s, want %s", e.Status, e.Error, e.Context.Digest, b.Context.Digest)
	}
	if got, _ := fileInLayers(t, s, e.Manifests[0].Digest, "message"); got != "edited\n" {
		t.Fatalf("edited /message = %q", got)
	}
	// A folder with a path that leaves it is refused, and the form keeps the input.
	body.Reset()
	mw = multipart.NewWriter(&body)
	field("dockerfile", "FROM busybox:1\n# keep me\n")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="folder"; filename="myapp/../../etc/passwd"`)
	w, _ := mw.CreatePart(h)
	io.WriteString(w, "x")
	mw.Close()
	resp, err = client.Post(a.URL+"/builds", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(page), "# keep me") || !strings.Contains(string(page), "leaves the context") {
		t.Fatalf("hostile folder = %d:\n%s", resp.StatusCode, page)
	}
}
