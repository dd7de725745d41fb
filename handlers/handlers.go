// Package handlers turns HTTP requests into calls on the domain services and
// their answers into JSON or templ pages. Handlers return errors; package web
// renders them.
package handlers

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"manifold/builds"
)

// Handlers holds what the HTTP surface needs.
type Handlers struct {
	Builds   *builds.Service
	Accounts *builds.Accounts
	Log      *slog.Logger
	// Retention is applied by POST /api/v1/gc, as by the periodic collection.
	Retention builds.Retention
}

// Func is a handler that returns its error instead of writing it.
type Func func(w http.ResponseWriter, r *http.Request) error

// maxJSONBody bounds a JSON request body (an inline Dockerfile is at most 1 MiB).
const maxJSONBody = 2 << 20

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
