package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"manifold/builds"
	"manifold/builds/buildkittest"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

// storeLayer writes a gzip layer, whose entries write adds, straight into
// an app's content store and returns its digest and size.
func storeLayer(t testing.TB, a *app, write func(tw *tar.Writer)) (string, int) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	write(tw)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(buf.Bytes())
	if err := content.WriteBlob(context.Background(), a.store(t), "t", bytes.NewReader(buf.Bytes()), ocispec.Descriptor{Digest: d, Size: int64(buf.Len())}); err != nil {
		t.Fatal(err)
	}
	return d.String(), buf.Len()
}

// makeTar makes a context archive (tar, or tar.gz with gz) of entries.
func makeTar(t testing.TB, gz bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

// postContext sends options and a context archive as multipart/form-data.
func (a *app) postContext(t testing.TB, options any, archive []byte) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	ow, _ := mw.CreateFormField("options")
	_ = json.NewEncoder(ow).Encode(options)
	cw, _ := mw.CreateFormFile("context", "context.tar.gz")
	_, _ = cw.Write(archive)
	mw.Close()
	resp, err := http.Post(a.URL+"/api/v1/builds", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func buildID(t testing.TB, body []byte) string {
	t.Helper()
	var b builds.Build
	if err := json.Unmarshal(body, &b); err != nil || b.ID == "" {
		t.Fatalf("no build in %s", body)
	}
	return b.ID
}

func TestUploadedContextWithCopyAndDockerignore(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	archive := makeTar(t, true,
		tarEntry{name: "app/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "app/hello.txt", body: "hello from the context\n"},
		tarEntry{name: "app/link", typ: tar.TypeSymlink, link: "hello.txt"},
		tarEntry{name: "secret.txt", body: "do not ship\n"},
		tarEntry{name: ".dockerignore", body: "secret.txt\n"},
		tarEntry{name: "docker/build.Dockerfile", body: "FROM busybox:1\nCOPY . /ctx/\nRUN cat /ctx/app/link > /copied\n"},
	)
	code, body := a.postContext(t, map[string]any{"dockerfile_path": "docker/build.Dockerfile", "platforms": []string{"linux/amd64", "linux/arm64"}}, archive)
	if code != http.StatusCreated {
		t.Fatalf("upload = %d %s", code, body)
	}
	b := a.wait(t, buildID(t, body))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	if b.Context.Type != "upload" || b.Context.Files != 6 || b.DockerfilePath != "docker/build.Dockerfile" {
		t.Fatalf("context recorded as %+v, dockerfile_path %q", b.Context, b.DockerfilePath)
	}
	s := a.store(t)
	for _, m := range b.Manifests {
		if got, ok := fileInLayers(t, s, m.Digest, "copied"); !ok || got != "hello from the context\n" {
			t.Fatalf("%s: /copied = %q, %v", m.Platform, got, ok)
		}
		if _, ok := fileInLayers(t, s, m.Digest, "ctx/secret.txt"); ok {
			t.Fatalf("%s: .dockerignore'd secret.txt reached the image", m.Platform)
		}
	}
	// Rebuild reuses the stored upload.
	code, body = a.do(t, "POST", "/api/v1/builds/"+b.ID+"/rebuild", "")
	if code != http.StatusCreated {
		t.Fatalf("rebuild = %d %s", code, body)
	}
	rb := a.wait(t, buildID(t, body))
	if rb.Status != builds.StatusSucceeded || rb.Context.Digest != b.Context.Digest || rb.IndexDigest != b.IndexDigest {
		t.Fatalf("rebuild %s (%s): context %s vs %s, index %s vs %s", rb.Status, rb.Error, rb.Context.Digest, b.Context.Digest, rb.IndexDigest, b.IndexDigest)
	}
	// The scratch folder is gone after the builds.
	if left, _ := filepath.Glob(filepath.Join(a.Data, "tmp", "*")); len(left) > 0 {
		t.Fatalf("scratch left behind: %v", left)
	}
}

func TestBuildArgsTargetAndLabels(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	df := "FROM busybox:1 AS base\nARG GREETING=unset\nRUN echo \"$GREETING\" > /greeting\n\nFROM base AS final\nRUN echo final > /stage\n\nFROM base AS other\nRUN echo other > /stage\n"
	id := a.startBuild(t, map[string]any{
		"dockerfile": df, "platforms": []string{"linux/arm64"},
		"build_args": map[string]string{"GREETING": "hello arm"}, "target": "other",
		"labels": map[string]string{"org.example.team": "tools"},
	})
	b := a.wait(t, id)
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	s := a.store(t)
	m := b.Manifests[0]
	if got, _ := fileInLayers(t, s, m.Digest, "greeting"); got != "hello arm\n" {
		t.Fatalf("/greeting = %q, want the build arg", got)
	}
	if got, _ := fileInLayers(t, s, m.Digest, "stage"); got != "other\n" {
		t.Fatalf("/stage = %q, want the target stage's", got)
	}
	var cfg struct {
		Config struct{ Labels map[string]string } `json:"config"`
	}
	if err := json.Unmarshal(readBlob(t, s, m.ConfigDigest), &cfg); err != nil || cfg.Config.Labels["org.example.team"] != "tools" {
		t.Fatalf("labels %v (%v)", cfg.Config.Labels, err)
	}
}

// gitServer serves a repository with `git daemon` on a free loopback port.
func gitServer(t *testing.T) (url string) {
	t.Helper()
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(work, "svc"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("init", "-q", "-b", "main")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(work, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("svc/Dockerfile", "FROM busybox:1\nCOPY version.txt /version.txt\n")
	write("svc/version.txt", "v1\n")
	run("add", ".")
	run("commit", "-q", "-m", "v1")
	run("tag", "v1")
	write("svc/version.txt", "v2 on main\n")
	run("commit", "-q", "-am", "v2")
	run("clone", "-q", "--bare", work, filepath.Join(dir, "repo.git"))
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	daemon := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--base-path="+dir, "--listen=127.0.0.1", "--port="+port, dir)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	for range 100 {
		if out, err := exec.Command("git", "ls-remote", "git://"+addr+"/repo.git").CombinedOutput(); err == nil && strings.Contains(string(out), "refs/tags/v1") {
			return "git://" + addr + "/repo.git"
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("git daemon did not answer")
	return ""
}

func TestGitContextAtRefAndSubdir(t *testing.T) {
	url := gitServer(t)
	gitAddr := strings.TrimSuffix(strings.TrimPrefix(url, "git://"), "/repo.git")
	// A loopback git host is refused unless the allow-list names it, in setup mode too.
	strict := startApp(t, "", "--buildkit", env.Addr())
	code, body := strict.do(t, "POST", "/api/v1/builds", `{"git":{"url":"`+url+`"}}`)
	if code != 400 || !strings.Contains(string(body), "address_not_allowed") || !strings.Contains(string(body), "git host "+gitAddr+" is a loopback address") {
		t.Fatalf("loopback git host = %d %s", code, body)
	}
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", gitAddr)
	for _, tt := range []struct{ ref, want string }{{"v1", "v1\n"}, {"main", "v2 on main\n"}} {
		id := a.startBuild(t, map[string]any{"git": map[string]string{"url": url, "ref": tt.ref, "subdir": "svc"}, "platforms": []string{"linux/amd64"}})
		b := a.wait(t, id)
		if b.Status != builds.StatusSucceeded {
			t.Fatalf("ref %s: build %s: %s", tt.ref, b.Status, b.Error)
		}
		if b.Context.Type != "git" || b.Git == nil || b.Git.Ref != tt.ref {
			t.Fatalf("context %+v git %+v", b.Context, b.Git)
		}
		if got, _ := fileInLayers(t, a.store(t), b.Manifests[0].Digest, "version.txt"); got != tt.want {
			t.Fatalf("ref %s: /version.txt = %q, want %q", tt.ref, got, tt.want)
		}
	}
	// An inline Dockerfile with the git context.
	id := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nCOPY Dockerfile /from-git\n", "git": map[string]string{"url": url, "ref": "v1", "subdir": "svc"}, "platforms": []string{"linux/amd64"}})
	b := a.wait(t, id)
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("inline + git: %s: %s", b.Status, b.Error)
	}
	if got, _ := fileInLayers(t, a.store(t), b.Manifests[0].Digest, "from-git"); !strings.Contains(got, "COPY version.txt") {
		t.Fatalf("/from-git = %q, want the repository's Dockerfile", got)
	}
	// A ref that does not exist fails the build with git's words.
	id = a.startBuild(t, map[string]any{"git": map[string]string{"url": url, "ref": "no-such-branch"}, "platforms": []string{"linux/amd64"}})
	if b := a.wait(t, id); b.Status != builds.StatusFailed || !strings.Contains(b.Error, "no-such-branch") {
		t.Fatalf("missing ref: %s %q", b.Status, b.Error)
	}
}

func TestFailuresSayWhy(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	tests := []struct {
		name, dockerfile, target string
		line                     int
		want                     []string
		output                   string
	}{
		{name: "failing RUN", dockerfile: "FROM busybox:1\nRUN echo about to fail && echo oops >&2 && exit 3\n", line: 2,
			want: []string{"[linux/amd64 2/2] RUN echo about to fail", "exit code: 3", "Dockerfile line 2"}, output: "oops"},
		{name: "syntax error", dockerfile: "FROM busybox:1\nRUNN echo hi\n", line: 2, want: []string{"unknown instruction", "RUNN", "line 2"}},
		{name: "missing target", dockerfile: "FROM busybox:1 AS base\nFROM base AS app\n", target: "nope",
			want: []string{"nope", "stages are base, app"}},
		{name: "missing base image", dockerfile: "FROM busybox:0-does-not-exist\n", line: 1, want: []string{"busybox:0-does-not-exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := map[string]any{"dockerfile": tt.dockerfile, "platforms": []string{"linux/amd64"}}
			if tt.target != "" {
				req["target"] = tt.target
			}
			b := a.wait(t, a.startBuild(t, req))
			if b.Status != builds.StatusFailed {
				t.Fatalf("status %s, want failed", b.Status)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.Error, w) {
					t.Fatalf("error %q lacks %q", b.Error, w)
				}
			}
			if tt.line != 0 && b.ErrorLine != tt.line {
				t.Fatalf("error_line %d, want %d (%s)", b.ErrorLine, tt.line, b.Error)
			}
			t.Logf("error: %s (line %d, step %d)", b.Error, b.ErrorLine, b.ErrorStep)
			code, page := get(t, a.URL+"/builds/"+b.ID)
			if code != 200 || !strings.Contains(page, `data-testid="build-error"`) {
				t.Fatalf("page %d lacks the error", code)
			}
			if tt.line != 0 && !strings.Contains(page, fmt.Sprintf(`class="ln marked" data-line="%d"`, tt.line)) {
				t.Fatalf("page does not mark line %d:\n%s", tt.line, page)
			}
			if tt.output != "" && !strings.Contains(page, `data-testid="failed-output"`) {
				t.Fatalf("page lacks the failing step's output")
			}
			if tt.output != "" {
				_, logText := a.do(t, "GET", "/api/v1/builds/"+b.ID+"/log", "")
				if !strings.Contains(string(logText), tt.output) || !strings.Contains(string(logText), "ERROR:") {
					t.Fatalf("log lacks the step output or ERROR:\n%s", logText)
				}
			}
		})
	}
}
