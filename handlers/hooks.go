package handlers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/projects"
)

// maxHookBody bounds a webhook delivery (GitHub caps payloads at 25 MB; a
// push event of a few commits is a few KB).
const maxHookBody = 5 << 20

// GitHubHook answers POST /hooks/github/{project}: X-Hub-Signature-256,
// push events (branches and tags) and ping.
func (h *Handlers) GitHubHook(w http.ResponseWriter, r *http.Request) error {
	return h.hook(w, r, "github")
}

// GiteaHook answers POST /hooks/gitea/{project}: X-Gitea-Signature (or X-Hub-Signature-256), push events.
func (h *Handlers) GiteaHook(w http.ResponseWriter, r *http.Request) error {
	return h.hook(w, r, "gitea")
}

// GitLabHook answers POST /hooks/gitlab/{project}: X-Gitlab-Token, Push Hook and Tag Push Hook.
func (h *Handlers) GitLabHook(w http.ResponseWriter, r *http.Request) error {
	return h.hook(w, r, "gitlab")
}

// pushPayload is what the three forges share in a push event.
type pushPayload struct {
	Ref         string `json:"ref"`
	After       string `json:"after"`
	CheckoutSHA string `json:"checkout_sha"` // GitLab: the commit, also for annotated tags
	HeadCommit  *struct {
		ID string `json:"id"`
	} `json:"head_commit"` // GitHub and Gitea: the commit, also for annotated tags
}

func (h *Handlers) hook(w http.ResponseWriter, r *http.Request, forge string) error {
	name := chi.URLParam(r, "project")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		return builds.CodeErrorf(builds.EInvalid, "payload_too_large", "a webhook payload may be at most %d bytes", maxHookBody)
	}
	// An unknown project and a wrong signature get the same answer: the
	// sender learns nothing about which projects exist.
	unauthorized := builds.CodeErrorf(builds.EUnauthorized, "bad_signature",
		"the webhook signature does not verify for project %q: set the project's webhook secret in the %s webhook", clipInput(name), forge)
	p, err := h.Projects.Get(r.Context(), name)
	if builds.ErrorKind(err) == builds.ENotFound {
		return unauthorized
	}
	if err != nil {
		return err
	}
	var ok bool
	var event, delivery string
	switch forge {
	case "github":
		sig, found := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
		ok = found && projects.VerifyHMAC(p.Secret, body, sig)
		event, delivery = r.Header.Get("X-GitHub-Event"), r.Header.Get("X-GitHub-Delivery")
	case "gitea":
		sig := r.Header.Get("X-Gitea-Signature")
		if sig == "" {
			sig, _ = strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
		}
		ok = projects.VerifyHMAC(p.Secret, body, sig)
		event, delivery = r.Header.Get("X-Gitea-Event"), r.Header.Get("X-Gitea-Delivery")
	case "gitlab":
		ok = projects.VerifyToken(p.Secret, r.Header.Get("X-Gitlab-Token"))
		event, delivery = r.Header.Get("X-Gitlab-Event"), r.Header.Get("X-Gitlab-Event-UUID")
		if delivery == "" {
			delivery = r.Header.Get("Idempotency-Key")
		}
	}
	if !ok {
		h.Log.Info("webhook refused: bad signature", "project", p.Name, "forge", forge)
		return unauthorized
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return builds.CodeErrorf(builds.EMediaType, "unsupported_media_type",
			"send webhook payloads as JSON (content type application/json in the %s webhook's settings); this one is %q", forge, clipInput(r.Header.Get("Content-Type")))
	}
	if delivery == "" {
		// No delivery id: the same payload sent again is the same delivery.
		sum := sha256.Sum256(body)
		delivery = "body:" + hex.EncodeToString(sum[:])
	}
	t := projects.Trigger{Delivery: forge + ":" + delivery}
	switch {
	case forge == "github" && event == "ping":
		return writeJSON(w, http.StatusOK, map[string]any{"status": "pong", "project": p.Name})
	case (forge == "github" || forge == "gitea") && event == "push",
		forge == "gitlab" && (event == "Push Hook" || event == "Tag Push Hook"):
	default:
		return writeJSON(w, http.StatusAccepted, map[string]any{"status": "ignored", "reason": "event " + clipInput(event) + " does not start builds"})
	}
	var pl pushPayload
	if err := json.Unmarshal(body, &pl); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_payload", "the push payload is not the JSON a %s push event sends: %v", forge, err)
	}
	t.Ref, t.SHA, t.Event = pl.Ref, pl.After, "push"
	if strings.HasPrefix(pl.Ref, "refs/tags/") {
		t.Event = "tag"
	}
	// A tag's "after" may be the annotated tag object; build its commit.
	switch {
	case pl.CheckoutSHA != "":
		t.SHA = pl.CheckoutSHA
	case pl.HeadCommit != nil && pl.HeadCommit.ID != "" && t.Event == "tag":
		t.SHA = pl.HeadCommit.ID
	}
	if t.Ref == "" || t.SHA == "" {
		return builds.CodeErrorf(builds.EInvalid, "invalid_payload", "the push payload has no ref or commit (fields \"ref\" and \"after\")")
	}
	res, err := h.Projects.Trigger(r.Context(), p, t)
	if err != nil {
		return err
	}
	if res.Ignored != "" {
		return writeJSON(w, http.StatusAccepted, map[string]any{"status": "ignored", "reason": res.Ignored})
	}
	status := "queued"
	if res.Replayed {
		status = "duplicate"
	}
	url := absoluteURL(r, "/builds/"+res.Build.ID)
	w.Header().Set("Location", url)
	return writeJSON(w, http.StatusAccepted, map[string]any{"status": status, "build_id": res.Build.ID, "url": url})
}

// absoluteURL is path on the host the request was sent to.
func absoluteURL(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

// clipInput shortens input quoted in an answer to 100 characters.
func clipInput(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
