package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mcontent "manifold/builds/content"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

// env is the real buildkitd and registry every test in this package shares.
var env *buildkittest.Env

func TestMain(m *testing.M) {
	if args := os.Getenv("MANIFOLD_TEST_PROCESS"); args != "" {
		// A child: the fault tests run `manifold` as a process of its own, to kill it.
		main2(args)
		return
	}
	var err error
	env, err = buildkittest.Start(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the test buildkitd:", err)
		os.Exit(1)
	}
	code := m.Run()
	printFigures()
	env.Close()
	os.Exit(code)
}

const example = `FROM busybox:1
LABEL description="Image for my Docker course"
CMD [ "/bin/sh", "-c", "while date; do sleep 1; done;" ]
`

// app is a running `manifold serve` on a free port.
type app struct {
	URL  string
	Data string
	stop func()
	logs *lockedBuffer // what manifold logged, at info and above
	// token, when set, is sent by do as a Bearer token.
	token string
}

// lockedBuffer collects the server's log for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startApp calls run() as main would, with the given extra flags.
func startApp(t testing.TB, data string, flags ...string) *app {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	// The harness picks the port, then asks the server itself when it is up
	// (rather than reading its log): any answer from /healthz will do.
	addr, at := "127.0.0.1:0", -1
	for i, f := range flags {
		if f == "--addr" && i+1 < len(flags) {
			addr, at = flags[i+1], i+1
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--addr %q: %v", addr, err)
	}
	if port == "0" {
		free, err := buildkittest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ = net.SplitHostPort(free)
		addr = net.JoinHostPort(host, port)
	}
	flags = slices.Clone(flags)
	if at >= 0 {
		flags[at] = addr
	} else {
		flags = append([]string{"--addr", addr}, flags...)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	args := append([]string{"serve", "--data", data}, flags...)
	go func() { done <- run(ctx, args, func(string) string { return "" }, pw); pw.Close() }()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			logs.Write([]byte(sc.Text() + "\n"))
		}
		_, _ = io.Copy(io.Discard, pr) // never block the server's log
	}()
	a := &app{Data: data, logs: logs, URL: url}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(a.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("manifold exited before listening: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("manifold did not start listening on %s\n%s", addr, logs)
		}
	}
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manifold exited with %v", err)
			}
			<-scanned // every line it logged is in a.logs
		})
	}
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("manifold log:\n%s", logs)
		}
	})
	return a
}

