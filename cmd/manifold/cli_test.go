package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"manifold/builds"
)

// clientRun runs a client command as main would, with its own streams, and
// returns stdout, stderr and the exit code main would use.
func clientRun(ctx context.Context, env map[string]string, stdin string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	c := newCLI(func(k string) string { return env[k] }, &out)
	c.stdin, c.stderr, c.tty = strings.NewReader(stdin), &errb, false
	err := c.run(ctx, args[0], args[1:])
	code := 0
	if err != nil {
		code = exitCode(err)
		errb.WriteString("manifold: " + err.Error() + "\n")
	}
	return out.String(), errb.String(), code
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPackContextHonoursDockerignore checks the CLI's own packing: what
// .dockerignore excludes never leaves the machine, the Dockerfile always does.
func TestPackContextHonoursDockerignore(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile": "FROM busybox:1\n", ".dockerignore": "secret.txt\nnode_modules\n*.log\n!keep.log\nDockerfile\n",
		"keep.txt": "k", "secret.txt": "s", "node_modules/a/b.js": "x", "debug.log": "d", "keep.log": "k", "src/main.go": "package main",
	})
	var buf bytes.Buffer
	if _, err := packContext(dir, []string{"Dockerfile"}, &buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	for _, want := range []string{"Dockerfile", ".dockerignore", "keep.txt", "keep.log", "src/main.go"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from the context: %v", want, names)
		}
	}
	for _, bad := range []string{"secret.txt", "node_modules/", "node_modules/a/b.js", "debug.log"} {
		if slices.Contains(names, bad) {
			t.Errorf("%s was packed although .dockerignore excludes it: %v", bad, names)
		}
	}
}

func TestParseOutputAndSecrets(t *testing.T) {
	for _, bad := range []string{"type=tar,dest=x", "type=oci", "dest=x", "type=oci,dest=x,compression=zstd", "oci"} {
		if _, err := parseOutput(bad); err == nil {
			t.Errorf("--output %q accepted", bad)
		}
	}
	o, err := parseOutput("type=docker,dest=a.tar,platform=linux/arm64")
	if err != nil || o.format != "docker" || o.dest != "a.tar" || o.platform != "linux/arm64" {
		t.Errorf("parseOutput = %+v, %v", o, err)
	}
	names, vals, err := parseSecrets([]string{"id=npmrc", "id=tok,env=TOK"}, func(string) string { return "v" })
	if err != nil || !slices.Equal(names, []string{"npmrc", "tok"}) || vals["tok"] != "v" || len(vals) != 1 {
		t.Errorf("parseSecrets = %v %v %v", names, vals, err)
	}
	if _, _, err := parseSecrets([]string{"src=x"}, nil); err == nil {
		t.Error("a secret without id accepted")
	}
}

