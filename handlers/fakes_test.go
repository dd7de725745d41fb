package handlers

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
)

// Function-field fakes: each test sets the calls it expects; a call it did
// not set panics on the nil embedded interface, which fails the test.

type fakeBuilds struct {
	Builds
	watch func(ctx context.Context, id string, after int64, fn func(builds.Event) error) error
}

func (f *fakeBuilds) Watch(ctx context.Context, id string, after int64, _ time.Duration, fn func(builds.Event) error) error {
	return f.watch(ctx, id, after, fn)
}

type fakeRegistry struct {
	Registry
	resolve   func(repo, ref string) (ocispec.Descriptor, []byte, error)
	catalog   func(last string, n int) ([]string, error)
	referrers func(repo, ref, artifactType string) ([]ocispec.Descriptor, error)
}

func (f *fakeRegistry) ResolveManifest(_ context.Context, repo, ref string) (ocispec.Descriptor, []byte, error) {
	return f.resolve(repo, ref)
}

func (f *fakeRegistry) Catalog(_ context.Context, last string, n int) ([]string, error) {
	return f.catalog(last, n)
}

func (f *fakeRegistry) Referrers(_ context.Context, repo, ref, artifactType string) ([]ocispec.Descriptor, error) {
	return f.referrers(repo, ref, artifactType)
}

func withParam(r *http.Request, key, value string) *http.Request {
	rc := chi.NewRouteContext()
	rc.URLParams.Add(key, value)
	return r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rc))
}