func (a *app) do(t testing.TB, method, path, body string) (int, []byte) {
	t.Helper()
	code, b, err := a.request(method, path, body, a.token)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

// request sends one API request (a JSON body when body is set, a Bearer
// token when token is) and reads the whole answer; it may run off the test's
// goroutine, so it returns its error instead of failing the test.
func (a *app) request(method, path, body, token string) (int, []byte, error) {
	req, err := http.NewRequest(method, a.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// startBuild posts a build and returns its id.
func (a *app) startBuild(t testing.TB, req map[string]any) string {
	t.Helper()
	code, body := a.do(t, "POST", "/api/v1/builds", mustJSON(req))
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/builds = %d %s", code, body)
	}
	var b builds.Build
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Status != builds.StatusQueued && b.Status != builds.StatusRunning {
		t.Fatalf("new build status %q", b.Status)
	}
	return b.ID
}

// wait polls the API until the build reaches a final state (bounded, so a hang fails the test).
func (a *app) wait(t testing.TB, id string) *builds.Build {
	return a.waitEvery(t, id, 100*time.Millisecond)
}

// waitEvery is wait with a chosen polling interval.
func (a *app) waitEvery(t testing.TB, id string, every time.Duration) *builds.Build {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, body := a.do(t, "GET", "/api/v1/builds/"+id, "")
		if code != http.StatusOK {
			t.Fatalf("GET build = %d %s", code, body)
		}
		var b builds.Build
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		if b.Status.Final() {
			return &b
		}
		if time.Now().After(deadline) {
			t.Fatalf("build %s still %s after 3 minutes", id, b.Status)
		}
		time.Sleep(every)
	}
}

func (a *app) store(t testing.TB) *mcontent.Store {
	t.Helper()
	s, err := mcontent.OpenStore(filepath.Join(a.Data, "content"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readBlob reads a blob from the store and checks that its bytes hash to its name.
func readBlob(t *testing.T, s content.Store, dg string) []byte {
	t.Helper()
	d := digest.Digest(dg)
	b, err := content.ReadBlob(context.Background(), s, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatalf("blob %s is not in the store: %v", dg, err)
	}
	if got := digest.FromBytes(b); got != d {
		t.Fatalf("stored blob %s hashes to %s", dg, got)
	}
	return b
}

func TestExampleBuildsBothPlatforms(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	id := a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}})
	b := a.wait(t, id)
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	if b.StartedAt == nil || b.FinishedAt == nil || b.FinishedAt.Before(*b.StartedAt) || b.StartedAt.Before(b.CreatedAt) {
		t.Fatalf("timestamps out of order: created %v started %v finished %v", b.CreatedAt, b.StartedAt, b.FinishedAt)
	}
	if !strings.HasPrefix(b.IndexDigest, "sha256:") {
		t.Fatalf("index digest %q", b.IndexDigest)
	}

	// The index in the store lists exactly the two platforms, with the digests the API reports.
	s := a.store(t)
	var idx ocispec.Index
	if err := json.Unmarshal(readBlob(t, s, b.IndexDigest), &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("index media type %q", idx.MediaType)
	}
	var plats []string
	for _, m := range idx.Manifests {
		if m.Platform == nil {
			t.Fatalf("index entry %s has no platform", m.Digest)
		}
		plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	slices.Sort(plats)
	if !slices.Equal(plats, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("index platforms %v, want exactly linux/amd64 and linux/arm64", plats)
	}
	if len(b.Manifests) != 2 {
		t.Fatalf("API lists %d manifests, want 2", len(b.Manifests))
	}
	for _, m := range b.Manifests {
		var entry *ocispec.Descriptor
		for i := range idx.Manifests {
			p := idx.Manifests[i].Platform
			if p.OS+"/"+p.Architecture == m.Platform {
				entry = &idx.Manifests[i]
			}
		}
		if entry == nil {
			t.Fatalf("API platform %s is not in the index", m.Platform)
		}
		if entry.Digest.String() != m.Digest || entry.Size != m.Size {
			t.Fatalf("%s: API says %s (%d bytes), index says %s (%d bytes)", m.Platform, m.Digest, m.Size, entry.Digest, entry.Size)
		}
		var man ocispec.Manifest
		if err := json.Unmarshal(readBlob(t, s, m.Digest), &man); err != nil {
			t.Fatal(err)
		}
		if man.Config.Digest.String() != m.ConfigDigest {
			t.Fatalf("%s: config digest %s, manifest says %s", m.Platform, m.ConfigDigest, man.Config.Digest)
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(readBlob(t, s, m.ConfigDigest), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.OS+"/"+cfg.Architecture != m.Platform {
			t.Fatalf("config of %s says %s/%s", m.Platform, cfg.OS, cfg.Architecture)
		}
		if cfg.Config.Labels["description"] != "Image for my Docker course" {
			t.Fatalf("%s: labels %v", m.Platform, cfg.Config.Labels)
		}
		if !slices.Equal(cfg.Config.Cmd, []string{"/bin/sh", "-c", "while date; do sleep 1; done;"}) {
			t.Fatalf("%s: cmd %v", m.Platform, cfg.Config.Cmd)
		}
		for _, l := range man.Layers {
			if info, err := s.Info(context.Background(), l.Digest); err != nil || info.Size != l.Size {
				t.Fatalf("%s: layer %s not stored whole: %v %+v", m.Platform, l.Digest, err, info)
			}
		}
	}

	// The log is kept, in buildctl's plain style.
	code, logText := a.do(t, "GET", "/api/v1/builds/"+id+"/log", "")
	if code != http.StatusOK || !strings.Contains(string(logText), "[linux/arm64 1/1] FROM docker.io/library/busybox:1") ||
		!strings.Contains(string(logText), "exporting manifest list "+b.IndexDigest) {
		t.Fatalf("log (%d):\n%s", code, logText)
	}
	if len(b.Steps) == 0 {
		t.Fatal("no steps recorded")
	}
	if b.Ref != id {
		t.Fatalf("ref %q, want the build id", b.Ref)
	}
}

// fileInLayers looks for name in the image's layers, last layer first.
func fileInLayers(t *testing.T, s content.Store, manifestDigest, name string) (string, bool) {
	t.Helper()
	var man ocispec.Manifest
	if err := json.Unmarshal(readBlob(t, s, manifestDigest), &man); err != nil {
		t.Fatal(err)
	}
	for i := len(man.Layers) - 1; i >= 0; i-- {
		ra, err := s.ReaderAt(context.Background(), man.Layers[i])
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(content.NewReader(ra))
		if err != nil {
			ra.Close()
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimPrefix(h.Name, "./") == name {
				b, _ := io.ReadAll(tr)
				ra.Close()
				return string(b), true
			}
		}
		ra.Close()
	}
	return "", false
}

func TestEmulatedRunStepRunsArm64(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	id := a.startBuild(t, map[string]any{
		"dockerfile": "FROM busybox:1\nRUN uname -m > /arch\n",
		"platforms":  []string{"linux/amd64", "linux/arm64"},
	})
	b := a.wait(t, id)
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	s := a.store(t)
	want := map[string]string{"linux/amd64": "x86_64\n", "linux/arm64": "aarch64\n"}
	for _, m := range b.Manifests {
		got, ok := fileInLayers(t, s, m.Digest, "arch")
		if !ok {
			t.Fatalf("%s image has no /arch", m.Platform)
		}
		if got != want[m.Platform] {
			t.Fatalf("%s image's /arch = %q, want %q", m.Platform, got, want[m.Platform])
		}
	}
}
