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
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/handlers"
	"manifold/templates"
)

// Server serves Manifold's pages and API.
type Server struct {
	log           *slog.Logger
	handler       http.Handler
	accounts      Identities
	anonymousPull bool
	// setupCSRF is the token Manifold's own pages carry while no account exists.
	setupCSRF string
	// port is the port Serve listens on; setup mode answers only to it.
	port int
	// mux is the router, asked which methods a path allows.
	mux        chi.Routes
	onShutdown func()
	// metrics is /metrics, /readyz and the request counters; nil leaves them out.
	metrics *Metrics
}

// Identities tells who a request is (*accounts.Service).
type Identities interface {
	SetupMode(ctx context.Context) (bool, error)
	TokenIdentity(ctx context.Context, secret string) (accounts.Identity, error)
	SessionIdentity(ctx context.Context, secret string) (accounts.Identity, error)
}

// Options are the server's settings.
type Options struct {
	// AnonymousPull lets anyone pull through /v2/ without a token.
	AnonymousPull bool
	// Identities tells who a request is; Handlers.Accounts when nil.
	Identities Identities
	// OnShutdown runs when shutdown starts, to end long-lived responses
	// (event streams) that would otherwise hold it up.
	OnShutdown func()
	// Metrics serves /metrics and /readyz and counts requests; nil leaves them out.
	Metrics *Metrics
}

// NewServer builds the handler tree over h.
func NewServer(h *handlers.Handlers, opts Options, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	var token [32]byte
	_, _ = rand.Read(token[:])
	ids := opts.Identities
	if ids == nil {
		ids, _ = h.Accounts.(Identities)
	}
	s := &Server{log: log, accounts: ids, anonymousPull: opts.AnonymousPull, setupCSRF: hex.EncodeToString(token[:]), onShutdown: opts.OnShutdown, metrics: opts.Metrics}
	s.handler = s.routes(h)
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Serve runs an http.Server on l until ctx ends, then shuts it down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		s.port = a.Port
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // uploads of large contexts
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.onShutdown != nil {
		srv.RegisterOnShutdown(s.onShutdown)
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

// handle adapts a handler that returns an error. An error after the
// response has started (a client gone mid-download) cannot change the
// answer any more: it is logged, and nothing more is written.
func (s *Server) handle(fn handlers.Func) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &startedWriter{ResponseWriter: w}
		err := fn(sw, r)
		switch {
		case err == nil:
		case !sw.started:
			s.Error(w, r, err)
		case r.Context().Err() != nil || errors.Is(err, context.Canceled):
			s.log.Debug("client went away", "method", r.Method, "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
		default:
			s.log.Warn("response failed after it started", "method", r.Method, "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "err", err)
		}
	}
}

// startedWriter notes whether a response's header has been sent.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.started = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom keeps the real writer's ReadFrom reachable, so a blob copied
// from its file still goes out with sendfile.
func (w *startedWriter) ReadFrom(r io.Reader) (int64, error) {
	w.started = true
	return readFrom(w.ResponseWriter, r)
}

// readFrom copies r to w through w's own ReadFrom when it has one.
func readFrom(w http.ResponseWriter, r io.Reader) (int64, error) {
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(w, r)
}

// Error renders err as JSON or as a page, by the route and the Accept header.
// Errors without a kind are logged in full and shown as "internal error".
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	kind := builds.ErrorKind(err)
	status := handlers.Status(err)
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
	if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/v2/") ||
		r.URL.Path == "/metrics" || r.URL.Path == "/readyz" || strings.HasPrefix(r.URL.Path, "/hooks/") {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func notFound(w http.ResponseWriter, r *http.Request) error {
	return builds.CodeErrorf(builds.ENotFound, "not_found", "nothing lives at %s", r.URL.Path)
}

// methodNotAllowed answers 405 with the Allow header listing what the path takes.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if s.mux.Match(chi.NewRouteContext(), m, r.URL.Path) || (m == http.MethodHead && slices.Contains(allow, http.MethodGet)) {
			allow = append(allow, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.Error(w, r, &builds.Error{Kind: builds.EMethod, Code: "method_not_allowed", Message: fmt.Sprintf("%.20s is not allowed on %.200s; it takes %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
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
