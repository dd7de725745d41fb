package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHeadAndMethodNotAllowed: HEAD answers every GET route like GET without
// a body; a method a route does not take is 405 with Allow.
func TestHeadAndMethodNotAllowed(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	id := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 5\n", "platforms": []string{"linux/amd64"}, "no_cache": true})
	for _, path := range []string{"/healthz", "/api/v1/builds", "/api/v1/builds/" + id, "/api/v1/builds/" + id + "/log", "/api/v1/builds/" + id + "/events", "/api/v1/storage", "/builds", "/builds/" + id, "/v2/", "/v2/_catalog", "/v2/builds/tags/list", "/login", "/storage"} {
		t.Run("HEAD "+path, func(t *testing.T) {
			get, err := http.Get(a.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			get.Body.Close()
			start := time.Now()
			c := &http.Client{Timeout: 5 * time.Second}
			head, err := c.Head(a.URL + path)
			if err != nil {
				t.Fatalf("HEAD: %v", err)
			}
			n, _ := head.Body.Read(make([]byte, 1))
			head.Body.Close()
			if head.StatusCode != get.StatusCode || n != 0 || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
				t.Fatalf("HEAD = %d %q (%d body bytes), GET = %d %q", head.StatusCode, head.Header.Get("Content-Type"), n, get.StatusCode, get.Header.Get("Content-Type"))
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("HEAD waited %v: it followed a stream", time.Since(start))
			}
		})
	}
	tests := []struct {
		method, path, allow string
	}{
		{"PUT", "/api/v1/builds", "GET, HEAD, POST"},
		{"PATCH", "/api/v1/builds/" + id, "GET, HEAD, DELETE"},
		{"DELETE", "/healthz", "GET, HEAD"},
		{"PROPFIND", "/api/v1/builds", "GET, HEAD, POST"},
		{"POST", "/api/v1/builds/" + id + "/log", "GET, HEAD"},
		{"PUT", "/v2/builds/manifests/latest", "GET, HEAD"},
		{"DELETE", "/v2/builds/blobs/sha256:" + strings.Repeat("0", 64), "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, a.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("= %d Allow %q, want 405 Allow %q", resp.StatusCode, resp.Header.Get("Allow"), tt.allow)
			}
		})
	}
	if !strings.HasPrefix(a.URL, "http://") {
		t.Fatal(a.URL)
	}
	a.wait(t, id)
}

// TestExportETagIsPerByteSequence: two builds of the same image with other
// tags give tarballs that differ (the tag is inside), so their ETags differ;
// the same download twice keeps its ETag.
func TestExportETagIsPerByteSequence(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	df := "FROM busybox:1\nLABEL etag=test\n"
	one := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}, "tags": []string{"demo/app:v1"}}))
	two := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}, "tags": []string{"demo/app:v2"}}))
	if one.IndexDigest != two.IndexDigest || one.IndexDigest == "" {
		t.Fatalf("the two builds differ: %s vs %s", one.IndexDigest, two.IndexDigest)
	}
	etag := func(id, q string) (string, []byte) {
		resp, err := http.Get(a.URL + "/api/v1/builds/" + id + "/export?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := make([]byte, 0, 1<<20)
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		return resp.Header.Get("ETag"), b
	}
	for _, q := range []string{"format=docker", "format=oci"} {
		e1, b1 := etag(one.ID, q)
		e2, b2 := etag(two.ID, q)
		again, b1again := etag(one.ID, q)
		if string(b1) == string(b2) {
			t.Fatalf("%s: the two tarballs are the same bytes; the test needs them to differ", q)
		}
		if e1 == "" || e1 == e2 {
			t.Errorf("%s: ETags %s and %s for different bytes", q, e1, e2)
		}
		if again != e1 || string(b1again) != string(b1) {
			t.Errorf("%s: the same download changed: %s → %s", q, e1, again)
		}
	}
}

// TestCancelledDownloadWritesNothingMore: a client that hangs up in the
// middle of a download ends the response; nothing is written after it
// started (no "superfluous response.WriteHeader" in the log).
func TestCancelledDownloadWritesNothingMore(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}}))
	// A log of some megabytes makes the build page and the log long responses.
	big := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN seq 1 400000\n", "platforms": []string{"linux/amd64"}, "no_cache": true}))
	for _, path := range []string{
		"/api/v1/builds/" + b.ID + "/export?format=oci",
		"/builds/" + big.ID,
		"/api/v1/builds/" + big.ID + "/log",
		"/api/v1/builds/" + big.ID + "/events",
	} {
		for range 3 {
			resp, err := http.Get(a.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := resp.Body.Read(make([]byte, 512)); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // mid-stream
		}
	}
	time.Sleep(time.Second)
	a.stop()
	if logs := a.logs.String(); strings.Contains(logs, "superfluous") || strings.Contains(logs, "level=ERROR") {
		t.Fatalf("a cancelled response was written to after it started:\n%s", logs)
	}
}
