package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"manifold/builds"
)

// TestBrowserBuildInsight checks the build page's pictures and log viewer
// in Chromium on a real two-platform build: a timeline bar per step (the
// arm64 steps hatched as emulated), the emulation ratio of the RUN step,
// a search that finds a line in a folded step whose lines were not sent
// with the page, and a line link.
func TestBrowserBuildInsight(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	df := "FROM busybox:1\n" +
		"RUN i=0; while [ $i -lt 30 ]; do sha256sum /bin/busybox >/dev/null; i=$((i+1)); done; uname -m > /arch\n" +
		"RUN seq 1 1500 | sed 's/^1234$/needle-&/'\n"
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64", "linux/arm64"}, "no_cache": true}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	started, seqStep := 0, 0
	for _, s := range b.Steps {
		if s.StartedAt != nil {
			started++
		}
		if strings.Contains(s.Name, "linux/arm64") && strings.Contains(s.Name, "seq 1 1500") {
			seqStep = s.Number
		}
	}

	// The page does not carry the 3000 lines: they load when asked for.
	code, page := a.do(t, "GET", "/builds/"+b.ID, "")
	if code != 200 || strings.Contains(string(page), "needle-1234") || len(page) > 200<<10 {
		t.Fatalf("build page: %d, %d bytes, needle inlined %v", code, len(page), strings.Contains(string(page), "needle-1234"))
	}

	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/builds/"+b.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid="timeline"]`))); err != nil {
		t.Fatal(err)
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	screenshot(t, ctx, "build-insight.png")
	bars := eval(`String(document.querySelectorAll('[data-testid="timeline-bar"]').length)`)
	if bars != fmt.Sprint(started) {
		t.Errorf("%s timeline bars, %d steps ran", bars, started)
	}
	// Every arm64 step's bar is hatched; no amd64 one is.
	classes := eval(`JSON.stringify(Array.from(document.querySelectorAll('[data-testid="timeline-bar"]')).map(g => [g.querySelector('title').textContent, g.getAttribute('class')]))`)
	var pairs [][2]string
	if err := json.Unmarshal([]byte(classes), &pairs); err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if strings.Contains(p[0], "[linux/arm64 ") != strings.Contains(p[1], "emulated") {
			t.Errorf("bar %q has class %q", p[0], p[1])
		}
	}
	// The RUN step's emulation ratio against native amd64.
	ratio := eval(`Array.from(document.querySelectorAll('[data-testid="emulation-row"][data-platform="linux/arm64"]')).map(r => r.textContent).join("|")`)
	if !regexp.MustCompile(`\d+\.\d× linux/amd64\s*, emulated`).MatchString(ratio) {
		t.Errorf("emulation rows for arm64: %q", ratio)
	}

	// Search finds the line in the folded step, loads it and marks it.
	if open := eval(`String(document.getElementById('step-` + fmt.Sprint(seqStep) + `').open)`); open != "false" {
		t.Fatalf("the succeeded step #%d is open", seqStep)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#log-search`), "NEEDLE-1234"),
		chromedp.Click(chromedp.CSS(`[data-testid="log-search-go"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.ln.current`)),
	); err != nil {
		t.Fatalf("search: %v", err)
	}
	if got := eval(`document.querySelector('[data-testid="log-matches"]').textContent`); got != "1 of 2" {
		t.Errorf("match count %q, want 1 of 2 (one per platform)", got)
	}
	current := eval(`document.querySelector('.ln.current').id + " " + document.querySelector('.ln.current').textContent`)
	if !strings.HasSuffix(current, "needle-1234") || !regexp.MustCompile(`^step-\d+-L1234 `).MatchString(current) {
		t.Errorf("current match %q", current)
	}

	// A line link opens its step and marks the line.
	link := fmt.Sprintf("step-%d-L1234", seqStep)
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL+"/builds/"+b.ID+"#"+link), chromedp.WaitVisible(chromedp.CSS(`#`+link+`.target`))); err != nil {
		t.Fatalf("line link: %v", err)
	}
	if got := eval(`document.getElementById('` + link + `').textContent`); !strings.HasPrefix(got, "1234#") || !strings.HasSuffix(got, " needle-1234") {
		t.Errorf("linked line %q", got)
	}
}
