package handlers

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/templates"
)

// SessionCookie names the browser session cookie.
const SessionCookie = "manifold_session"

// ClientIP is the request's peer address; proxies' headers are not trusted.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// audit records what the request's user did.
func (h *Handlers) audit(r *http.Request, action, target, detail string) {
	actor := "anonymous"
	if id, ok := accounts.IdentityFrom(r.Context()); ok {
		actor = id.User
	}
	h.auditAs(r, actor, action, target, detail)
}

// auditAs records an action of a named actor (a login, before there is an
// identity); a failure to record it is logged, never dropped.
func (h *Handlers) auditAs(r *http.Request, actor, action, target, detail string) {
	if err := h.Accounts.Audit(r.Context(), actor, action, target, ClientIP(r), detail); err != nil {
		h.Log.Error("audit", "action", action, "err", err)
	}
}

func identity(r *http.Request) accounts.Identity {
	id, _ := accounts.IdentityFrom(r.Context())
	return id
}

// safeNext keeps a post-login redirect on this site: a path that stays a
// same-origin path after a browser's own clean-up, which drops tabs and
// newlines and reads '\' as '/'. Anything else goes to "/".
func safeNext(next string) string {
	bad := func(s string) bool {
		for _, c := range s {
			if c < 0x20 || c == 0x7f || c == '\\' || (c >= 0x80 && c <= 0x9f) {
				return true
			}
		}
		return !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//")
	}
	if next == "" || len(next) > 2048 || bad(next) {
		return "/"
	}
	// Once more after percent-decoding, for what a later hop might decode.
	if dec, err := url.PathUnescape(next); err != nil || bad(dec) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	return next
}

// LoginPage answers GET /login.
func (h *Handlers) LoginPage(w http.ResponseWriter, r *http.Request) error {
	return render(w, r, http.StatusOK, templates.LoginPage(templates.LoginView{Next: safeNext(r.URL.Query().Get("next"))}))
}

// Login answers POST /login: a session cookie and 303 to where the user was going.
func (h *Handlers) Login(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the login form cannot be read")
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			return builds.CodeErrorf(builds.EForbidden, "csrf", "the login form was sent from another site")
		}
	}
	name, next := strings.TrimSpace(r.PostForm.Get("name")), safeNext(r.PostForm.Get("next"))
	secret, sess, err := h.Accounts.Login(r.Context(), name, r.PostForm.Get("password"), ClientIP(r))
	if err != nil {
		kind := builds.ErrorKind(err)
		if kind != builds.EUnauthorized && kind != builds.ETooMany {
			return err
		}
		h.auditAs(r, name, "login.failed", name, builds.ErrorCode(err))
		status := http.StatusUnauthorized
		if kind == builds.ETooMany {
			status = http.StatusTooManyRequests
		}
		return render(w, r, status, templates.LoginPage(templates.LoginView{Name: name, Next: next, Error: builds.ErrorMessage(err)}))
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https", Expires: sess.ExpiresAt,
	})
	h.auditAs(r, sess.User.Name, "login", sess.User.Name, "")
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// Logout answers POST /logout: the session ends on the server, not only in the browser.
func (h *Handlers) Logout(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := h.Accounts.Logout(r.Context(), c.Value); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// Me answers GET /api/v1/me.
func (h *Handlers) Me(w http.ResponseWriter, r *http.Request) error {
	id := identity(r)
	return writeJSON(w, http.StatusOK, map[string]any{"user": id.User, "role": id.Role, "via": id.Via})
}

// ListTokens answers GET /api/v1/tokens: the caller's tokens (everyone's for admins with ?all=1).
func (h *Handlers) ListTokens(w http.ResponseWriter, r *http.Request) error {
	id := identity(r)
	user := id.User
	if r.URL.Query().Get("all") == "1" && id.Role == accounts.RoleAdmin {
		user = ""
	}
	list, err := h.Accounts.Tokens(r.Context(), user)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"tokens": list})
}

