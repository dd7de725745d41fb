package handlers

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
)

func (h *Handlers) registries() (Credentials, error) {
	r := h.Credentials
	if r == nil {
		return nil, builds.CodeErrorf(builds.EUnavailable, "no_key", "registry credentials are not configured on this server")
	}
	return r, nil
}

// PushBuild answers POST /api/v1/builds/{id}/push {"tag": "registry/repo:tag"}:
// the stored image goes to that registry; the attempt is recorded either way.
func (h *Handlers) PushBuild(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Tag string `json:"tag"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req); err != nil {
		return err
	}
	if req.Tag == "" {
		return builds.CodeErrorf(builds.EInvalid, "invalid_tag", "give the target as {\"tag\": \"registry.example.com/team/app:1.2\"}")
	}
	p, err := h.Registries.Push(r.Context(), chi.URLParam(r, "id"), req.Tag)
	h.audit(r, "build.push", chi.URLParam(r, "id"), req.Tag)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

// ListRegistries answers GET /api/v1/registries: hosts with stored credentials, never the passwords.
func (h *Handlers) ListRegistries(w http.ResponseWriter, r *http.Request) error {
	regs, err := h.registries()
	if err != nil {
		return err
	}
	list, err := regs.List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"registries": list})
}

// PutRegistry answers PUT /api/v1/registries/{host} {"username","password","insecure"}.
func (h *Handlers) PutRegistry(w http.ResponseWriter, r *http.Request) error {
	regs, err := h.registries()
	if err != nil {
		return err
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Insecure bool   `json:"insecure"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 64<<10), &req); err != nil {
		return err
	}
	c, err := regs.Set(r.Context(), chi.URLParam(r, "host"), req.Username, req.Password, req.Insecure)
	if err != nil {
		return err
	}
	h.audit(r, "registry.set", c.Host, "user "+c.Username)
	return writeJSON(w, http.StatusOK, c)
}

// DeleteRegistry answers DELETE /api/v1/registries/{host}.
func (h *Handlers) DeleteRegistry(w http.ResponseWriter, r *http.Request) error {
	regs, err := h.registries()
	if err != nil {
		return err
	}
	if err := regs.Delete(r.Context(), chi.URLParam(r, "host")); err != nil {
		return err
	}
	h.audit(r, "registry.delete", chi.URLParam(r, "host"), "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
