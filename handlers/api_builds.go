package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
)

// buildJSON is the build object of the API: the domain build plus its place in the queue.
type buildJSON struct {
	*builds.Build
	QueuePosition int `json:"queue_position,omitempty"`
}

// createRequest is the body of POST /api/v1/builds (or its "options" part).
type createRequest struct {
	builds.Request
}

// Health answers GET /healthz with every BuildKit node's state.
func (h *Handlers) Health(w http.ResponseWriter, r *http.Request) error {
	nodes := h.Builds.Nodes(r.Context())
	status, code := "ok", http.StatusOK
	for _, n := range nodes {
		if !n.OK {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	return writeJSON(w, code, map[string]any{"status": status, "buildkit": nodes})
}

// CreateBuild answers POST /api/v1/builds: a JSON body, or multipart/form-data
// with an "options" part (the same JSON) and a "context" part (tar or tar.gz).
func (h *Handlers) CreateBuild(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var req createRequest
	if mt == "multipart/form-data" {
		up, err := h.keepUpload(h.readMultipart(w, r, &req))
		if err != nil {
			return err
		}
		req.Upload = up
	} else {
		// requireJSON let only application/json through to here.
		if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxJSONBody), &req); err != nil {
			return err
		}
	}
	b, err := h.start(r, req.Request)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/builds/"+b.ID)
	return writeJSON(w, http.StatusCreated, buildJSON{Build: b, QueuePosition: h.Builds.QueuePosition(b.ID)})
}

// start starts a build for the request's user; the Service checks the
// secrets it names are theirs and records it in the audit log.
func (h *Handlers) start(r *http.Request, req builds.Request) (*builds.Build, error) {
	id := identity(r)
	req.CreatedBy, req.CreatedByID, req.ClientIP = id.User, id.UserID, ClientIP(r)
	return h.Builds.Start(r.Context(), req)
}

// keepUpload is the one place a request's upload is given up before a
// build takes it: when reading the request failed. (Service.Start gives it
// up when the build is refused.)
func (h *Handlers) keepUpload(up *builds.Upload, err error) (*builds.Upload, error) {
	if err != nil {
		h.Builds.DiscardUpload(up)
		return nil, err
	}
	return up, nil
}

// readMultipart streams the parts: "options" is decoded, "context" goes
// straight into the content store. The upload it returns is set even on error,
// so the caller can discard it.
func (h *Handlers) readMultipart(w http.ResponseWriter, r *http.Request, req *createRequest) (*builds.Upload, error) {
	r.Body = http.MaxBytesReader(w, r.Body, h.Builds.ContextLimits().MaxBytes+maxJSONBody+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the multipart body cannot be read: %v", err)
	}
	var up *builds.Upload
	gotOptions := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return up, multipartError(err)
		}
		switch part.FormName() {
		case "options":
			if gotOptions {
				return up, builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the body has two \"options\" parts; send one")
			}
			gotOptions = true
			if err := decodeJSON(io.LimitReader(part, maxJSONBody+1), req); err != nil {
				return up, err
			}
		case "context":
			if up != nil {
				return up, builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the body has two \"context\" parts; send one archive")
			}
			u, err := h.Builds.IngestContext(r.Context(), part)
			if err != nil {
				return nil, err
			}
			up = &u
		default:
			return up, builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the body has a part %q; send \"options\" (JSON) and \"context\" (tar or tar.gz)", part.FormName())
		}
	}
	if !gotOptions {
		return up, builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the body has no \"options\" part; send the build's JSON in a part named options")
	}
	if up == nil {
		return up, builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the body has no \"context\" part; send the context as a tar or tar.gz in a part named context, or send plain JSON")
	}
	return up, nil
}

func multipartError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return builds.CodeErrorf(builds.EInvalid, "context_too_large", "the request body is over %d bytes", maxErr.Limit)
	}
	return builds.CodeErrorf(builds.EInvalid, "invalid_multipart", "the multipart body cannot be read: %v", err)
}

// decodeJSON reads one JSON object, refusing unknown fields, trailing data
// and bodies over the limit, with a sentence for each.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var maxErr *http.MaxBytesError
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &maxErr):
			return builds.CodeErrorf(builds.EInvalid, "body_too_large", "the request body is over %d bytes", maxErr.Limit)
		case errors.Is(err, io.EOF):
			return builds.CodeErrorf(builds.EInvalid, "invalid_json", "the request body is empty; send a JSON object such as {\"dockerfile\": \"FROM busybox:1\", \"platforms\": [\"linux/amd64\"]}")
		case errors.As(err, &syn):
			return builds.CodeErrorf(builds.EInvalid, "invalid_json", "the request body is not valid JSON at byte %d: %v", syn.Offset, err)
		case errors.As(err, &typ):
			return builds.CodeErrorf(builds.EInvalid, "invalid_json", "field %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return builds.CodeErrorf(builds.EInvalid, "unknown_field", "%s is not a field of this request; check its spelling", strings.TrimPrefix(err.Error(), "json: unknown field "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return builds.CodeErrorf(builds.EInvalid, "invalid_json", "the request body ends in the middle of the JSON object (or is over %d bytes)", maxJSONBody)
		}
		return builds.CodeErrorf(builds.EInvalid, "invalid_json", "the request body could not be read as JSON: %v", err)
	}
	if dec.More() {
		return builds.CodeErrorf(builds.EInvalid, "invalid_json", "the request body has data after the JSON object; send exactly one object")
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return "a " + k
}