// CreateToken answers POST /api/v1/tokens {"name","scope"}: the secret is in this answer only.
func (h *Handlers) CreateToken(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name  string `json:"name"`
		Scope string `json:"scope"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req); err != nil {
		return err
	}
	id := identity(r)
	if err := h.checkScope(id, req.Scope); err != nil {
		return err
	}
	secret, t, err := h.Accounts.CreateToken(r.Context(), id.User, req.Name, req.Scope)
	if err != nil {
		return err
	}
	h.audit(r, "token.create", t.Name, "scope "+t.Scope)
	return writeJSON(w, http.StatusCreated, map[string]any{"token": secret, "id": t.ID, "name": t.Name, "scope": t.Scope})
}

// checkScope keeps a caller from minting a token stronger than itself.
func (h *Handlers) checkScope(id accounts.Identity, scope string) error {
	role, err := accounts.ScopeRole(scope)
	if err != nil {
		return err
	}
	if !id.Role.Allows(role) {
		return builds.CodeErrorf(builds.EForbidden, "forbidden", "a %s cannot make a %s token", id.Role, scope)
	}
	if id.Via == "setup" {
		return builds.CodeErrorf(builds.EInvalid, "no_user", "create a user first (manifold user create --admin NAME): tokens belong to users")
	}
	return nil
}

// RevokeToken answers DELETE /api/v1/tokens/{tid}.
func (h *Handlers) RevokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := h.revoke(r); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handlers) revoke(r *http.Request) error {
	tid, err := strconv.ParseInt(chi.URLParam(r, "tid"), 10, 64)
	if err != nil {
		return builds.CodeErrorf(builds.ENotFound, "token_not_found", "no token has the id %q", chi.URLParam(r, "tid"))
	}
	id := identity(r)
	owner := id.User
	if id.Role == accounts.RoleAdmin {
		owner = ""
	}
	if err := h.Accounts.RevokeToken(r.Context(), tid, owner); err != nil {
		return err
	}
	h.audit(r, "token.revoke", strconv.FormatInt(tid, 10), "")
	return nil
}

// AccountPage answers GET /account: the user's tokens.
func (h *Handlers) AccountPage(w http.ResponseWriter, r *http.Request) error {
	return h.renderAccount(w, r, http.StatusOK, "", "")
}

func (h *Handlers) renderAccount(w http.ResponseWriter, r *http.Request, status int, newToken, msg string) error {
	return h.renderAccountWith(w, r, status, accountExtras{token: newToken, msg: msg})
}

// accountExtras is what the account page shows once: a new token or
// certificate, or the sentence saying what to fix.
type accountExtras struct {
	token, msg string
	cert       *templates.NewBuilderCert
}

func (h *Handlers) renderAccountWith(w http.ResponseWriter, r *http.Request, status int, x accountExtras) error {
	newToken, msg := x.token, x.msg
	id := identity(r)
	tokens, err := h.Accounts.Tokens(r.Context(), id.User)
	if err != nil {
		return err
	}
	var secrets []string
	if id.UserID != 0 {
		if secrets, err = h.Accounts.SecretNames(r.Context(), id.UserID); err != nil {
			return err
		}
	}
	view := templates.AccountView{User: id.User, Role: string(id.Role), Tokens: tokens, NewToken: newToken, Error: msg, Secrets: secrets,
		Builder: h.Builder != nil && id.Role.Allows(accounts.RoleBuilder) && id.Via != "setup", BuilderAddr: builderAddr(h.BuilderAddr, r), NewCert: x.cert}
	if view.Builder {
		if view.Certs, err = h.Builder.List(r.Context(), id.User); err != nil {
			return err
		}
	}
	return render(w, r, status, templates.AccountPage(view))
}

// CreateTokenForm answers POST /account/tokens: the new token is shown once.
func (h *Handlers) CreateTokenForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return err
	}
	id := identity(r)
	scope := r.PostForm.Get("scope")
	if err := h.checkScope(id, scope); err != nil {
		return h.renderAccount(w, r, http.StatusBadRequest, "", builds.ErrorMessage(err))
	}
	secret, t, err := h.Accounts.CreateToken(r.Context(), id.User, r.PostForm.Get("name"), scope)
	if err != nil {
		if builds.ErrorKind(err) == builds.EInvalid {
			return h.renderAccount(w, r, http.StatusBadRequest, "", builds.ErrorMessage(err))
		}
		return err
	}
	h.audit(r, "token.create", t.Name, "scope "+t.Scope)
	return h.renderAccount(w, r, http.StatusOK, secret, "")
}

// RevokeTokenForm answers POST /account/tokens/{tid}/revoke.
func (h *Handlers) RevokeTokenForm(w http.ResponseWriter, r *http.Request) error {
	if err := h.revoke(r); err != nil {
		return err
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
	return nil
}

// ListUsers answers GET /api/v1/users.
func (h *Handlers) ListUsers(w http.ResponseWriter, r *http.Request) error {
	users, err := h.Accounts.Users(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": users})
}

// CreateUser answers POST /api/v1/users {"name","password","role"}.
func (h *Handlers) CreateUser(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req); err != nil {
		return err
	}
	u, err := h.Accounts.CreateUser(r.Context(), req.Name, req.Password, accounts.Role(req.Role))
	if err != nil {
		return err
	}
	h.audit(r, "user.create", u.Name, "role "+string(u.Role))
	return writeJSON(w, http.StatusCreated, u)
}

// UpdateUser answers PATCH /api/v1/users/{name} {"role","password"}.
func (h *Handlers) UpdateUser(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Role     string `json:"role"`
		Password string `json:"password"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req); err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	if err := h.Accounts.UpdateUser(r.Context(), name, accounts.Role(req.Role), req.Password); err != nil {
		return err
	}
	h.audit(r, "user.update", name, "role "+req.Role)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DeleteUser answers DELETE /api/v1/users/{name}; nobody deletes themselves.