func quietHandlers() *Handlers {
	return &Handlers{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestBuildEventsStream(t *testing.T) {
	h := quietHandlers()
	var gotAfter int64
	h.Builds = &fakeBuilds{watch: func(_ context.Context, id string, after int64, fn func(builds.Event) error) error {
		gotAfter = after
		if id != "b1" {
			return builds.CodeErrorf(builds.ENotFound, "build_not_found", "no build has the id %q", id)
		}
		for _, e := range []builds.Event{
			{Type: builds.EventOpen},
			{Seq: 8, Type: builds.EventLog, Data: json.RawMessage(`{"step":"sha256:ab","number":3,"stream":1,"elapsed":0.5,"text":"\u001b[31mhello\u001b[0m","at":"2026-11-28T10:00:00Z"}`)},
			{Type: builds.EventPing},
			{Seq: 9, Type: builds.EventDone, Data: json.RawMessage(`{"status":"succeeded"}`)},
		} {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}}

	req := withParam(httptest.NewRequest("GET", "/api/v1/builds/b1/events", nil), "id", "b1")
	req.Header.Set("Last-Event-ID", "7")
	rec := httptest.NewRecorder()
	if err := h.BuildEvents(rec, req); err != nil {
		t.Fatal(err)
	}
	if gotAfter != 7 {
		t.Errorf("Watch got after=%d, want 7 from Last-Event-ID", gotAfter)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	// A log line comes rendered: its plain-log text and its colour runs.
	want := "retry: 1000\n\nid: 8\nevent: log\ndata: {\"seq\":8,\"step\":\"sha256:ab\",\"number\":3,\"stream\":1,\"elapsed\":0.5,\"text\":\"\\u001b[31mhello\\u001b[0m\",\"at\":\"2026-11-28T10:00:00Z\"," +
		"\"plain\":\"#3 0.500 \\u001b[31mhello\\u001b[0m\",\"spans\":[[\"\",\"#3 0.500 \"],[\"ansi-31\",\"hello\"]]}\n\n: ping\n\nid: 9\nevent: done\ndata: {\"status\":\"succeeded\"}\n\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("stream:\n%q\nwant\n%q", got, want)
	}

	// An unknown build is an error before the answer starts (a 404 from the adapter).
	req = withParam(httptest.NewRequest("GET", "/api/v1/builds/nope/events", nil), "id", "nope")
	rec = httptest.NewRecorder()
	err := h.BuildEvents(rec, req)
	if Status(err) != http.StatusNotFound || rec.Body.Len() != 0 {
		t.Errorf("unknown build: status %d, body %q", Status(err), rec.Body.String())
	}

	// A bad Last-Event-ID never reaches the service.
	h.Builds = &fakeBuilds{}
	req = withParam(httptest.NewRequest("GET", "/api/v1/builds/b1/events?after=x", nil), "id", "b1")
	if err := h.BuildEvents(httptest.NewRecorder(), req); Status(err) != http.StatusBadRequest {
		t.Errorf("after=x: %v (status %d), want 400", err, Status(err))
	}

	// HEAD answers the headers and stops following.
	h.Builds = &fakeBuilds{watch: func(_ context.Context, _ string, _ int64, fn func(builds.Event) error) error {
		if err := fn(builds.Event{Type: builds.EventOpen}); err != nil {
			return err
		}
		t.Error("HEAD kept following the stream")
		return nil
	}}
	req = withParam(httptest.NewRequest("HEAD", "/api/v1/builds/b1/events", nil), "id", "b1")
	rec = httptest.NewRecorder()
	if err := h.BuildEvents(rec, req); err != nil || rec.Body.Len() != 0 || rec.Code != http.StatusOK {
		t.Errorf("HEAD: err %v, code %d, body %q", err, rec.Code, rec.Body.String())
	}
}

func TestRegistryAnswers(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2}`)
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}
	h := quietHandlers()
	h.Registries = &fakeRegistry{
		resolve: func(repo, ref string) (ocispec.Descriptor, []byte, error) {
			if repo == "demo/app" && ref == "v1" {
				return md, manifest, nil
			}
			return ocispec.Descriptor{}, nil, builds.CodeErrorf(builds.ENotFound, "MANIFEST_UNKNOWN", "no succeeded build carries %s:%s", repo, ref)
		},
		catalog: func(last string, n int) ([]string, error) {
			all := []string{"127.0.0.1_5000/demo/app", "builds", "docker.io/demo/app"}
			var out []string
			for _, s := range all {
				if s > last && len(out) < n {
					out = append(out, s)
				}
			}
			return out, nil
		},
		referrers: func(_, _, at string) ([]ocispec.Descriptor, error) {
			return []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: at}}, nil
		},
	}
	do := func(method, target string) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		if err := h.Registry(rec, httptest.NewRequest(method, target, nil)); err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		return rec
	}

	rec := do("GET", "/v2/demo/app/manifests/v1")
	if rec.Code != 200 || rec.Body.String() != string(manifest) || rec.Header().Get("Docker-Content-Digest") != md.Digest.String() ||
		rec.Header().Get("Content-Type") != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if rec := do("HEAD", "/v2/demo/app/manifests/v1"); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "19" {
		t.Errorf("HEAD manifest: %d, %d bytes, %v", rec.Code, rec.Body.Len(), rec.Header())
	}

	// Errors take the distribution spec's shape, with the service's code and sentence.
	rec = do("GET", "/v2/demo/app/manifests/v2")
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 404 || len(body.Errors) != 1 ||
		body.Errors[0].Code != "MANIFEST_UNKNOWN" || !strings.Contains(body.Errors[0].Message, "demo/app:v2") {
		t.Errorf("unknown tag: %d %s", rec.Code, rec.Body.String())
	}

	// Writes are refused with the methods that are allowed.
	if rec := do("PUT", "/v2/demo/app/manifests/v1"); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("PUT: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}

	// The catalog pages with n/last and says where the next page is.
	rec = do("GET", "/v2/_catalog?n=2")
	if !strings.Contains(rec.Body.String(), `"builds"`) || !strings.Contains(rec.Header().Get("Link"), "n=2&last=builds>") {
		t.Errorf("catalog page 1: %s Link %q", rec.Body.String(), rec.Header().Get("Link"))
	}
	rec = do("GET", "/v2/_catalog?n=2&last=builds")
	if !strings.Contains(rec.Body.String(), "docker.io/demo/app") || rec.Header().Get("Link") != "" {
		t.Errorf("catalog page 2: %s Link %q", rec.Body.String(), rec.Header().Get("Link"))
	}

	// A referrers filter is echoed in OCI-Filters-Applied.
	rec = do("GET", "/v2/demo/app/referrers/"+md.Digest.String()+"?artifactType=application/vnd.in-toto%2Bjson")
	if rec.Header().Get("OCI-Filters-Applied") != "artifactType" || !strings.Contains(rec.Body.String(), "application/vnd.in-toto+json") {
		t.Errorf("referrers: %v %s", rec.Header(), rec.Body.String())
	}
}
