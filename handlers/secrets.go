package handlers

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// ListSecrets answers GET /api/v1/secrets: the caller's secret names, never values.
func (h *Handlers) ListSecrets(w http.ResponseWriter, r *http.Request) error {
	names, err := h.Accounts.SecretNames(r.Context(), identity(r).UserID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"secrets": names})
}

// PutSecret answers PUT /api/v1/secrets/{name} {"value": "…"}.
func (h *Handlers) PutSecret(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Value string `json:"value"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, 1<<20), &req); err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	if err := h.Accounts.SetSecret(r.Context(), identity(r).UserID, name, req.Value); err != nil {
		return err
	}
	h.audit(r, "secret.set", name, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DeleteSecret answers DELETE /api/v1/secrets/{name}.
func (h *Handlers) DeleteSecret(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	if err := h.Accounts.DeleteSecret(r.Context(), identity(r).UserID, name); err != nil {
		return err
	}
	h.audit(r, "secret.delete", name, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
