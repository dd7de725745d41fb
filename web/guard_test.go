package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"manifold/builds/accounts"
)

// fakeIdentities answers SetupMode from a field; the identity calls are not
// used by the guards under test and panic if reached.
type fakeIdentities struct {
	Identities
	setup func() (bool, error)
}

func (f fakeIdentities) SetupMode(context.Context) (bool, error) { return f.setup() }

func TestGuardSetup(t *testing.T) {
	newServer := func(setup bool, err error) *Server {
		return &Server{
			log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			accounts:  fakeIdentities{setup: func() (bool, error) { return setup, err }},
			port:      8080,
			setupCSRF: "page-token",
		}
	}
	type req struct {
		method, host string
		headers      map[string]string
	}
	tests := []struct {
		name    string
		setup   bool
		err     error
		req     req
		reached bool
		status  int
	}{
		{"accounts exist: any host", false, nil, req{"POST", "manifold.example.com", nil}, true, 200},
		{"setup: localhost with the port", true, nil, req{"GET", "localhost:8080", nil}, true, 200},
		{"setup: 127.0.0.2 with the port", true, nil, req{"GET", "127.0.0.2:8080", nil}, true, 200},
		{"setup: [::1]", true, nil, req{"GET", "[::1]:8080", nil}, true, 200},
		{"setup: a rebound name", true, nil, req{"GET", "evil.example:8080", nil}, false, 403},
		{"setup: a nip.io name for loopback", true, nil, req{"GET", "127.0.0.1.nip.io:8080", nil}, false, 403},
		{"setup: loopback on another port", true, nil, req{"GET", "localhost:9999", nil}, false, 403},
		{"setup: command-line POST", true, nil, req{"POST", "localhost:8080", nil}, true, 200},
		{"setup: browser POST without the token", true, nil, req{"POST", "localhost:8080", map[string]string{"Origin": "http://localhost:8080"}}, false, 403},
		{"setup: browser POST with the token", true, nil, req{"POST", "localhost:8080", map[string]string{"Origin": "http://localhost:8080", "X-CSRF-Token": "page-token"}}, true, 200},
		{"setup: foreign page with the token", true, nil, req{"POST", "localhost:8080", map[string]string{"Origin": "http://evil.example", "X-CSRF-Token": "page-token"}}, false, 403},
		{"setup: null origin", true, nil, req{"POST", "localhost:8080", map[string]string{"Origin": "null", "X-CSRF-Token": "page-token"}}, false, 403},
		{"setup: a cookie makes it a browser", true, nil, req{"POST", "localhost:8080", map[string]string{"Cookie": "x=1"}}, false, 403},
		{"setup mode unknown", false, errors.New("database is closed"), req{"GET", "localhost:8080", nil}, false, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached := false
			h := newServer(tt.setup, tt.err).guardSetup(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
			r := httptest.NewRequest(tt.req.method, "/api/v1/builds", strings.NewReader("{}"))
			r.Host = tt.req.host
			for k, v := range tt.req.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if reached != tt.reached || rec.Code != tt.status {
				t.Errorf("reached %v, status %d; want %v, %d (%s)", reached, rec.Code, tt.reached, tt.status, rec.Body.String())
			}
		})
	}
}

func TestRequireJSON(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tests := []struct {
		name, method, path, ct string
		known                  bool
		status                 int
	}{
		{"json", "POST", "/api/v1/builds", "application/json", true, 200},
		{"json with charset", "POST", "/api/v1/tokens", "application/json; charset=utf-8", true, 200},
		{"multipart build upload", "POST", "/api/v1/builds", "multipart/form-data; boundary=x", true, 200},
		{"multipart elsewhere", "POST", "/api/v1/tokens", "multipart/form-data; boundary=x", true, 415},
		{"text/plain", "POST", "/api/v1/builds", "text/plain", true, 415},
		{"form", "POST", "/api/v1/users", "application/x-www-form-urlencoded", true, 415},
		{"a page's form", "POST", "/login", "application/x-www-form-urlencoded", true, 200},
		{"anonymous is left to require", "POST", "/api/v1/builds", "text/plain", false, 200},
		{"safe method", "GET", "/api/v1/builds", "text/plain", true, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := s.requireJSON(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader("x"))
			r.Header.Set("Content-Type", tt.ct)
			if tt.known {
				r = r.WithContext(accounts.WithIdentity(r.Context(), accounts.Identity{User: "u", Role: accounts.RoleBuilder}))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d (%s)", rec.Code, tt.status, rec.Body.String())
			}
		})
	}
}
