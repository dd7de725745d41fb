package web

import (
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"manifold/builds"
	"manifold/builds/accounts"
)

// guardSetup protects an instance that has no account yet, when requests from
// this machine act as admin. A web page open in a browser on this machine
// must not be able to use that: the Host must be a loopback name with the
// port Manifold listens on (a rebound DNS name is refused), and a
// state-changing request from a browser needs the page's CSRF token and a
// same-origin Origin. Refused requests reach no handler, so they change nothing.
func (s *Server) guardSetup(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setup, err := s.accounts.SetupMode(r.Context())
		if err != nil {
			s.Error(w, r, err)
			return
		}
		if !setup || isHook(r) {
			next.ServeHTTP(w, r)
			return
		}
		if !s.loopbackHost(r.Host) {
			s.Error(w, r, builds.CodeErrorf(builds.EForbidden, "setup_host",
				"this server has no accounts yet and answers only as http://localhost:%s on its own machine; create the first admin there, or run `manifold user create --admin NAME`", s.portText()))
			return
		}
		if !safeMethod(r.Method) && !s.setupCSRFOK(r) {
			s.Error(w, r, builds.CodeErrorf(builds.EForbidden, "csrf",
				"this request came from a web page without the page's security token; while no account exists, only Manifold's own pages and command-line clients on this machine may change anything"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine's loopback
// interface (localhost, *.localhost, 127.0.0.0/8, ::1) with the listening port.
func (s *Server) loopbackHost(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "80"
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	ip := net.ParseIP(host)
	loopback := host == "localhost" || strings.HasSuffix(host, ".localhost") || (ip != nil && ip.IsLoopback())
	if !loopback {
		return false
	}
	return s.port == 0 || port == strconv.Itoa(s.port)
}

func (s *Server) portText() string {
	if s.port == 0 {
		return "PORT"
	}
	return strconv.Itoa(s.port)
}

// fromBrowser reports whether a request carries any header a browser adds by
// itself (and a page cannot remove): command-line clients send none of them.
func fromBrowser(r *http.Request) bool {
	for _, h := range []string{"Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Cookie"} {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// setupCSRFOK lets a setup-mode request change state when it comes from a
// command-line client on this machine, or from a browser that shows
// Manifold's own page: same Origin and the page's token.
func (s *Server) setupCSRFOK(r *http.Request) bool {
	if !fromBrowser(r) {
		return true
	}
	return s.csrfOK(r, s.setupCSRF)
}

// sameOrigin reports whether the Origin header, when the browser sends one,
// names this server; "null" and foreign origins are refused.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == r.Host
}

// csrfOK checks the token from the X-CSRF-Token header, the csrf query
// parameter (streamed multipart forms) or an urlencoded form field, and that
// the Origin, when the browser sends one, is this server.
func (s *Server) csrfOK(r *http.Request, want string) bool {
	if !sameOrigin(r) {
		return false
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.URL.Query().Get("csrf")
	}
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		r.Body = http.MaxBytesReader(nil, r.Body, 4<<20)
		if err := r.ParseForm(); err == nil {
			got = r.PostForm.Get("csrf")
		}
	}
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// requireJSON makes the JSON API accept bodies only as application/json
// (and the build upload as multipart/form-data), for every caller: no HTML
// form and no text/plain post can reach it, whoever is logged in. It runs
// after authenticate; anonymous callers are left to require's 401.
func (s *Server) requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Webhooks (/hooks/) are not under /api/: they act for no identity, and
		// the hook handler itself answers 415 for a non-JSON payload once the
		// signature verified.
		if _, known := accounts.IdentityFrom(r.Context()); !known || !strings.HasPrefix(r.URL.Path, "/api/") || safeMethod(r.Method) {
			next.ServeHTTP(w, r) // an anonymous caller gets require's 401 first
			return
		}
		ct := r.Header.Get("Content-Type")
		if ct == "" && r.ContentLength == 0 {
			next.ServeHTTP(w, r) // no body: cancel, pin, delete…
			return
		}
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err == nil && mt == "application/json":
		case err == nil && mt == "multipart/form-data" && r.Method == http.MethodPost && r.URL.Path == "/api/v1/builds":
		default:
			msg := `send the body as JSON with "Content-Type: application/json"`
			if r.URL.Path == "/api/v1/builds" {
				msg += `, or as multipart/form-data with "options" and "context" parts`
			}
			s.Error(w, r, builds.CodeErrorf(builds.EMediaType, "unsupported_media_type", "%s; this request's type is %q", msg, ct))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isHook says whether r is a webhook delivery (POST /hooks/{forge}/{project}).
// Hooks authenticate by the project's signature and act for nobody, so setup
// mode's guard, which protects the implicit admin of this machine's own
// requests, does not apply: a forge on another host can deliver before the
// first account exists.
func isHook(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/hooks/") }