// GetBuild answers GET /api/v1/builds/{id}.
func (h *Handlers) GetBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := h.Builds.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, buildJSON{Build: b, QueuePosition: h.Builds.QueuePosition(b.ID)})
}

// ListBuilds answers GET /api/v1/builds?limit=&before=, newest first,
// narrowed by status, platform, tag, user, since, until and q.
func (h *Handlers) ListBuilds(w http.ResponseWriter, r *http.Request) error {
	opt, err := listOptions(r.URL.Query())
	if err != nil {
		return err
	}
	list, err := h.Builds.List(r.Context(), opt)
	if err != nil {
		return err
	}
	out := make([]buildJSON, len(list))
	for i, b := range list {
		out[i] = buildJSON{Build: b, QueuePosition: h.Builds.QueuePosition(b.ID)}
	}
	next := ""
	if len(list) == opt.Limit && len(list) > 0 {
		next = list[len(list)-1].ID
		link := fmt.Sprintf(`/api/v1/builds?limit=%d&before=%s`, opt.Limit, next)
		if f := opt.Filter.String(); f != "" {
			link += "&" + f
		}
		w.Header().Set("Link", "<"+link+`>; rel="next"`)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"builds": out, "next": next})
}

func listOptions(q url.Values) (builds.ListOptions, error) {
	opt := builds.ListOptions{Limit: 50, Before: q.Get("before")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return opt, builds.CodeErrorf(builds.EInvalid, "invalid_limit", "limit=%q is not a number from 1 to 500", s)
		}
		opt.Limit = n
	}
	f, err := builds.ParseFilter(q.Get)
	if err != nil {
		return opt, err
	}
	opt.Filter = f
	return opt, nil
}

// RebuildBuild answers POST /api/v1/builds/{id}/rebuild: a new build with the same inputs.
func (h *Handlers) RebuildBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := h.rebuild(r)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/builds/"+b.ID)
	return writeJSON(w, http.StatusCreated, buildJSON{Build: b, QueuePosition: h.Builds.QueuePosition(b.ID)})
}

// rebuild starts the same inputs again, as the requesting user.
func (h *Handlers) rebuild(r *http.Request) (*builds.Build, error) {
	old, err := h.Builds.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return nil, err
	}
	if err := old.Rebuildable(); err != nil {
		return nil, err
	}
	return h.start(r, old.Request())
}

// RetryBuild answers POST /api/v1/builds/{id}/retry {"platform": "linux/arm64",
// "placement": "any"}: a new build that builds the failed platforms again
// and merges them with those the failed build kept.
func (h *Handlers) RetryBuild(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Platform  string `json:"platform"`
		Placement string `json:"placement"`
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxJSONBody), &req); err != nil {
		return err
	}
	b, err := h.retry(r, req.Platform, req.Placement)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/builds/"+b.ID)
	return writeJSON(w, http.StatusCreated, buildJSON{Build: b, QueuePosition: h.Builds.QueuePosition(b.ID)})
}

// retry retries a platform of the build in the URL, as the requesting user.
func (h *Handlers) retry(r *http.Request, platform, placement string) (*builds.Build, error) {
	id := identity(r)
	return h.Builds.Retry(r.Context(), chi.URLParam(r, "id"), platform, placement,
		builds.Request{CreatedBy: id.User, CreatedByID: id.UserID, ClientIP: ClientIP(r)})
}

// Nodes answers GET /api/v1/nodes: every BuildKit node, reachable or not,
// its platforms (native or emulated), running solves, version and cache size.
func (h *Handlers) Nodes(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]any{"nodes": nonNilNodes(h.Builds.NodeDetails(r.Context()))})
}

func nonNilNodes(n []builds.NodeStatus) []builds.NodeStatus {
	if n == nil {
		return []builds.NodeStatus{}
	}
	return n
}

// CancelBuild answers POST /api/v1/builds/{id}/cancel.
func (h *Handlers) CancelBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := h.Builds.Cancel(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	h.audit(r, "build.cancel", b.ID, "")
	return writeJSON(w, http.StatusOK, buildJSON{Build: b})
}

// BuildLog answers GET /api/v1/builds/{id}/log with the plain-text log.
func (h *Handlers) BuildLog(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, err := h.Builds.Get(r.Context(), id); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	return h.Builds.WriteLog(r.Context(), id, w)
}
