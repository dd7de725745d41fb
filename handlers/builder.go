package handlers

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/builds/builder"
	"manifold/templates"
)

// BuilderCerts issues and revokes the client certificates `docker buildx`
// uses with the builder endpoint (*builder.Service); nil when the endpoint
// is off.
type BuilderCerts interface {
	Issue(ctx context.Context, user string, days int) (builder.Issued, error)
	List(ctx context.Context, user string) ([]builder.Issued, error)
	Revoke(ctx context.Context, serial, user string) (bool, error)
	CAPEM() []byte
}

// builderOff is the answer while Manifold runs without --builder-addr.
var builderOff = builds.CodeErrorf(builds.ENotFound, "builder_off", "the builder endpoint is off; start Manifold with --builder-addr (MANIFOLD_BUILDER_ADDR) to build with docker buildx through it")

// certJSON is a new certificate with its files, given out once.
type certJSON struct {
	builder.Issued
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// ListBuilderCerts answers GET /api/v1/builder-certs: the caller's
// certificates (an admin's: everyone's, or ?user=NAME's).
func (h *Handlers) ListBuilderCerts(w http.ResponseWriter, r *http.Request) error {
	if h.Builder == nil {
		return builderOff
	}
	id := identity(r)
	user := id.User
	if id.Role == accounts.RoleAdmin {
		user = r.URL.Query().Get("user")
	}
	list, err := h.Builder.List(r.Context(), user)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"certificates": list})
}

// CreateBuilderCert answers POST /api/v1/builder-certs {"days": N}: a
// certificate for the caller, with ca.pem, cert.pem and key.pem's contents.
func (h *Handlers) CreateBuilderCert(w http.ResponseWriter, r *http.Request) error {
	if h.Builder == nil {
		return builderOff
	}
	req := struct {
		Days int `json:"days"`
	}{Days: 90}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req); err != nil {
		return err
	}
	c, err := h.issueCert(r, req.Days)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, certJSON{Issued: c, CA: string(h.Builder.CAPEM()), Cert: string(c.CertPEM), Key: string(c.KeyPEM)})
}

func (h *Handlers) issueCert(r *http.Request, days int) (builder.Issued, error) {
	id := identity(r)
	if id.Via == "setup" {
		return builder.Issued{}, builds.CodeErrorf(builds.EInvalid, "no_user", "create a user first (manifold user create --admin NAME): certificates belong to users")
	}
	c, err := h.Builder.Issue(r.Context(), id.User, days)
	if err != nil {
		return c, err
	}
	h.audit(r, "builder-cert.create", c.Serial, "user "+c.User)
	return c, nil
}

// RevokeBuilderCert answers DELETE /api/v1/builder-certs/{serial}: the
// caller's own certificate (an admin's: anyone's); the next handshake with
// it is refused.
func (h *Handlers) RevokeBuilderCert(w http.ResponseWriter, r *http.Request) error {
	if err := h.revokeCert(r); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handlers) revokeCert(r *http.Request) error {
	if h.Builder == nil {
		return builderOff
	}
	id := identity(r)
	owner := id.User
	if id.Role == accounts.RoleAdmin {
		owner = ""
	}
	serial := strings.ToLower(chi.URLParam(r, "serial"))
	ok, err := h.Builder.Revoke(r.Context(), serial, owner)
	if err != nil {
		return err
	}
	if !ok {
		return builds.CodeErrorf(builds.ENotFound, "cert_not_found", "you have no builder certificate %s that is not revoked already", serial)
	}
	h.audit(r, "builder-cert.revoke", serial, "")
	return nil
}

// CreateBuilderCertForm answers POST /account/builder-certs: the account
// page shows the new certificate's files once, with the buildx commands.
func (h *Handlers) CreateBuilderCertForm(w http.ResponseWriter, r *http.Request) error {
	if h.Builder == nil {
		return builderOff
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return err
	}
	days, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("days")))
	if err != nil {
		return h.renderAccountWith(w, r, http.StatusBadRequest, accountExtras{msg: "days must be a whole number from 1 to 366"})
	}
	c, err := h.issueCert(r, days)
	if err != nil {
		if k := builds.ErrorKind(err); k == builds.EInvalid || k == builds.EForbidden {
			return h.renderAccountWith(w, r, http.StatusBadRequest, accountExtras{msg: builds.ErrorMessage(err)})
		}
		return err
	}
	return h.renderAccountWith(w, r, http.StatusOK, accountExtras{cert: &templates.NewBuilderCert{
		Serial: c.Serial, ExpiresAt: c.ExpiresAt, CA: string(h.Builder.CAPEM()), Cert: string(c.CertPEM), Key: string(c.KeyPEM)}})
}

// RevokeBuilderCertForm answers POST /account/builder-certs/{serial}/revoke.
func (h *Handlers) RevokeBuilderCertForm(w http.ResponseWriter, r *http.Request) error {
	if err := h.revokeCert(r); err != nil {
		return err
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
	return nil
}
