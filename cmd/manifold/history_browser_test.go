package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

// docsScreenshot saves a screenshot under screenshots/ and, when
// MANIFOLD_DOCS_SCREENSHOTS is set (make screenshots), also under
// docs/screenshots/, where the README shows it.
func docsScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	screenshot(t, ctx, name)
	if os.Getenv("MANIFOLD_DOCS_SCREENSHOTS") == "" {
		return
	}
	root, err := buildkittest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "screenshots", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// count is how many elements a selector finds on the current page.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+mustJSON(sel)+`).length`))
	if err != nil {
		t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

func TestBrowserHistoryFiltersAndTrends(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	var trend []string
	for _, label := range []string{"one", "two", "three"} {
		trend = append(trend, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nLABEL run=" + label + "\n",
			"platforms": []string{"linux/amd64"}, "tags": []string{"team/trend:v1"}}))
	}
	failed := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN exit 3\n", "platforms": []string{"linux/amd64"}, "tags": []string{"team/other:v1"}})
	plain := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nLABEL plain=yes\n", "platforms": []string{"linux/amd64", "linux/arm64"}})
	for _, id := range append(trend, plain) {
		if b := a.wait(t, id); b.Status != builds.StatusSucceeded {
			t.Fatalf("build %s: %s %s", id, b.Status, b.Error)
		}
	}
	if b := a.wait(t, failed); b.Status != builds.StatusFailed {
		t.Fatalf("the failing build %s", b.Status)
	}

	// The API: each filter narrows; paging keeps the filter; bad values are 400 with a sentence.
	list := func(q string) ([]string, string, http.Header) {
		t.Helper()
		resp, err := http.Get(a.URL + "/api/v1/builds?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /api/v1/builds?%s = %d %s", q, resp.StatusCode, body)
		}
		var out struct {
			Builds []builds.Build `json:"builds"`
			Next   string         `json:"next"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, b := range out.Builds {
			ids = append(ids, b.ID)
		}
		return ids, out.Next, resp.Header
	}
	for q, want := range map[string]int{
		"tag=team/trend": 3, "tag=team/trend:v1": 3, "tag=team/trend:v2": 0, "status=failed": 1, "status=succeeded": 4,
		"platform=linux/arm64": 1, "q=plain%3Dyes": 1, "q=EXIT+3": 1, "since=2000-01-01&until=2000-01-02": 0, "since=2000-01-01": 5,
		"tag=team/trend&status=failed": 0,
	} {
		if ids, _, _ := list(q); len(ids) != want {
			t.Errorf("?%s: %d builds, want %d", q, len(ids), want)
		}
	}
	page1, next, h := list("tag=team/trend&limit=2")
	if len(page1) != 2 || next != page1[1] || !strings.Contains(h.Get("Link"), "before="+next) || !strings.Contains(h.Get("Link"), "tag=team%2Ftrend") {
		t.Fatalf("first page %v next %q Link %q", page1, next, h.Get("Link"))
	}
	linkURL := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(h.Get("Link"), ";", 2)[0], "</api/v1/builds?"), ">")
	if page2, _, _ := list(linkURL); len(page2) != 1 || page2[0] != trend[0] {
		t.Fatalf("the Link page is %v, want the oldest trend build %s", page2, trend[0])
	}
	for _, bad := range []string{"status=done", "platform=linux/z80", "since=yesterday", "q=ab", "tag=Team/App"} {
		code, body := a.do(t, "GET", "/api/v1/builds?"+bad, "")
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code != 400 || e.Code != "invalid_filter" && e.Code != "invalid_platform" || len(e.Error) < 20 {
			t.Errorf("?%s = %d %s, want 400 with a sentence", bad, code, body)
		}
	}
	if code, body := get(t, a.URL+"/builds?status=done"); code != 400 || !strings.Contains(body, "is not a build status") {
		t.Errorf("/builds?status=done = %d", code)
	}

	// The page: the form narrows the list, and the URL keeps it over a reload.
	ctx := browser(t)
	rows := func() int { return count(t, ctx, `[data-testid="build-row"]`) }
	err := chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/builds"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="history-filters"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 5 {
		t.Fatalf("unfiltered history shows %d rows, want 5", n)
	}
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`[data-testid="filter-tag"]`), "team/trend"),
		chromedp.Click(chromedp.CSS(`[data-testid="filter-apply"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="filter-clear"]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 3 {
		t.Fatalf("tag filter shows %d rows, want 3", n)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "tag=team%2Ftrend") {
		t.Fatalf("the filter is not in the URL: %s (%v)", loc, err)
	}
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[data-testid="filter-clear"]`))); err != nil {
		t.Fatal(err)
	}
	tagValue, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`[data-testid="filter-tag"]`)))
	if n := rows(); n != 3 || err != nil || tagValue != "team/trend" {
		t.Fatalf("after a reload: %d rows, tag input %q (%v)", n, tagValue, err)
	}
	docsScreenshot(t, ctx, "history-filtered.png")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid="filter-tag"]').value = ""; document.querySelector('[data-testid="filter-status"]').value = "failed"`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid="filter-apply"]`))); err != nil {
		t.Fatal(err)
	}
	// The old page has a clear link too: wait for the new one's URL, not for an element.
	for deadline := time.Now().Add(15 * time.Second); ; {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState`))
		if err == nil && strings.Contains(loc, "status=failed") && state == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status filter did not load: %s (%v)", loc, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := rows(); n != 1 || count(t, ctx, `[data-build-id="`+failed+`"]`) != 1 {
		t.Fatalf("status filter shows %d rows, want the failed build only", n)
	}

	// Trends: one point per build on each chart; the tag links there.
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/builds?tag=team/trend:v1"), chromedp.Click(chromedp.CSS(`[data-testid="trends-link"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="chart-duration"]`))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"duration", "size", "cache"} {
		if n := count(t, ctx, `[data-testid="chart-`+c+`"] [data-testid="trend-point"]`); n != 3 {
			t.Errorf("the %s chart has %d points, want one per build (3)", c, n)
		}
	}
	for i, id := range trend {
		if n := count(t, ctx, `[data-testid="chart-duration"] circle[data-build-id="`+id+`"]`); n != 1 {
			t.Errorf("build %d (%s) has %d duration points", i, id, n)
		}
	}
	desc, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`#chart-size-desc`)))
	if err != nil || !strings.Contains(desc, "linux/amd64: 3 builds") {
		t.Errorf("the size chart's text alternative: %q (%v)", desc, err)
	}
	docsScreenshot(t, ctx, "trends.png")
	var tr struct {
		Builds []struct {
			ID        string `json:"id"`
			Platforms map[string]struct {
				ImageSize int64 `json:"image_size"`
			} `json:"platforms"`
		} `json:"builds"`
	}
	if code := getJSON(t, a, "/api/v1/trends?tag="+url.QueryEscape("team/trend:v1"), &tr); code != 200 || len(tr.Builds) != 3 || tr.Builds[0].ID != trend[0] || tr.Builds[2].Platforms["linux/amd64"].ImageSize == 0 {
		t.Fatalf("GET /api/v1/trends = %d %+v", code, tr)
	}
	if code, _ := a.do(t, "GET", "/api/v1/trends", ""); code != 400 {
		t.Errorf("trends without a tag = %d, want 400", code)
	}

	// Dark, following the system: the same page on dark colours.
	bg := func() string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	light := bg()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	if dark := bg(); dark == light || dark != "rgb(15, 20, 28)" {
		t.Errorf("body background light %s, dark %s", light, dark)
	}
	docsScreenshot(t, ctx, "trends-dark.png")

	// 375 px wide: nothing sticks out sideways but inside its own scroller.
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 375, Height: 800, DeviceScaleFactor: 1, Mobile: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/builds?tag=team/trend"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="history-filters"]`))); err != nil {
		t.Fatal(err)
	}
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > 376 {
		t.Errorf("at 375 px the history page is %d px wide (%v)", w, err)
	}
	screenshot(t, ctx, "history-375-dark.png")
}

