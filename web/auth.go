package web

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/handlers"
	"manifold/templates"
)

// fromThisMachine is a loopback request that no proxy forwarded.
func fromThisMachine(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Real-Ip") != "" {
		return false
	}
	ip := net.ParseIP(handlers.ClientIP(r))
	return ip != nil && ip.IsLoopback()
}

// authenticate finds who a request acts for: an API token (Bearer, or Basic
// with the token as password), a session cookie, or — while no account exists —
// this machine's own requests, as admin. It never refuses: require does.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var id accounts.Identity
		var authErr error
		token := ""
		if h := r.Header.Get("Authorization"); h != "" {
			if t, ok := strings.CutPrefix(h, "Bearer "); ok {
				token = strings.TrimSpace(t)
			} else if _, pass, ok := r.BasicAuth(); ok {
				token = pass
			} else {
				authErr = builds.CodeErrorf(builds.EUnauthorized, "bad_token", "the Authorization header is neither Bearer nor Basic")
			}
		}
		switch {
		case authErr != nil:
		case token != "":
			id, authErr = s.accounts.TokenIdentity(ctx, token)
		default:
			if c, err := r.Cookie(handlers.SessionCookie); err == nil && c.Value != "" {
				id, authErr = s.accounts.SessionIdentity(ctx, c.Value)
				if authErr != nil {
					http.SetCookie(w, &http.Cookie{Name: handlers.SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
				}
			} else if setup, err := s.accounts.SetupMode(ctx); err == nil && setup && fromThisMachine(r) {
				// guardSetup has checked the Host, the Origin and the token already.
				id = accounts.Identity{User: "setup", Role: accounts.RoleAdmin, Via: "setup", CSRF: s.setupCSRF}
			}
		}
		if authErr == nil && id.Role != "" {
			ctx = accounts.WithIdentity(ctx, id)
		}
		ctx = templates.WithPage(ctx, templates.PageContext{User: id.User, Role: string(id.Role), CSRF: id.CSRF, Setup: id.Via == "setup"})
		if authErr != nil {
			ctx = withAuthError(ctx, authErr)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// require lets a request through when its identity has the role, and checks
// the CSRF token of state-changing requests a session cookie authenticates.
func (s *Server) require(role accounts.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := accounts.IdentityFrom(r.Context())
			if !ok {
				s.unauthorized(w, r)
				return
			}
			if !id.Role.Allows(role) {
				s.Error(w, r, builds.CodeErrorf(builds.EForbidden, "forbidden", "%s (%s) may not do this; it needs the %s role", id.User, id.Role, role))
				return
			}
			if id.Via == "session" && !safeMethod(r.Method) && !s.csrfOK(r, id.CSRF) {
				s.Error(w, r, builds.CodeErrorf(builds.EForbidden, "csrf", "the form's security token is missing or stale; reload the page and try again"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// unauthorized answers a request without a valid login: the login page for
// browsers, 401 with a challenge for the API and the pull API.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	err := authErrorFrom(r.Context())
	if err == nil {
		err = builds.CodeErrorf(builds.EUnauthorized, "unauthorized", "log in first: send an API token as \"Authorization: Bearer <token>\", or log in at /login")
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v2/"):
		w.Header().Set("WWW-Authenticate", `Basic realm="manifold"`)
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required: docker login with a Manifold API token as the password","detail":null}]}` + "\n"))
	case wantsJSON(r):
		w.Header().Set("WWW-Authenticate", `Bearer realm="manifold"`)
		s.Error(w, r, err)
	default:
		next := r.URL.RequestURI()
		http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
	}
}
