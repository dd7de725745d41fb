// Package handlers turns HTTP requests into calls on the domain services and
// their answers into JSON or templ pages. Handlers return errors; package web
// renders them.
package handlers

import (
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"manifold/builds/content"
)

// Handlers holds what the HTTP surface needs.
type Handlers struct {
	Builds     Builds
	Content    Storage
	Blobs      Blobs
	Explorer   Explorer
	Registries Registry
	// Credentials is nil when the server keeps no registry credentials.
	Credentials Credentials
	Accounts    Accounts
	Log         *slog.Logger
	// Projects keeps projects and turns webhook deliveries into builds.
	Projects Projects
	// Retention is applied by POST /api/v1/gc, as by the periodic collection.
	Retention content.Retention
	// Builder issues builder endpoint certificates; nil when the endpoint is off.
	Builder BuilderCerts
	// BuilderAddr is the address the account page tells buildx to reach the endpoint at.
	BuilderAddr string
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

// blobContentType is the Content-Type stored bytes are served with: their
// media type only when it is an OCI or Docker image type or JSON, else
// application/octet-stream. A remote manifest can claim any media type for
// what it names; text/html, image/svg+xml and the like must never be served
// from this origin.
func blobContentType(mediaType string) string {
	mt, params, err := mime.ParseMediaType(mediaType)
	if err != nil || len(params) > 0 {
		return "application/octet-stream"
	}
	switch {
	case strings.HasPrefix(mt, "application/vnd.oci.") || strings.HasPrefix(mt, "application/vnd.docker.") ||
		strings.HasPrefix(mt, "application/vnd.in-toto") || mt == "application/json":
		return mt
	case strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return mt
	}
	return "application/octet-stream"
}