func (h *Handlers) DeleteUser(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	if name == identity(r).User {
		return builds.CodeErrorf(builds.EConflict, "self_delete", "you cannot delete your own account")
	}
	if err := h.Accounts.DeleteUser(r.Context(), name); err != nil {
		return err
	}
	h.audit(r, "user.delete", name, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Audit answers GET /api/v1/audit?before=&limit=, newest first.
func (h *Handlers) Audit(w http.ResponseWriter, r *http.Request) error {
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	list, err := h.Accounts.AuditLog(r.Context(), before, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"entries": list})
}

// NodesPage answers GET /admin/nodes.
func (h *Handlers) NodesPage(w http.ResponseWriter, r *http.Request) error {
	return render(w, r, http.StatusOK, templates.NodesPage(h.Builds.NodeDetails(r.Context())))
}

// UsersPage answers GET /admin/users.
func (h *Handlers) UsersPage(w http.ResponseWriter, r *http.Request) error {
	return h.renderUsers(w, r, http.StatusOK, "")
}

func (h *Handlers) renderUsers(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	users, err := h.Accounts.Users(r.Context())
	if err != nil {
		return err
	}
	tokens, err := h.Accounts.Tokens(r.Context(), "")
	if err != nil {
		return err
	}
	return render(w, r, status, templates.UsersPage(templates.UsersView{Users: users, Tokens: tokens, Error: msg}))
}

// CreateUserForm answers POST /admin/users.
func (h *Handlers) CreateUserForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return err
	}
	u, err := h.Accounts.CreateUser(r.Context(), strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password"), accounts.Role(r.PostForm.Get("role")))
	if err != nil {
		if k := builds.ErrorKind(err); k == builds.EInvalid || k == builds.EConflict {
			return h.renderUsers(w, r, http.StatusBadRequest, builds.ErrorMessage(err))
		}
		return err
	}
	h.audit(r, "user.create", u.Name, "role "+string(u.Role))
	http.Redirect(w, r, "/admin/users", http.StatusSeeOther)
	return nil
}

// UpdateUserForm answers POST /admin/users/{name}: a new role, or delete=1.
func (h *Handlers) UpdateUserForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	var err error
	if r.PostForm.Get("delete") != "" {
		if name == identity(r).User {
			return h.renderUsers(w, r, http.StatusConflict, "you cannot delete your own account")
		}
		if err = h.Accounts.DeleteUser(r.Context(), name); err == nil {
			h.audit(r, "user.delete", name, "")
		}
	} else {
		if err = h.Accounts.UpdateUser(r.Context(), name, accounts.Role(r.PostForm.Get("role")), ""); err == nil {
			h.audit(r, "user.update", name, "role "+r.PostForm.Get("role"))
		}
	}
	if err != nil {
		return h.renderUsers(w, r, http.StatusBadRequest, builds.ErrorMessage(err))
	}
	http.Redirect(w, r, "/admin/users", http.StatusSeeOther)
	return nil
}

// AuditPage answers GET /admin/audit.
func (h *Handlers) AuditPage(w http.ResponseWriter, r *http.Request) error {
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	list, err := h.Accounts.AuditLog(r.Context(), before, 100)
	if err != nil {
		return err
	}
	v := templates.AuditView{Entries: list}
	if len(list) == 100 {
		v.Next = strconv.FormatInt(list[len(list)-1].ID, 10)
	}
	return render(w, r, http.StatusOK, templates.AuditPage(v))
}

// SetupPage answers GET /setup: while no account exists, this machine's own
// browser may create the first admin here. Afterwards the page is gone.
func (h *Handlers) SetupPage(w http.ResponseWriter, r *http.Request) error {
	if err := h.setupAllowed(r); err != nil {
		return err
	}
	return render(w, r, http.StatusOK, templates.SetupPage(templates.LoginView{}))
}

// Setup answers POST /setup: the first admin, logged in at once.
func (h *Handlers) Setup(w http.ResponseWriter, r *http.Request) error {
	if err := h.setupAllowed(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form cannot be read")
	}
	name, password := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password")
	u, err := h.Accounts.CreateUser(r.Context(), name, password, accounts.RoleAdmin)
	if err != nil {
		if builds.ErrorKind(err) == builds.EInvalid {
			return render(w, r, http.StatusBadRequest, templates.SetupPage(templates.LoginView{Name: name, Error: builds.ErrorMessage(err)}))
		}
		return err
	}
	h.auditAs(r, u.Name, "user.create", u.Name, "first admin, from /setup")
	return h.Login(w, r) // the same form fields log them in
}

func (h *Handlers) setupAllowed(r *http.Request) error {
	setup, err := h.Accounts.SetupMode(r.Context())
	if err != nil {
		return err
	}
	id, _ := accounts.IdentityFrom(r.Context())
	if !setup || id.Via != "setup" {
		return builds.CodeErrorf(builds.ENotFound, "not_found", "setup is over: accounts exist, or this request does not come from this machine")
	}
	return nil
}

// builderAddr is where buildx reaches the endpoint: its listening address,
// with the name this page was reached by when it listens on every address.
func builderAddr(listen string, r *http.Request) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
	}
	return net.JoinHostPort(host, port)
}
