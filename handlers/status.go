package handlers

import (
	"net/http"

	"manifold/builds"
)

// statusOf is the one table from error kinds to HTTP statuses; web's
// error adapter and the pull API's error shape both read it.
var statusOf = map[builds.Kind]int{
	builds.EInvalid:      http.StatusBadRequest,
	builds.ENotFound:     http.StatusNotFound,
	builds.EConflict:     http.StatusConflict,
	builds.EUnavailable:  http.StatusServiceUnavailable,
	builds.EUpstream:     http.StatusBadGateway,
	builds.EUnauthorized: http.StatusUnauthorized,
	builds.EForbidden:    http.StatusForbidden,
	builds.ETooMany:      http.StatusTooManyRequests,
	builds.EMediaType:    http.StatusUnsupportedMediaType,
	builds.EMethod:       http.StatusMethodNotAllowed,
	builds.EInternal:     http.StatusInternalServerError,
}

// Status is the HTTP status for err: by its kind, 500 when it has none.
func Status(err error) int {
	if st, ok := statusOf[builds.ErrorKind(err)]; ok {
		return st
	}
	return http.StatusInternalServerError
}
