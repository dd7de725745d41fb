package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"

	"manifold/builds"
	"manifold/builds/buildkittest"
	"manifold/db"

	"github.com/opencontainers/go-digest"

	"github.com/chromedp/chromedp"
)

// buildxCmd runs bin/buildx with its own config folder.
func buildxCmd(t *testing.T, config string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.Bin, "buildx"), args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config, "BUILDX_NO_DEFAULT_ATTESTATIONS=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBuilderEndpoint issues a builder certificate with the CLI, builds
// through --builder-addr with the real docker buildx (remote driver) and
// with BuildKit's client, and checks the handshake refuses no certificate,
// a revoked one and a viewer.
func TestBuilderEndpoint(t *testing.T) {
	if _, err := os.Stat(filepath.Join(env.Bin, "buildx")); err != nil {
		t.Fatal("bin/buildx is missing: run make test (scripts/setup.sh builds it)")
	}
	data := t.TempDir()
	cli(t, "user", "create", "--role", "builder", "--data", data, "sam")
	cli(t, "user", "create", "--role", "viewer", "--data", data, "vic")
	certs := t.TempDir()
	if out := cli(t, "builder-cert", "--user", "sam", "--days", "7", "--data", data, "--out", certs); !strings.Contains(out, "for sam, valid until") {
		t.Fatalf("builder-cert said %q", out)
	}
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if fi, err := os.Stat(filepath.Join(certs, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"builder-cert", "--user", "vic", "--data", data, "--out", t.TempDir()}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "viewer role") {
		t.Fatalf("a certificate for a viewer: %v", err)
	}
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	samToken := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "sam", "--scope", "build"))
	app := startApp(t, data, "--buildkit", env.Addr(), "--builder-addr", addr)
	app.token = samToken

	// The real docker buildx, remote driver, through the endpoint.
	config := t.TempDir()
	if out, err := buildxCmd(t, config, "create", "--name", "team", "--driver", "remote",
		"--driver-opt", "cacert="+filepath.Join(certs, "ca.pem")+",cert="+filepath.Join(certs, "cert.pem")+",key="+filepath.Join(certs, "key.pem"),
		"tcp://"+addr); err != nil {
		t.Fatalf("buildx create: %v\n%s", err, out)
	}
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM busybox:1\nARG GREETING\nRUN echo \"$GREETING from $(uname -m)\" && echo via buildx > /via\n"), 0o644)
	dest := filepath.Join(t.TempDir(), "out.oci.tar")
	meta := filepath.Join(t.TempDir(), "meta.json")
	printed, err := buildxCmd(t, config, "build", "--builder", "team", "--platform", "linux/amd64,linux/arm64", "--progress", "plain",
		"--build-arg", "GREETING=hello-buildx", "--label", "team=blue", "--provenance", "mode=min", "--metadata-file", meta,
		"--output", "type=oci,dest="+dest, ctxDir)
	if err != nil {
		t.Fatalf("buildx build through the endpoint: %v\n%s", err, printed)
	}
	if raw := sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+dest); !strings.Contains(raw, "linux") {
		t.Fatalf("buildx's archive: %s", raw)
	}

	// Manifold recorded it: who, what, steps, log and the digest buildx printed.
	var md map[string]any
	if raw, err := os.ReadFile(meta); err != nil || json.Unmarshal(raw, &md) != nil {
		t.Fatalf("buildx's metadata file: %v", err)
	}
	wantDigest, _ := md["containerimage.digest"].(string)
	bxRef, _ := md["buildx.build.ref"].(string)
	wantRef := bxRef[strings.LastIndex(bxRef, "/")+1:]
	if wantDigest == "" || wantRef == "" {
		t.Fatalf("buildx's metadata names no digest or ref: %v", md)
	}
	// buildx got its answer only once Manifold had recorded the build.
	found := viaBuildx(t, app, wantRef)
	if found.Status != builds.StatusSucceeded || found.IndexDigest != wantDigest {
		t.Fatalf("when buildx returned, the build was %s with index %q", found.Status, found.IndexDigest)
	}
	b := getBuild(t, app, found.ID)
	if b.Status != builds.StatusSucceeded || b.CreatedBy != "sam" || b.Via != builds.ViaBuildx {
		t.Fatalf("the recorded build: status %s by %q via %q (%s)", b.Status, b.CreatedBy, b.Via, b.Error)
	}
	if b.IndexDigest != wantDigest {
		t.Fatalf("recorded index %s, buildx printed %s", b.IndexDigest, wantDigest)
	}
	if strings.Join(b.Platforms, ",") != "linux/amd64,linux/arm64" || b.BuildArgs["GREETING"] != "hello-buildx" || b.Labels["team"] != "blue" || b.Provenance != "min" {
		t.Fatalf("the recorded request: platforms %v, args %v, labels %v, provenance %q", b.Platforms, b.BuildArgs, b.Labels, b.Provenance)
	}
	if len(b.Manifests) != 2 || b.Manifests[0].Platform != "linux/amd64" || b.Manifests[1].Platform != "linux/arm64" {
		t.Fatalf("the recorded manifests: %+v", b.Manifests)
	}
	named := 0
	for _, st := range b.Steps {
		if strings.HasPrefix(st.Name, "[manifold]") {
			continue
		}
		named++
		if !strings.Contains(printed, st.Name) {
			t.Errorf("step %q is not one buildx printed", st.Name)
		}
	}
	if named < 4 {
		t.Fatalf("%d steps recorded: %+v", named, b.Steps)
	}
	_, logText := app.do(t, "GET", "/api/v1/builds/"+b.ID+"/log", "")
	for _, line := range []string{"hello-buildx from x86_64", "hello-buildx from aarch64"} {
		if !strings.Contains(printed, line) || !strings.Contains(string(logText), line) {
			t.Errorf("log line %q: in buildx's output %v, in Manifold's log %v", line, strings.Contains(printed, line), strings.Contains(string(logText), line))
		}
	}
	// The index is in the store: the explorer reads it, attestations and all.
	if code, idx := app.do(t, "GET", "/api/v1/builds/"+b.ID+"/index", ""); code != 200 || !strings.Contains(string(idx), "https://slsa.dev/provenance") {
		t.Fatalf("the stored index: %d %s", code, idx)
	}
	if code, page := app.do(t, "GET", "/builds/"+b.ID, ""); code != 200 || !strings.Contains(string(page), "via buildx") {
		t.Fatalf("the build page: %d", code)
	}

	// docker buildx history reads BuildKit's history through the endpoint too.
	if out, err := buildxCmd(t, config, "history", "ls", "--builder", "team", "--no-trunc"); err != nil || !strings.Contains(out, wantRef) {
		t.Fatalf("buildx history ls through the endpoint (%v):\n%s", err, out)
	}
	// The shared builder's cache and history are not a user's to remove.
	if out, err := buildxCmd(t, config, "prune", "--builder", "team", "--force"); err == nil || !strings.Contains(out, "does not prune") {
		t.Fatalf("buildx prune through the endpoint (%v):\n%s", err, out)
	}
	if out, err := buildxCmd(t, config, "history", "rm", "--builder", "team", wantRef); err == nil || !strings.Contains(out, "does not delete") {
		t.Fatalf("buildx history rm through the endpoint (%v):\n%s", err, out)
	}
	if code, body := app.do(t, "POST", "/api/v1/builds/"+b.ID+"/rebuild", ""); code != 409 || !strings.Contains(string(body), "stayed on that client") {
		t.Fatalf("rebuild of a buildx build: %d %s", code, body)
	}

	// Pushed by BuildKit itself: the tag and the push are recorded, and the
	// image is pulled from Manifold under that name.
	tag := env.Registry + "/team/bx:1"
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--platform", "linux/amd64,linux/arm64", "--progress", "plain",
		"--build-arg", "GREETING=hello-buildx", "--output", "type=image,name="+tag+",push=true", ctxDir); err != nil {
		t.Fatalf("buildx --push: %v\n%s", err, out)
	}
	pushed := app.wait(t, latestViaBuildx(t, app, b.ID).ID)
	if pushed.Status != builds.StatusSucceeded || len(pushed.Tags) != 1 || pushed.Tags[0] != tag || len(pushed.Pushes) != 1 || !pushed.Pushes[0].OK || !pushed.Pushed || pushed.IndexDigest == "" {
		t.Fatalf("the pushed buildx build: %s tags %v pushes %+v index %q (%s)", pushed.Status, pushed.Tags, pushed.Pushes, pushed.IndexDigest, pushed.Error)
	}
	for _, ref := range []string{
		"docker://" + tag, // the registry buildx pushed to
		"docker://" + strings.TrimPrefix(app.URL, "http://") + "/" + strings.Replace(env.Registry, ":", "_", 1) + "/team/bx:1", // Manifold's own /v2/
	} {
		raw := sh(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "sam:"+samToken, ref)
		if got := digest.FromString(raw).String(); got != pushed.IndexDigest {
			t.Fatalf("%s has %s, Manifold recorded %s", ref, got, pushed.IndexDigest)
		}
	}
	// A result that stays in BuildKit is recorded without an index.
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", "--output", "type=cacheonly", ctxDir); err != nil {
		t.Fatalf("buildx cacheonly: %v\n%s", err, out)
	}
	if c := app.wait(t, latestViaBuildx(t, app, pushed.ID).ID); c.ID == b.ID || c.Status != builds.StatusSucceeded || c.IndexDigest != "" || len(c.Steps) == 0 {
		t.Fatalf("the cacheonly buildx build: %s index %q, %d steps (%s)", c.Status, c.IndexDigest, len(c.Steps), c.Error)
	}

	// A failing RUN: buildx fails, and Manifold records the step and its line.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "Dockerfile"), []byte("FROM busybox:1\nRUN echo about to fail\nRUN exit 7\n"), 0o644)
	meta2 := filepath.Join(t.TempDir(), "meta.json")
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", "--metadata-file", meta2, bad); err == nil {
		t.Fatalf("buildx built a failing Dockerfile:\n%s", out)
	}
	f := app.wait(t, latestViaBuildx(t, app, b.ID).ID)
	if f.Status != builds.StatusFailed || f.ErrorLine != 3 || !strings.Contains(f.Error, "RUN exit 7") || f.ErrorStep == 0 {
		t.Fatalf("the failed buildx build: status %s, line %d, step %d, error %q", f.Status, f.ErrorLine, f.ErrorStep, f.Error)
	}
	// BuildKit quoted the Dockerfile in its error: the page marks the line.
	if f.Dockerfile != "FROM busybox:1\nRUN echo about to fail\nRUN exit 7\n" {
		t.Fatalf("the failed buildx build's Dockerfile: %q", f.Dockerfile)
	}
	if _, page := app.do(t, "GET", "/builds/"+f.ID, ""); !strings.Contains(string(page), `data-line="3"`) || !strings.Contains(string(page), `class="ln marked"`) {
		t.Fatalf("the failed buildx build's page marks no line")
	}

	// The history's via= filter.
	var onlyBuildx struct{ Builds []*builds.Build }
	if code, body := app.do(t, "GET", "/api/v1/builds?via=buildx", ""); code != 200 || json.Unmarshal(body, &onlyBuildx) != nil || len(onlyBuildx.Builds) < 4 {
		t.Fatalf("via=buildx: %d %s", code, body)
	}
	if code, body := app.do(t, "GET", "/api/v1/builds?via=manifold", ""); code != 200 || strings.Contains(string(body), `"id"`) {
		t.Fatalf("via=manifold: %d %s", code, body)
	}
	if code, body := app.do(t, "GET", "/api/v1/builds?via=docker", ""); code != 400 || !strings.Contains(string(body), "use buildx") {
		t.Fatalf("via=docker: %d %s", code, body)
	}

	// Manifold's outbound policy holds for buildx builds too: a source on
	// loopback fails the build with its sentence; entitlements are refused.
	ssrf := t.TempDir()
	os.WriteFile(filepath.Join(ssrf, "Dockerfile"), []byte("FROM busybox:1\nADD "+app.URL+"/healthz /h\n"), 0o644)
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", ssrf); err == nil || !strings.Contains(out, "not allowed") {
		t.Fatalf("buildx fetched from Manifold's own loopback address (%v):\n%s", err, out)
	}
	if p := app.wait(t, latestViaBuildx(t, app, f.ID).ID); p.Status != builds.StatusFailed || !strings.Contains(p.Error, "127.0.0.1") {
		t.Fatalf("the refused buildx build: %s %q", p.Status, p.Error)
	}
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", "--allow", "network.host", ctxDir); err == nil || !strings.Contains(out, "grants no entitlements") {
		t.Fatalf("buildx with --allow network.host (%v):\n%s", err, out)
	}

	// Canceled in Manifold: the client's solve ends, and the build is canceled.
	slow := t.TempDir()
	os.WriteFile(filepath.Join(slow, "Dockerfile"), []byte("FROM busybox:1\nRUN echo started && sleep 120\n"), 0o644)
	type outcome struct {
		out string
		err error
	}
	bx := make(chan outcome, 1)
	go func() {
		out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", "--no-cache", slow)
		bx <- outcome{out, err}
	}()
	var running *builds.Build
	for deadline := time.Now().Add(60 * time.Second); running == nil && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if c := latestViaBuildx(t, app, f.ID); c.ID != b.ID && c.Status == builds.StatusRunning {
			running = c
		}
	}
	if running == nil {
		t.Fatal("the slow buildx build was not recorded running")
	}
	waitStep(t, app, running.ID, "sleep 120")
	if code, body := app.do(t, "POST", "/api/v1/builds/"+running.ID+"/cancel", ""); code != 200 {
		t.Fatalf("cancel the buildx build: %d %s", code, body)
	}
	select {
	case o := <-bx:
		if o.err == nil {
			t.Fatalf("buildx finished a build canceled in Manifold:\n%s", o.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("buildx still runs 30 s after its build was canceled in Manifold")
	}
	if c := app.wait(t, running.ID); c.Status != builds.StatusCanceled {
		t.Fatalf("the canceled buildx build is %s (%s)", c.Status, c.Error)
	}

	// BuildKit's own client with the same certificate; then refusals.
	dial := func(opts ...bkclient.ClientOpt) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := bkclient.New(ctx, "tcp://"+addr, append([]bkclient.ClientOpt{bkclient.WithServerConfig("", filepath.Join(certs, "ca.pem"))}, opts...)...)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.ListWorkers(ctx)
		return err
	}
	if err := dial(bkclient.WithCredentials(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))); err != nil {
		t.Fatalf("sam's certificate: %v", err)
	}
	if err := dial(); err == nil {
		t.Fatal("no certificate was let through")
	}
	// Revoked with the CLI: the next handshake refuses it, and buildx fails.
	issued := cli(t, "builder-cert", "--user", "sam", "--data", data, "--out", certs)
	serial := strings.Fields(issued)[1]
	if err := dial(bkclient.WithCredentials(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))); err != nil {
		t.Fatalf("sam's new certificate: %v", err)
	}
	if out := cli(t, "builder-cert", "revoke", "--data", data, serial); !strings.Contains(out, "revoked "+serial) {
		t.Fatalf("revoke said %q", out)
	}
	if err := dial(bkclient.WithCredentials(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))); err == nil {
		t.Fatal("a revoked certificate was let through")
	}
	// Expired: Manifold's record says it ended yesterday (the handshake's
	// x509 expiry is the unit test's).
	expired := t.TempDir()
	issued = cli(t, "builder-cert", "--user", "sam", "--data", data, "--out", expired)
	serial = strings.Fields(issued)[1]
	d, err := db.Open(context.Background(), filepath.Join(data, "manifold.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(`UPDATE builder_certs SET expires_at = ? WHERE serial = ?`, time.Now().Add(-24*time.Hour).UTC().Format("2006-01-02T15:04:05.000000000Z"), serial); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// buildx is refused with each: revoked (team), expired, and none (the CA
	// alone). Each refusal takes buildx ~20 s of retries, so they run at once.
	for name, opt := range map[string]string{
		"expired": "cacert=" + filepath.Join(expired, "ca.pem") + ",cert=" + filepath.Join(expired, "cert.pem") + ",key=" + filepath.Join(expired, "key.pem"),
		"nocert":  "cacert=" + filepath.Join(certs, "ca.pem"),
	} {
		if out, err := buildxCmd(t, config, "create", "--name", name, "--driver", "remote", "--driver-opt", opt, "tcp://"+addr); err != nil {
			t.Fatalf("buildx create %s: %v\n%s", name, err, out)
		}
	}
	var wg sync.WaitGroup
	for _, name := range []string{"team", "expired", "nocert"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := buildxCmd(t, config, "build", "--builder", name, "--progress", "plain", ctxDir); err == nil {
				t.Errorf("buildx with builder %s (certificate revoked, expired, none) built:\n%s", name, out)
			}
		}()
	}
	wg.Wait()
}

