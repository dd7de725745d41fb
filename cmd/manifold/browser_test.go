package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"manifold/builds/buildkittest"
)

// browser starts headless Chromium (Debian's, installed by make test).
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 1400),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot saves a full-page PNG under the git-ignored screenshots/ folder.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	root, err := buildkittest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join(root, "screenshots")
	_ = os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserFollowsABuildLive(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	ctx := browser(t)
	df := "FROM busybox:1\nRUN for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.4; done\n"
	err := chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="new-build-form"]`)),
		chromedp.SetValue(chromedp.CSS(`#dockerfile`), df),
		chromedp.Click(chromedp.CSS(`details.section summary`)),
		chromedp.Click(chromedp.CSS(`[data-testid="no-cache"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#build[data-live="true"]`)),
	)
	if err != nil {
		t.Fatalf("submit the form: %v", err)
	}
	// A marker that a reload would wipe out.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload = 42`)); err != nil {
		t.Fatal(err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	status := func() string {
		t.Helper()
		r, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#status`), "data-status"))
		if err != nil {
			t.Fatalf("read the status: %v", err)
		}
		return r.Value
	}
	// Output arrives while the build is still running.
	deadline := time.Now().Add(2 * time.Minute)
	var logText, st string
	for {
		logText, st = text(`#log`), status()
		if strings.Contains(logText, "tick 2") {
			break
		}
		if time.Now().After(deadline) || st == "succeeded" || st == "failed" {
			t.Fatalf("no live output while running (status %s):\n%s", st, logText)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st != "running" {
		t.Fatalf("saw output with status %q, want running", st)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#steps tbody tr').length`))
	if err != nil {
		t.Fatal(err)
	}
	if rows < 2 {
		t.Fatalf("%d step rows while running, want the steps so far", rows)
	}
	screenshot(t, ctx, "build-running.png")

	// Then the status turns to succeeded, on the same page.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#build[data-live="false"] [data-testid="build-status"][data-status="succeeded"]`))); err != nil {
		t.Fatalf("status never turned succeeded: %v", err)
	}
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload || 0`))
	if err != nil {
		t.Fatal(err)
	}
	if marker != 42 {
		t.Fatal("the page was reloaded")
	}
	digest, logText := text(`[data-testid="index-digest"]`), text(`#log`)
	if !strings.HasPrefix(strings.TrimSpace(digest), "sha256:") || !strings.Contains(logText, "tick 8") {
		t.Fatalf("finished page: digest %q, log:\n%s", digest, logText)
	}
	screenshot(t, ctx, "build-succeeded.png")
}

// setupInBrowser makes the first admin, name, on /setup and logs in as it
// (the password is "correct horse battery").
func setupInBrowser(base, name string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/setup"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="setup-form"]`)),
		chromedp.SetValue(chromedp.CSS(`#name`), name),
		chromedp.SetValue(chromedp.CSS(`#password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="setup-submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="new-build-form"]`)),
	}
}

func TestBrowserSetupLoginAndBuild(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	ctx := browser(t)
	// Setup mode: the first admin is made from this machine, then logged in.
	err := chromedp.Do(ctx, setupInBrowser(a.URL, "ada")...)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if user, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`[data-testid="nav-account"]`))); err != nil || user != "ada" {
		t.Fatalf("logged in as %q (%v)", user, err)
	}
	// The setup page is gone now.
	if code, _ := get(t, a.URL+"/setup"); code != 303 && code != 404 {
		t.Fatalf("/setup after setup = %d", code)
	}
	// The multipart form carries its CSRF token; the build runs.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#dockerfile`), example),
		chromedp.Click(chromedp.CSS(`[data-testid="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#build [data-testid="build-status"][data-status="succeeded"]`)),
	)
	if err != nil {
		t.Fatalf("build from the form as ada: %v", err)
	}
	screenshot(t, ctx, "build-as-user.png")
	// Logging out ends the session: pages send the browser to the login form.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid="logout"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.Navigate(a.URL+"/builds"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
	)
	if err != nil {
		t.Fatalf("logout: %v", err)
	}
}
