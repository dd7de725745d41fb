package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"manifold/builds"
)

func TestBadInputGetsASentence(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed platform", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platforms":["linux"]}`, 400, "invalid_platform"},
		{"unknown architecture", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platforms":["linux/amd65"]}`, 400, "invalid_platform"},
		{"platform list in one string", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platforms":["linux/amd64,linux/arm64"]}`, 400, "invalid_platform"},
		{"empty platform", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platforms":[""]}`, 400, "invalid_platform"},
		{"platforms not a list", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platforms":"linux/amd64"}`, 400, "invalid_json"},
		{"platform no daemon has", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platforms":["windows/amd64"]}`, 400, "unsupported_platform"},
		{"empty dockerfile", "POST", "/api/v1/builds", `{"dockerfile":"","platforms":["linux/amd64"]}`, 400, "invalid_dockerfile"},
		{"blank dockerfile", "POST", "/api/v1/builds", `{"dockerfile":"  \n\t\n","platforms":["linux/amd64"]}`, 400, "invalid_dockerfile"},
		{"no dockerfile", "POST", "/api/v1/builds", `{"platforms":["linux/amd64"]}`, 400, "invalid_dockerfile"},
		{"not json", "POST", "/api/v1/builds", `FROM busybox:1`, 400, "invalid_json"},
		{"empty body", "POST", "/api/v1/builds", ``, 400, "invalid_json"},
		{"two objects", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1"} {}`, 400, "invalid_json"},
		{"unknown field", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","platfroms":["linux/amd64"]}`, 400, "unknown_field"},
		{"bad build arg", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","build_args":{"1BAD":"x"}}`, 400, "invalid_build_arg"},
		{"push without tags", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","push":true}`, 400, "invalid_tag"},
		{"tag with a digest", "POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","tags":["r@sha256:` + strings.Repeat("a", 64) + `"]}`, 400, "invalid_tag"},
		{"huge body", "POST", "/api/v1/builds", `{"dockerfile":"` + strings.Repeat("A", 3<<20) + `"}`, 400, "body_too_large"},
		{"unknown build", "GET", "/api/v1/builds/01m8evrp2r0004ny3xknjd6vgd", "", 404, "build_not_found"},
		{"malformed build id", "GET", "/api/v1/builds/..%2f..%2fetc", "", 404, ""},
		{"bad limit", "GET", "/api/v1/builds?limit=-3", "", 400, "invalid_limit"},
		{"limit not a number", "GET", "/api/v1/builds?limit=ten", "", 400, "invalid_limit"},
		{"bad cursor", "GET", "/api/v1/builds?before=x'%20OR%201=1", "", 400, "invalid_cursor"},
		{"unknown route", "GET", "/api/v1/nothing", "", 404, "not_found"},
		{"wrong method", "DELETE", "/api/v1/builds", "", 405, "method_not_allowed"},
		{"cancel unknown", "POST", "/api/v1/builds/01m8evrp2r0004ny3xknjd6vgd/cancel", "", 404, "build_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := a.do(t, tt.method, tt.path, tt.body)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %s", code, tt.status, body)
			}
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body is not JSON: %s", body)
			}
			if tt.code != "" && e.Code != tt.code {
				t.Fatalf("code %q, want %q (%s)", e.Code, tt.code, e.Error)
			}
			if len(e.Error) < 15 || strings.Contains(e.Error, "internal") {
				t.Fatalf("error %q does not say what to fix", e.Error)
			}
		})
	}
	// None of the refused requests left a build behind.
	code, body := a.do(t, "GET", "/api/v1/builds", "")
	if code != 200 || !strings.Contains(string(body), `"builds": []`) {
		t.Fatalf("refused requests left builds: %d %s", code, body)
	}
}

func TestUnreachableBuildKit(t *testing.T) {
	a := startApp(t, "", "--buildkit", "unix://"+t.TempDir()+"/nobody.sock")
	code, body := a.do(t, "GET", "/healthz", "")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz = %d %s, want 503", code, body)
	}
	var h struct {
		Status   string
		BuildKit []builds.NodeStatus `json:"buildkit"`
	}
	if err := json.Unmarshal(body, &h); err != nil || len(h.BuildKit) != 1 || h.BuildKit[0].OK || h.BuildKit[0].Error == "" {
		t.Fatalf("/healthz body %s", body)
	}
	// The build is taken, then fails saying why, instead of hanging.
	id := a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64"}})
	b := a.wait(t, id)
	if b.Status != builds.StatusFailed || !strings.Contains(b.Error, "cannot be reached") {
		t.Fatalf("build %s with error %q, want failed saying BuildKit cannot be reached", b.Status, b.Error)
	}
}

func TestHealthzListsPlatforms(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	code, body := a.do(t, "GET", "/healthz", "")
	var h struct {
		Status   string
		BuildKit []builds.NodeStatus `json:"buildkit"`
	}
	if err := json.Unmarshal(body, &h); err != nil || code != 200 || h.Status != "ok" {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	n := h.BuildKit[0]
	if !n.OK || n.Addr != env.Addr() || !strings.Contains(strings.Join(n.Platforms, " "), "linux/arm64") || !strings.Contains(strings.Join(n.Platforms, " "), "linux/amd64") {
		t.Fatalf("node %+v", n)
	}
}

func TestCancelQueuedAndRunning(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr(), "--concurrency", "1")
	slow := map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 60\n", "platforms": []string{"linux/amd64"}, "no_cache": true}
	running := a.startBuild(t, slow)
	queued := a.startBuild(t, slow)

	code, body := a.do(t, "POST", "/api/v1/builds/"+queued+"/cancel", "")
	if code != 200 || !strings.Contains(string(body), `"status": "canceled"`) {
		t.Fatalf("cancel queued = %d %s", code, body)
	}
	// Wait for the first to be running, then cancel it.
	deadline := time.Now().Add(time.Minute)
	for {
		b := getBuild(t, a, running) // the build's own status, not a placement's
		if b.Status == builds.StatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("build never ran: %s", b.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body = a.do(t, "POST", "/api/v1/builds/"+running+"/cancel", "")
	if code != 200 {
		t.Fatalf("cancel running = %d %s", code, body)
	}
	b := a.wait(t, running)
	if b.Status != builds.StatusCanceled {
		t.Fatalf("running build ended %s (%s), want canceled", b.Status, b.Error)
	}
	q := a.wait(t, queued)
	if q.Status != builds.StatusCanceled || q.StartedAt != nil {
		t.Fatalf("queued build %+v, want canceled and never started", q)
	}
	code, body = a.do(t, "POST", "/api/v1/builds/"+running+"/cancel", "")
	if code != http.StatusConflict {
		t.Fatalf("cancelling a finished build = %d %s, want 409", code, body)
	}
}

func TestListPaging(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	var ids []string
	for range 3 {
		ids = append(ids, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64"}}))
	}
	for _, id := range ids {
		a.wait(t, id)
	}
	var page struct {
		Builds []builds.Build
		Next   string
	}
	code, body := a.do(t, "GET", "/api/v1/builds?limit=2", "")
	if err := json.Unmarshal(body, &page); err != nil || code != 200 {
		t.Fatalf("list = %d %s", code, body)
	}
	if len(page.Builds) != 2 || page.Builds[0].ID != ids[2] || page.Builds[1].ID != ids[1] || page.Next != ids[1] {
		t.Fatalf("first page %+v, want the two newest", page)
	}
	code, body = a.do(t, "GET", "/api/v1/builds?limit=2&before="+page.Next, "")
	page.Builds, page.Next = nil, ""
	if err := json.Unmarshal(body, &page); err != nil || code != 200 {
		t.Fatalf("list = %d %s", code, body)
	}
	if len(page.Builds) != 1 || page.Builds[0].ID != ids[0] || page.Next != "" {
		t.Fatalf("second page %+v, want the oldest and no next", page)
	}
}