// viaBuildx finds the build Manifold recorded for BuildKit ref ref.
func viaBuildx(t *testing.T, a *app, ref string) *builds.Build {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var list struct{ Builds []*builds.Build }
		_, body := a.do(t, "GET", "/api/v1/builds?limit=50", "")
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		for _, b := range list.Builds {
			if b.Ref == ref {
				return b
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, body := a.do(t, "GET", "/api/v1/builds?limit=50", "")
	t.Fatalf("no build of ref %s was recorded: %s", ref, body)
	return nil
}

// latestViaBuildx is the newest buildx build other than not.
func latestViaBuildx(t *testing.T, a *app, not string) *builds.Build {
	t.Helper()
	var list struct{ Builds []*builds.Build }
	_, body := a.do(t, "GET", "/api/v1/builds?limit=50", "")
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	for _, b := range list.Builds {
		if b.Via == builds.ViaBuildx && b.ID != not {
			return b
		}
	}
	t.Fatalf("no second buildx build was recorded")
	return nil
}

// dialEndpoint asks the endpoint for its workers with BuildKit's client and
// the certificate files in dir.
func dialEndpoint(addr, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := bkclient.New(ctx, "tcp://"+addr, bkclient.WithServerConfig("", filepath.Join(dir, "ca.pem")),
		bkclient.WithCredentials(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.ListWorkers(ctx)
	return err
}

// TestBuilderCertificatesAPIAndPage makes certificates with the API and with
// the account page's button in Chromium, uses them, and revokes them there.
func TestBuilderCertificatesAPIAndPage(t *testing.T) {
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, "", "--buildkit", env.Addr(), "--builder-addr", addr)
	ctx := browser(t)
	if err := chromedp.Do(ctx, append(setupInBrowser(a.URL, "ada"),
		chromedp.Navigate(a.URL+"/account"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="cert-days"]`), "5"),
		chromedp.Click(chromedp.CSS(`[data-testid="cert-create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="new-cert"]`)),
	)...); err != nil {
		t.Fatalf("make a certificate on the account page: %v", err)
	}
	read := func(sel string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid="`+sel+`"]').textContent`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dir := t.TempDir()
	for name, sel := range map[string]string{"ca.pem": "cert-ca", "cert.pem": "cert-cert", "key.pem": "cert-key"} {
		os.WriteFile(filepath.Join(dir, name), []byte(read(sel)), 0o600)
	}
	if cmds := read("buildx-commands"); !strings.Contains(cmds, "docker buildx create --name team --driver remote --driver-opt cacert=") || !strings.Contains(cmds, "tcp://"+addr) {
		t.Fatalf("the page's commands: %q", cmds)
	}
	serial, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid="new-cert"]').dataset.serial`))
	if err != nil || serial == "" {
		t.Fatalf("the new certificate's serial: %q %v", serial, err)
	}
	screenshot(t, ctx, "account-builder-cert.png")
	if err := dialEndpoint(addr, dir); err != nil {
		t.Fatalf("the page's certificate: %v", err)
	}
	// The page's files drive a real buildx build, which the history shows.
	config := t.TempDir()
	if out, err := buildxCmd(t, config, "create", "--name", "team", "--driver", "remote",
		"--driver-opt", "cacert="+filepath.Join(dir, "ca.pem")+",cert="+filepath.Join(dir, "cert.pem")+",key="+filepath.Join(dir, "key.pem"), "tcp://"+addr); err != nil {
		t.Fatalf("buildx create: %v\n%s", err, out)
	}
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM busybox:1\nRUN echo from the account page\n"), 0o644)
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", "--output", "type=oci,dest="+filepath.Join(t.TempDir(), "o.tar"), ctxDir); err != nil {
		t.Fatalf("buildx build with the page's certificate: %v\n%s", err, out)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/builds"),
		chromedp.Click(chromedp.CSS(`[data-testid="build-row"] [data-testid="via-buildx"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="filter-via"]`)),
	); err != nil {
		t.Fatalf("history's via buildx badge: %v", err)
	}
	if via, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid="filter-via"]').value`)); err != nil || via != "buildx" {
		t.Fatalf("the badge's filter: %q %v", via, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid="build-row"] a.mono`)),
		chromedp.WaitVisible(chromedp.CSS(`#build [data-testid="build-status"][data-status="succeeded"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="started-by"]`)),
	); err != nil {
		t.Fatalf("the buildx build's page: %v", err)
	}
	if by := read("started-by"); !strings.Contains(by, "ada") || !strings.Contains(by, "docker buildx") {
		t.Fatalf("started by: %q", by)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-testid="buildx-command"]').length`)); err != nil || n != 0 {
		t.Fatalf("a buildx build's page offers to build it from a shell (%d, %v)", n, err)
	}
	screenshot(t, ctx, "build-via-buildx.png")
	if err := chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/account"),
		chromedp.Click(chromedp.CSS(`[data-testid="cert-row"][data-serial="`+serial+`"] [data-testid="cert-revoke"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="cert-row"][data-serial="`+serial+`"] .muted`)),
	); err != nil {
		t.Fatalf("revoke on the account page: %v", err)
	}
	if err := dialEndpoint(addr, dir); err == nil {
		t.Fatal("a certificate revoked on the account page was let through")
	}

	// The API: a builder makes one, uses it and revokes it; bad days and a
	// viewer are refused with a sentence.
	data := a.Data
	cli(t, "user", "create", "--role", "builder", "--data", data, "bob")
	cli(t, "user", "create", "--role", "viewer", "--data", data, "val")
	bob := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "bob", "--scope", "build"))
	val := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "val", "--scope", "read"))
	code, body, _ := a.request("POST", "/api/v1/builder-certs", `{"days": 0}`, bob)
	if code != 400 || !strings.Contains(string(body), "1 to 366 days") {
		t.Fatalf("days 0: %d %s", code, body)
	}
	if code, body, _ = a.request("POST", "/api/v1/builder-certs", `{"days": 2}`, val); code != 403 {
		t.Fatalf("a viewer's certificate: %d %s", code, body)
	}
	code, body, _ = a.request("POST", "/api/v1/builder-certs", `{"days": 2}`, bob)
	var made struct {
		Serial, User, CA, Cert, Key string
		ExpiresAt                   time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &made); code != 201 || err != nil || made.User != "bob" || time.Until(made.ExpiresAt) > 49*time.Hour {
		t.Fatalf("bob's certificate: %d %s", code, body)
	}
	api := t.TempDir()
	for name, pem := range map[string]string{"ca.pem": made.CA, "cert.pem": made.Cert, "key.pem": made.Key} {
		os.WriteFile(filepath.Join(api, name), []byte(pem), 0o600)
	}
	if err := dialEndpoint(addr, api); err != nil {
		t.Fatalf("bob's API certificate: %v", err)
	}
	if code, body, _ = a.request("GET", "/api/v1/builder-certs", "", bob); code != 200 || !strings.Contains(string(body), made.Serial) || strings.Contains(string(body), serial) {
		t.Fatalf("bob's list: %d %s", code, body)
	}
	if code, _, _ = a.request("DELETE", "/api/v1/builder-certs/"+serial, "", bob); code != 404 {
		t.Fatalf("bob revoking ada's certificate: %d", code)
	}
	if code, _, _ = a.request("DELETE", "/api/v1/builder-certs/"+made.Serial, "", bob); code != 204 {
		t.Fatalf("bob revoking his own: %d", code)
	}
	if err := dialEndpoint(addr, api); err == nil {
		t.Fatal("a certificate revoked through the API was let through")
	}
}