func TestBrowserCompareAndBreadcrumbs(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	one := []string{"linux/amd64"}
	older := a.startBuild(t, map[string]any{"platforms": one,
		"dockerfile": "FROM busybox:1\nRUN mkdir -p /data/x && echo a > /data/x/f && ln -s /bin/busybox /data/link && echo 1 > /data/gone\nCMD [\"sh\"]\n"})
	newer := a.startBuild(t, map[string]any{"platforms": one,
		"dockerfile": "FROM busybox:1\nRUN mkdir -p /data/x && echo bbb > /data/x/f && ln -s /bin/sh /data/link && echo 2 > /data/new\nCMD [\"sh\"]\n"})
	scratch := a.startBuild(t, map[string]any{"platforms": one, "dockerfile": "FROM scratch\nLABEL empty=yes\n"})
	for _, id := range []string{older, newer, scratch} {
		if b := a.wait(t, id); b.Status != builds.StatusSucceeded {
			t.Fatalf("build %s: %s %s", id, b.Status, b.Error)
		}
	}
	ctx := browser(t)
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.Join(strings.Fields(s), " ")
	}
	// Two builds on one base: the data/ folder is collapsed with its counts;
	// the link shows where it points, not "0 B".
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/compare?a="+older+"&b="+newer), chromedp.WaitVisible(chromedp.CSS(`[data-testid="file-changes"]`))); err != nil {
		t.Fatal(err)
	}
	if got := text(`[data-testid="base-changed"]`); !strings.HasPrefix(got, "unchanged: docker.io/library/busybox:1") {
		t.Errorf("base line %q", got)
	}
	if got := text(`[data-testid="diff-folder-counts"]`); got != "4 entries differ: 2 changed, 1 only in A, 1 only in B" {
		t.Errorf("data/ counts %q", got)
	}
	if n := count(t, ctx, `details[data-testid="diff-folder"][open]`); n != 1 {
		t.Errorf("%d open folders; the only one should be open", n)
	}
	link, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid="diff-row"]')].find(r => r.cells[0].textContent.trim() === "data/link").innerText`))
	if err != nil || !strings.Contains(link, "→ /bin/busybox") || !strings.Contains(link, "→ /bin/sh") || strings.Contains(link, "0 B") {
		t.Errorf("the link row reads %q (%v)", link, err)
	}
	docsScreenshot(t, ctx, "compare.png")
	// Against FROM scratch: both bases are named; everything of busybox's is only in A, folder by folder.
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/compare?a="+older+"&b="+scratch), chromedp.WaitVisible(chromedp.CSS(`[data-testid="file-changes"]`))); err != nil {
		t.Fatal(err)
	}
	if got := text(`[data-testid="base-changed"]`); !strings.HasPrefix(got, "docker.io/library/busybox:1@sha256:") || !strings.HasSuffix(got, " → scratch") {
		t.Errorf("base line %q, want busybox:1@sha256:… → scratch", got)
	}
	if n := count(t, ctx, `details[data-testid="diff-folder"]`); n < 3 || count(t, ctx, `details[data-testid="diff-folder"][open]`) != 0 {
		t.Errorf("%d folders, want several, all collapsed", n)
	}
	screenshot(t, ctx, "compare-scratch.png")

	// The explorer's breadcrumb, from the index down to a layer and the config.
	crumbs := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid="breadcrumb"] li')].map(li => li.textContent.trim()).join(" › ")`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/builds/"+older+"/index"), chromedp.WaitVisible(chromedp.CSS(`[data-testid="breadcrumb"]`))); err != nil {
		t.Fatal(err)
	}
	if got := crumbs(); !strings.HasPrefix(got, "History › Build …") || !strings.HasSuffix(got, "› Index") {
		t.Errorf("index breadcrumb %q", got)
	}
	screenshot(t, ctx, "index.png")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid="index-platform"] a.digest`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="layers"]`))); err != nil {
		t.Fatal(err)
	}
	if got := crumbs(); !strings.HasSuffix(got, "› Index › linux/amd64 manifest") {
		t.Errorf("manifest breadcrumb %q", got)
	}
	screenshot(t, ctx, "manifest.png")
	manifestURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-testid="config-link"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="config-facts"]`))); err != nil {
		t.Fatal(err)
	}
	if got := crumbs(); !strings.Contains(got, "› Index › linux/amd64 manifest › Config") {
		t.Errorf("config breadcrumb %q", got)
	}
	// Empty config fields are left out: busybox sets Env and Cmd, no Entrypoint or Volumes.
	facts := text(`[data-testid="config-facts"]`)
	if !strings.Contains(facts, "Cmd") || strings.Contains(facts, "Entrypoint") || strings.Contains(facts, "Volumes") {
		t.Errorf("config facts %q", facts)
	}
	docsScreenshot(t, ctx, "config.png")
	if err := chromedp.Do(ctx, chromedp.Navigate(manifestURL), chromedp.WaitVisible(chromedp.CSS(`[data-testid="layers"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="layer-row"] a.digest`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="sort-size"]`))); err != nil {
		t.Fatal(err)
	}
	if got := crumbs(); !strings.Contains(got, "› Index › linux/amd64 manifest › Layer ") {
		t.Errorf("layer breadcrumb %q", got)
	}
	screenshot(t, ctx, "layer.png")
	if code, body := get(t, a.URL+"/blobs/"+strings.Repeat("0", 5)+"?build=nope"); code != 400 && code != 404 {
		t.Errorf("a bad trail = %d %s", code, body)
	}
	// The other pages this change touched, for the record.
	for _, p := range []struct{ path, name string }{{"/", "new-build.png"}, {"/account", "account.png"}, {"/admin/users", "users.png"}} {
		if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+p.path), chromedp.WaitVisible(chromedp.CSS(`main`))); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, p.name)
	}
	// Every control on those pages has a label: around it, or naming its id.
	for _, p := range []string{"/", "/account", "/admin/users", "/builds", "/compare"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+p), chromedp.WaitVisible(chromedp.CSS(`main`))); err != nil {
			t.Fatal(err)
		}
		orphans, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter(e => !e.closest('label') && !(e.id && document.querySelector('label[for="' + e.id + '"]'))).map(e => e.name).join(",")`))
		if err != nil || orphans != "" {
			t.Errorf("%s: controls without a label: %q (%v)", p, orphans, err)
		}
	}
}
