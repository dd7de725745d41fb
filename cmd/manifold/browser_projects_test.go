package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserProjectPage creates a project with the form in Chromium,
// presses "Build now" and finds the build on the project's page.
func TestBrowserProjectPage(t *testing.T) {
	url := gitServer(t)
	gitAddr := strings.TrimSuffix(strings.TrimPrefix(url, "git://"), "/repo.git")
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", gitAddr)
	ctx := browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/projects"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="project-form"]`)),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-name"]`), "web"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-git"]`), url),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-branches"]`), "main"),
		chromedp.SetValue(chromedp.CSS(`input[name="context_dir"]`), "svc"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-platforms"]`), "linux/amd64"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-tags"]`), "pages/web:{{branch}}"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-secret"]`), "browser-secret"),
		chromedp.Click(chromedp.CSS(`[data-testid="project-save"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="project-title"]`)),
	)
	if err != nil {
		t.Fatalf("create the project: %v", err)
	}
	hooks, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`[data-testid="project-hooks"]`)))
	if err != nil || !strings.Contains(hooks, a.URL+"/hooks/github/web") || !strings.Contains(hooks, "/hooks/gitlab/web") {
		t.Fatalf("webhook URLs %q (%v)", hooks, err)
	}
	if page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`main`))); strings.Contains(page, "browser-secret") {
		t.Fatal("the project page shows the webhook secret")
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid="build-now"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="build-status"][data-status="succeeded"]`)),
		chromedp.Navigate(a.URL+"/projects/web"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="project-build-row"]`)),
	)
	if err != nil {
		t.Fatalf("build now: %v", err)
	}
	row, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`[data-testid="project-build-row"]`)))
	if err != nil || !strings.Contains(row, "succeeded") || !strings.Contains(row, "pages/web:main") {
		t.Fatalf("project build row %q (%v)", row, err)
	}
	screenshot(t, ctx, "project.png")
	// A bad form comes back with the user's input and the sentence.
	err = chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/projects"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="project-form"]`)),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-name"]`), "web"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-git"]`), url),
		chromedp.SetValue(chromedp.CSS(`[data-testid="project-secret"]`), "x"),
		chromedp.Click(chromedp.CSS(`[data-testid="project-save"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="project-error"]`)),
	)
	if err != nil {
		t.Fatalf("duplicate project: %v", err)
	}
	msg, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`[data-testid="project-error"]`)))
	if !strings.Contains(msg, "exists already") {
		t.Errorf("duplicate project message %q", msg)
	}
}
