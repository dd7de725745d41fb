package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// call sends a request with an optional bearer token and returns status and body.
func call(t *testing.T, method, url, token, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := call(t, "GET", url+"/metrics", token, "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the Prometheus parser refuses /metrics: %v\n%s", err, body)
	}
	return fams
}

// sample finds the metric of family name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// TestMetricsReadyzAndJSONLog scrapes /metrics after a real two-platform
// build (made with the CLI, server and token from the environment) and reads
// it with Prometheus's own parser; only admins read it unless --metrics-open.
func TestMetricsReadyzAndJSONLog(t *testing.T) {
	data := t.TempDir()
	cli(t, "user", "create", "--admin", "--data", data, "ada")
	admin := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "ada", "--scope", "admin"))
	cli(t, "user", "create", "--role", "builder", "--data", data, "bo")
	builder := strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "bo", "--scope", "build"))
	envAddr := env.Addr()
	a := startApp(t, data, "--buildkit", envAddr, "--log-format", "json", "--gc-min-age", "1ns")

	if code, _ := call(t, "GET", a.URL+"/metrics", "", "", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token = %d; want 401", code)
	}
	if code, _ := call(t, "GET", a.URL+"/metrics", builder, "", ""); code != http.StatusForbidden {
		t.Errorf("/metrics with a builder's token = %d; want 403", code)
	}
	code, body := call(t, "GET", a.URL+"/readyz", "", "", "")
	var ready map[string]any
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != http.StatusOK || ready["status"] != "ready" || ready["buildkit_nodes_up"] != 1.0 {
		t.Errorf("/readyz = %d %s", code, body)
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM busybox:1\nRUN echo metrics > /m\n"})
	env := map[string]string{"MANIFOLD_SERVER": a.URL, "MANIFOLD_TOKEN": builder}
	out, stderr, code := clientRun(context.Background(), env, "", "build", "--platform", "linux/amd64,linux/arm64", "--no-cache", dir)
	if code != 0 {
		t.Fatalf("build: %d %s %s", code, out, stderr)
	}
	if code, body := call(t, "POST", a.URL+"/api/v1/gc", admin, "", ""); code != http.StatusOK {
		t.Fatalf("gc = %d %s", code, body)
	}

	fams := scrape(t, a.URL, admin)
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if m := sample(fams, "manifold_builds", map[string]string{"status": "succeeded", "platform": p}); m == nil || m.GetGauge().GetValue() != 1 {
			t.Errorf("manifold_builds{succeeded,%s} = %v", p, m)
		}
		if m := sample(fams, "manifold_build_duration_seconds", map[string]string{"platform": p}); m == nil || m.GetHistogram().GetSampleCount() != 1 || m.GetHistogram().GetSampleSum() <= 0 {
			t.Errorf("manifold_build_duration_seconds{%s} = %v", p, m)
		}
		if m := sample(fams, "manifold_step_duration_seconds", map[string]string{"platform": p}); m == nil || m.GetHistogram().GetSampleCount() < 1 {
			t.Errorf("manifold_step_duration_seconds{%s} = %v", p, m)
		}
		if m := sample(fams, "manifold_queue_wait_seconds", map[string]string{"platform": p}); m == nil || m.GetHistogram().GetSampleCount() != 1 {
			t.Errorf("manifold_queue_wait_seconds{%s} = %v", p, m)
		}
	}
	for name, want := range map[string]float64{"manifold_builds_running": 0, "manifold_queue_length": 0, "manifold_buildkit_node_up": 1, "manifold_gc_runs_total": 1, "manifold_sse_clients": 0} {
		m := sample(fams, name, nil)
		got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if m == nil || got != want {
			t.Errorf("%s = %v; want %v", name, m, want)
		}
	}
	if m := sample(fams, "manifold_store_bytes", nil); m == nil || m.GetGauge().GetValue() <= 0 {
		t.Errorf("manifold_store_bytes = %v", m)
	}
	if m := sample(fams, "manifold_store_blobs", nil); m == nil || m.GetGauge().GetValue() < 3 {
		t.Errorf("manifold_store_blobs = %v", m)
	}
	// Requests are counted by route pattern, never by raw path.
	if m := sample(fams, "manifold_http_requests_total", map[string]string{"route": "/api/v1/builds/{id}/events", "method": "GET", "status": "200"}); m == nil || m.GetCounter().GetValue() < 1 {
		t.Errorf("no events request counted: %v", fams["manifold_http_requests_total"])
	}
	if m := sample(fams, "manifold_http_requests_total", map[string]string{"route": "/metrics", "status": "401"}); m == nil {
		t.Errorf("the refused scrape was not counted")
	}
	for _, m := range fams["manifold_http_requests_total"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "route" && strings.Contains(l.GetValue(), "01") {
				t.Errorf("a raw path became a route label: %s", l.GetValue())
			}
		}
	}

	// --log-format json: every line is one JSON object.
	for _, line := range strings.Split(strings.TrimSpace(a.logs.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil || v["msg"] == nil {
			t.Errorf("a log line is not JSON: %q", line)
			break
		}
	}

	open := startApp(t, "", "--buildkit", envAddr, "--metrics-open")
	if fams := scrape(t, open.URL, ""); fams["manifold_buildkit_node_up"] == nil {
		t.Error("--metrics-open: no node metric")
	}
}