// TestCLIAgainstRealServer builds a real folder through the CLI on a real
// server: .dockerignore'd files are absent from the image, --output gives an
// archive skopeo reads, a failing Dockerfile exits 1 with BuildKit's
// sentence, Ctrl-C exits 130 and cancels the build on the server, and the
// read commands answer in text and JSON.
func TestCLIAgainstRealServer(t *testing.T) {
	data := t.TempDir()
	cli(t, "user", "create", "--role", "builder", "--data", data, "cara")
	tok := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "cara", "--scope", "build"))
	a := startApp(t, data, "--buildkit", env.Addr())
	home := t.TempDir()
	env := map[string]string{"HOME": home}
	ctx := context.Background()

	// Without a server there is nothing to talk to: exit 4.
	if _, stderr, code := clientRun(ctx, env, "", "builds", "ls"); code != exitUnreachable || !strings.Contains(stderr, "manifold login") {
		t.Fatalf("builds ls without a server: exit %d, %q", code, stderr)
	}
	// A wrong token is refused by the server and nothing is stored.
	if _, stderr, code := clientRun(ctx, env, "mf_wrong\n", "login", "--token-stdin", a.URL); code != exitRefused {
		t.Fatalf("login with a wrong token: exit %d, %q", code, stderr)
	}
	cfgFile := filepath.Join(home, ".config", "manifold", "config.json")
	if _, err := os.Stat(cfgFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused login stored something: %v", err)
	}
	if out, stderr, code := clientRun(ctx, env, tok+"\n", "login", "--token-stdin", a.URL); code != 0 {
		t.Fatalf("login: exit %d %s %s", code, out, stderr)
	}
	fi, err := os.Stat(cfgFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(cfgFile); !strings.Contains(string(b), tok) {
		t.Fatalf("config file lacks the token: %s", b)
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":    "FROM busybox:1\nCOPY . /ctx/\nRUN test -e /ctx/keep.txt && test ! -e /ctx/secret.txt && test ! -e /ctx/node_modules && echo context-ok\n",
		".dockerignore": "secret.txt\nnode_modules\n", "keep.txt": "keep", "secret.txt": "do not send", "node_modules/m.js": "x",
	})
	archive := filepath.Join(t.TempDir(), "out.oci")
	out, stderr, code := clientRun(ctx, env, "", "build", "--progress=plain", "--platform", "linux/amd64,linux/arm64",
		"-t", "cli/app:v1", "--label", "team=cli", dir, "--output", "type=oci,dest="+archive)
	if code != 0 {
		t.Fatalf("build: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "sha256:") || !strings.HasPrefix(lines[1], a.URL+"/builds/") {
		t.Fatalf("build printed %q; want the index digest and the build URL", out)
	}
	for _, want := range []string{"context-ok", "#1 ", " DONE ", "[linux/arm64"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the plain log lacks %q:\n%s", want, stderr)
		}
	}
	id := strings.TrimPrefix(lines[1], a.URL+"/builds/")
	raw := sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+archive)
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(raw), &idx); err != nil || len(idx.Manifests) < 2 {
		t.Fatalf("skopeo reads %s: %v", raw, err)
	}
	if got := digest.FromString(raw).String(); got != lines[0] {
		t.Errorf("the archive's index is %s, the CLI printed %s", got, lines[0])
	}

	// Read commands, text and JSON.
	ls, _, code := clientRun(ctx, env, "", "builds", "ls", "--status", "succeeded", "--tag", "cli/app:v1")
	if code != 0 || !strings.Contains(ls, id) || !strings.Contains(ls, "succeeded") {
		t.Errorf("builds ls: exit %d\n%s", code, ls)
	}
	if ls, _, _ := clientRun(ctx, env, "", "builds", "ls", "--status", "failed", "--tag", "cli/app:v1"); strings.Contains(ls, id) {
		t.Errorf("builds ls --status failed lists a succeeded build:\n%s", ls)
	}
	js, _, code := clientRun(ctx, env, "", "builds", "ls", "--json")
	var list struct{ Builds []builds.Build }
	if err := json.Unmarshal([]byte(js), &list); err != nil || code != 0 || len(list.Builds) == 0 || list.Builds[0].ID != id {
		t.Errorf("builds ls --json: %d %v %s", code, err, js)
	}
	js, _, _ = clientRun(ctx, env, "", "builds", "show", id, "--json")
	var shown builds.Build
	if err := json.Unmarshal([]byte(js), &shown); err != nil || shown.IndexDigest != lines[0] || shown.Labels["team"] != "cli" {
		t.Errorf("builds show --json: %v %s", err, js)
	}
	if txt, _, _ := clientRun(ctx, env, "", "builds", "show", id); !strings.Contains(txt, lines[0]) || !strings.Contains(txt, "linux/arm64") {
		t.Errorf("builds show:\n%s", txt)
	}
	if logs, _, _ := clientRun(ctx, env, "", "builds", "logs", id); !strings.Contains(logs, "context-ok") {
		t.Errorf("builds logs:\n%s", logs)
	}
	if logs, _, _ := clientRun(ctx, env, "", "builds", "logs", "--follow", id); !strings.Contains(logs, "context-ok") {
		t.Errorf("builds logs --follow of a finished build:\n%s", logs)
	}
	insp, _, code := clientRun(ctx, env, "", "inspect", id)
	if code != 0 || !strings.Contains(insp, "linux/amd64") || !strings.Contains(insp, "team=cli") || !strings.Contains(insp, lines[0]) {
		t.Errorf("inspect: exit %d\n%s", code, insp)
	}
	js, _, _ = clientRun(ctx, env, "", "inspect", "--json", "builds:"+id)
	var ij struct {
		Platforms []struct {
			Platform string `json:"platform"`
		} `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(js), &ij); err != nil || len(ij.Platforms) != 2 {
		t.Errorf("inspect --json: %v %s", err, js)
	}
	dock := filepath.Join(t.TempDir(), "arm.tar")
	if _, stderr, code := clientRun(ctx, env, "", "export", id, "--format", "docker", "--platform", "linux/arm64", "-o", dock); code != 0 {
		t.Fatalf("export: %d %s", code, stderr)
	}
	var cfg struct{ Architecture string }
	if err := json.Unmarshal([]byte(sh(t, "skopeo", "inspect", "--config", "--raw", "docker-archive:"+dock)), &cfg); err != nil || cfg.Architecture != "arm64" {
		t.Errorf("the docker archive's config: %+v %v", cfg, err)
	}
	// Cancel of a finished build: the server's sentence, exit 3.
	if _, stderr, code := clientRun(ctx, env, "", "cancel", id); code != exitRefused || !strings.Contains(stderr, "manifold: ") {
		t.Errorf("cancel of a finished build: exit %d %q", code, stderr)
	}
	if _, stderr, code := clientRun(ctx, env, "", "builds", "show", "nosuchbuild"); code != exitRefused {
		t.Errorf("show of an unknown build: exit %d %q", code, stderr)
	}
	if _, stderr, code := clientRun(ctx, env, "", "build", "--output", "type=tar", dir); code != exitUsage {
		t.Errorf("bad --output: exit %d %q", code, stderr)
	}

	// A failing Dockerfile: exit 1 and BuildKit's sentence.
	bad := t.TempDir()
	writeFiles(t, bad, map[string]string{"Dockerfile": "FROM busybox:1\nRUN echo about-to-fail && exit 3\n"})
	out, stderr, code = clientRun(ctx, env, "", "build", "--platform", "linux/amd64", bad)
	if code != exitFailed || !strings.Contains(stderr, "failed") || !strings.Contains(stderr, "exit code: 3") || !strings.Contains(stderr, "about-to-fail") {
		t.Errorf("failing build: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}

	// Ctrl-C: exit 130, and the build is canceled on the server.
	slow := t.TempDir()
	writeFiles(t, slow, map[string]string{"Dockerfile": "FROM busybox:1\nRUN echo sleeping && sleep 120\n"})
	cctx, cancel := context.WithCancel(ctx)
	type result struct {
		stderr string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, stderr, code := clientRun(cctx, env, "", "build", "--platform", "linux/amd64", "--no-cache", slow)
		done <- result{stderr, code}
	}()
	var slowID string
	deadline := time.Now().Add(2 * time.Minute)
	for slowID == "" && time.Now().Before(deadline) {
		js, _, _ := clientRun(ctx, env, "", "builds", "ls", "--status", "running", "--json")
		var l struct{ Builds []builds.Build }
		_ = json.Unmarshal([]byte(js), &l)
		for _, b := range l.Builds {
			for _, s := range b.Steps {
				if strings.Contains(s.Name, "sleep 120") && s.StartedAt != nil {
					slowID = b.ID
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if slowID == "" {
		t.Fatal("the slow build never reached its RUN step")
	}
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the CLI did not return after Ctrl-C")
	}
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "canceled") {
		t.Errorf("after Ctrl-C: exit %d %q", r.code, r.stderr)
	}
	var after builds.Build
	js, _, _ = clientRun(ctx, env, "", "builds", "show", "--json", slowID)
	if err := json.Unmarshal([]byte(js), &after); err != nil || after.Status != builds.StatusCanceled {
		t.Errorf("the build is %q after Ctrl-C; want canceled (%v)", after.Status, err)
	}

	if _, _, code := clientRun(ctx, env, "", "logout"); code != 0 {
		t.Error("logout failed")
	}
	if _, err := os.Stat(cfgFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("logout left %s: %v", cfgFile, err)
	}
}

// TestLiveViewIsCompact feeds the terminal view a build's events: finished
// steps get one line each, output is shown only for the failing step.
func TestLiveViewIsCompact(t *testing.T) {
	var out bytes.Buffer
	v := newLiveView(&out)
	t0 := time.Now()
	t1 := t0.Add(1500 * time.Millisecond)
	ev := func(typ builds.EventType, data any) builds.Event { return builds.NewEvent(typ, data) }
	for _, e := range []builds.Event{
		ev(builds.EventStep, builds.StepEvent{Step: builds.Step{Digest: "a", Number: 1, Name: "[internal] load", Cached: true}}),
		ev(builds.EventStep, builds.StepEvent{Step: builds.Step{Digest: "b", Number: 2, Name: "RUN make", StartedAt: &t0}}),
		ev(builds.EventLog, builds.LogEvent{Step: "b", Number: 2, Stream: 1, Text: "compiling"}),
		ev(builds.EventStep, builds.StepEvent{Step: builds.Step{Digest: "b", Number: 2, Name: "RUN make", StartedAt: &t0, FinishedAt: &t1}}),
		ev(builds.EventStep, builds.StepEvent{Step: builds.Step{Digest: "c", Number: 3, Name: "RUN test", StartedAt: &t0}}),
		ev(builds.EventLog, builds.LogEvent{Step: "c", Number: 3, Stream: 2, Text: "assertion failed"}),
		ev(builds.EventStep, builds.StepEvent{Step: builds.Step{Digest: "c", Number: 3, Name: "RUN test", StartedAt: &t0, FinishedAt: &t1, Error: "exit code: 1"}}),
		ev(builds.EventDone, map[string]any{}),
	} {
		if err := v.add(e); err != nil {
			t.Fatal(err)
		}
	}
	s := out.String()
	for _, want := range []string{"✓ #1 [internal] load  CACHED\n", "✓ #2 RUN make  1.5s\n", "✗ #3 RUN test\n", "│ assertion failed\n", "ERROR: exit code: 1\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("live view lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "compiling") {
		t.Errorf("a succeeding step's output was printed:\n%s", s)
	}
}
