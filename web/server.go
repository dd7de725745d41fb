// Package web is the HTTP shell: the router and its one routes file,
// middleware, the mapping of errors to statuses, and the http.Server.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"manifold/builds"
	"manifold/handlers"
	"manifold/templates"
)

// Server serves Manifold's pages and API.
type Server struct {
	log           *slog.Logger
	handler       http.Handler
	accounts      *builds.Accounts
	anonymousPull bool
}

// Options are the server's settings.
type Options struct {
	// AnonymousPull lets anyone pull through /v2/ without a token.
	AnonymousPull bool
}

// NewServer builds the handler tree over h.
func NewServer(h *handlers.Handlers, opts Options, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, accounts: h.Accounts, anonymousPull: opts.AnonymousPull}
	s.handler = s.routes(h)
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Serve runs an http.Server on l until ctx ends, then shuts it down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // uploads of large contexts
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-errc
	return nil
}

// statusOf is the one table from error kinds to HTTP statuses.
var statusOf = map[builds.Kind]int{
	builds.EInvalid:      http.StatusBadRequest,
	builds.ENotFound:     http.StatusNotFound,
	builds.EConflict:     http.StatusConflict,
	builds.EUnavailable:  http.StatusServiceUnavailable,
	builds.EUpstream:     http.StatusBadGateway,
	builds.EUnauthorized: http.StatusUnauthorized,
	builds.EForbidden:    http.StatusForbidden,
	builds.ETooMany:      http.StatusTooManyRequests,
	builds.EInternal:     http.StatusInternalServerError,
}

// handle adapts a handler that returns an error.
func (s *Server) handle(fn handlers.Func) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.Error(w, r, err)
		}
	}
}

// Error renders err as JSON or as a page, by the route and the Accept header.
// Errors without a kind are logged in full and shown as "internal error".
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	kind := builds.ErrorKind(err)
	status := statusOf[kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if kind == builds.EInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
	}
	msg := builds.ErrorMessage(err)
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": builds.ErrorCode(err)})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = templates.ErrorPage(templates.ErrorView{Status: status, Title: http.StatusText(status), Message: msg}).Render(r.Context(), w)
}

func wantsJSON(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/v2/") {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func notFound(w http.ResponseWriter, r *http.Request) error {
	return builds.CodeErrorf(builds.ENotFound, "not_found", "nothing lives at %s", r.URL.Path)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	return &builds.Error{Kind: builds.EInvalid, Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)}
}

type ctxKey int

const requestIDKey ctxKey = iota

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic", "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "panic", v, "stack", string(debug.Stack()))
				s.Error(w, r, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (flushing for streams).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if strings.HasPrefix(r.URL.Path, "/static/") {
			return
		}
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"bytes", rec.bytes, "duration_ms", time.Since(start).Milliseconds(), "request_id", requestIDFrom(r.Context()))
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

type authErrKey struct{}

func withAuthError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, authErrKey{}, err)
}

func authErrorFrom(ctx context.Context) error {
	err, _ := ctx.Value(authErrKey{}).(error)
	return err
}
