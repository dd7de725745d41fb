// Package builds is a build's lifecycle: what a build is (its request,
// platforms, context, steps, events and status), the Service that validates
// and records it, the Runner that queues it and hands it to a Solver, and
// the Hub that follows its events. What solves it (builds/buildkit), keeps
// its blobs (builds/content), explores them (builds/explore) and serves or
// pushes them (builds/registry) lives in packages that import this one.
package builds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Status is where a build is in its life.
type Status string

// Build states. A build moves queued → running → one of the final states.
const (
	StatusQueued      Status = "queued"
	StatusRunning     Status = "running"
	StatusSucceeded   Status = "succeeded"
	StatusFailed      Status = "failed"
	StatusCanceled    Status = "canceled"
	StatusInterrupted Status = "interrupted"
)

// Final reports whether s is a state a build never leaves.
func (s Status) Final() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusCanceled, StatusInterrupted:
		return true
	}
	return false
}

// Build is one run: what was asked, what happened and what it made.
type Build struct {
	ID         string     `json:"id"`
	Status     Status     `json:"status"`
	Platforms  []string   `json:"platforms"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      string     `json:"error"`
	// ErrorStep is the #N of the step that failed, 0 when none did.
	ErrorStep int `json:"error_step,omitempty"`
	// ErrorLine is the Dockerfile line BuildKit blamed, 0 when it named none.
	ErrorLine   int        `json:"error_line,omitempty"`
	IndexDigest string     `json:"index_digest"`
	Manifests   []Manifest `json:"manifests"`
	Steps       []Step     `json:"steps"`
	Tags        []string   `json:"tags"`
	// PushWanted is set when the build was asked to push its tags.
	PushWanted bool `json:"push"`
	// Pushed is set once every tag was pushed.
	Pushed bool `json:"pushed"`
	// Pushes records each push: at build time and later promotions.
	Pushes []Push `json:"pushes"`
	// Pinned builds are never removed by retention or garbage collection.
	Pinned bool `json:"pinned"`
	// Placements say where each platform ran (or runs), why there, and how it went.
	Placements []Placement `json:"placements"`

	// Dockerfile is the inline Dockerfile text the build was started with.
	Dockerfile string `json:"dockerfile"`
	Options
	// Ref is the SolveOpt.Ref given to BuildKit, which links its own history.
	Ref string `json:"ref"`
	// CreatedBy is who started the build.
	CreatedBy string `json:"created_by"`
	// Via says how the build reached Manifold when it was not through its own
	// queue: ViaBuildx for a `docker buildx` build through the builder
	// endpoint; "" for builds Manifold ran.
	Via string `json:"via,omitempty"`
}

// Rebuildable says why Manifold cannot run a build's inputs again, or nil
// when it can: a buildx build's context stayed on its client.
func (b *Build) Rebuildable() error {
	if b.Via != "" {
		return CodeErrorf(EConflict, "not_rebuildable", "build %s was made with docker buildx through the builder endpoint, and its context stayed on that client; run docker buildx build there again", b.ID)
	}
	return nil
}

// ViaBuildx marks a build a `docker buildx` client ran through the builder endpoint.
const ViaBuildx = "buildx"

// CacheKey names what a build makes, for routing it where its cache is
// warm: its first tag, else its Dockerfile and context source.
func (b *Build) CacheKey() string {
	if len(b.Tags) > 0 {
		return "tag:" + b.Tags[0]
	}
	h := sha256.New()
	src := b.Context.Digest
	if b.Git != nil {
		src = b.Git.URL + "#" + b.Git.Ref + ":" + b.Git.Subdir
	}
	for _, part := range []string{b.Dockerfile, b.DockerfilePath, b.Context.Type, src} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return "src:" + hex.EncodeToString(h.Sum(nil))
}

// Duration is how long the build ran, or ran so far; zero before it started.
func (b *Build) Duration(now time.Time) time.Duration {
	if b.StartedAt == nil {
		return 0
	}
	if b.FinishedAt != nil {
		return b.FinishedAt.Sub(*b.StartedAt)
	}
	return now.Sub(*b.StartedAt)
}

// Push is one push of a build's image to a registry.
type Push struct {
	Target string    `json:"target"`
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
}

// Manifest is one platform's image in a build's index.
type Manifest struct {
	Platform     string `json:"platform"`
	Digest       string `json:"digest"`
	MediaType    string `json:"media_type"`
	ConfigDigest string `json:"config_digest"`
	// Size is the manifest's size in bytes, as its descriptor in the index says.
	Size int64 `json:"size"`
	// ImageSize is the compressed size of the config and all layers.
	ImageSize int64 `json:"image_size"`
	// Node is the BuildKit node that built this platform; Emulated says it
	// ran under emulation (QEMU) there rather than natively.
	Node     string `json:"node"`
	Emulated bool   `json:"emulated"`
}

// Placement policies: where a build's platforms may run.
const (
	// PlacementPreferNative runs a platform on a node that runs it natively
	// when one is up, else on one that emulates it (the default).
	PlacementPreferNative = "prefer-native"
	// PlacementNativeOnly fails a platform no native node is up for, rather
	// than emulating it.
	PlacementNativeOnly = "native-only"
	// PlacementAny runs a platform on any node that can build it, native or not.
	PlacementAny = "any"
)

// Placement is where one platform of a build ran: the node, whether it was
// emulated there and why that node was chosen; its status and error; and
// the index the node's solve stored, kept so that a retried platform can be
// merged with the others again.
type Placement struct {
	Platform    string `json:"platform"`
	Node        string `json:"node"`
	Emulated    bool   `json:"emulated"`
	Reason      string `json:"reason"`
	Status      Status `json:"status"`
	Error       string `json:"error,omitempty"`
	IndexDigest string `json:"index_digest,omitempty"`
}

// Step is one BuildKit vertex: an instruction run (or found in cache) for a platform.
type Step struct {
	// Number is the step's #N in the log, counted in order of first appearance.
	Number     int        `json:"number"`
	Digest     string     `json:"digest"`
	Name       string     `json:"name"`
	Platform   string     `json:"platform"`
	Cached     bool       `json:"cached"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      string     `json:"error"`
	// Node is the BuildKit node the step ran on (when a build has several).
	Node string `json:"node,omitempty"`
}

// Options are the build's settings besides the Dockerfile and platforms.
type Options struct {
	BuildArgs map[string]string `json:"build_args"`
	Target    string            `json:"target"`
	Labels    map[string]string `json:"labels"`
	NoCache   bool              `json:"no_cache"`
	// DockerfilePath is the Dockerfile's path inside the context, when it comes from there.
	DockerfilePath string     `json:"dockerfile_path"`
	Git            *GitSource `json:"git"`
	// Context says where the context came from; Manifold fills it in.
	Context Source `json:"context"`
	// Secrets names the owner's build secrets handed to RUN --mount=type=secret,id=<name>.
	Secrets []string `json:"secrets"`
	// Provenance asks BuildKit for a SLSA provenance attestation: "min" or "max".
	Provenance string `json:"provenance,omitempty"`
	// SBOM asks BuildKit for an SPDX SBOM attestation.
	SBOM bool `json:"sbom,omitempty"`
	// Placement is the placement policy: prefer-native (default), native-only or any.
	Placement string `json:"placement,omitempty"`
	// RetryOf is the failed build whose platforms that succeeded this one
	// keeps; Manifold fills it in (Service.Retry).
	RetryOf string `json:"retry_of,omitempty"`
}

// Request is what a caller asks to build.
type Request struct {
	Dockerfile string   `json:"dockerfile"`
	Platforms  []string `json:"platforms"`
	Options
	// Tags name the image ("registry/repo:tag"): the pull API serves it under
	// them, downloads are named after the first, and Push sends it there.
	Tags []string `json:"tags"`
	Push bool     `json:"push"`
	// Upload is a context archive already in the content store, if any.
	Upload *Upload `json:"-"`
	// CreatedBy is the user starting the build, CreatedByID their account id
	// and ClientIP the address they came from (for the audit log); handlers set them.
	CreatedBy   string `json:"-"`
	CreatedByID int64  `json:"-"`
	ClientIP    string `json:"-"`
	// keep are the placements a retry keeps, retryOf the build they come from (Service.Retry).
	keep    []Placement
	retryOf string
}

// ListOptions pages through builds newest first: Before is the id of the last
// build of the previous page.
type ListOptions struct {
	Before string
	Limit  int
	// Filter narrows the history; its zero value keeps every build.
	Filter Filter
}

// Result is what a finished solve leaves behind.
type Result struct {
	Status      Status
	Error       string
	ErrorStep   int
	ErrorLine   int
	IndexDigest string
	Manifests   []Manifest
	// Placements say where each platform ran and how it went.
	Placements []Placement
	// Pushes are the pushes made with the build.
	Pushes []Push
	// Blobs is everything the result's index reaches in the store.
	Blobs []BlobRef
	// Dockerfile, when set, is the Dockerfile a build Manifold was not given
	// (a buildx build's) as BuildKit quoted it in the build's error: it is
	// recorded so the error's line can be shown in place.
	Dockerfile string
}

// BlobRef is a blob a build references: part of its image, or its uploaded context.
type BlobRef struct {
	Digest string
	Size   int64
	Image  bool
}

// LogMatch is a log line a search found: its event, and its line number within its step.
type LogMatch struct {
	Event
	Line int
}

// Store keeps builds' lifecycle: the db package implements it with SQLite.
// What the content store, the explorer and the pull API keep about builds
// is declared by those packages (content.Records, explore.Records,
// registry.Records).
type Store interface {
	// CreateBuild records a queued build with the tags it carries (parsed by the Service).
	CreateBuild(ctx context.Context, b *Build, tags []TagRef) error
	// CountQueued counts user's builds that wait in the queue.
	CountQueued(ctx context.Context, user string) (int, error)
	GetBuild(ctx context.Context, id string) (*Build, error)
	ListBuilds(ctx context.Context, opt ListOptions) ([]*Build, error)
	// StartBuild moves a queued build to running and appends events (the
	// caller's StartEvents), numbering them; it reports false when the build
	// was no longer queued.
	StartBuild(ctx context.Context, id string, at time.Time, events []Event) (bool, []Event, error)
	// FinishBuild records the final state and appends events (the caller's FinishEvents).
	FinishBuild(ctx context.Context, id string, at time.Time, r Result, events []Event) ([]Event, error)
	// Record appends events (numbering them) and saves the steps that changed, in one transaction.
	Record(ctx context.Context, id string, events []Event, steps []Step) ([]Event, error)
	// Events reads up to limit events with Seq > after, in order.
	Events(ctx context.Context, id string, after int64, limit int) ([]Event, error)
	// StepEvents reads up to limit events of type t (log lines or warnings) of
	// step #N (any step when step < 0) with Seq > after, in order; from the end
	// (the last limit, still in order) when last is set.
	StepEvents(ctx context.Context, id string, t EventType, step int, after int64, limit int, last bool) ([]Event, error)
	// LogCounts counts each step's log lines, and says the build's last event's Seq.
	LogCounts(ctx context.Context, id string) (counts map[int]int, lastSeq int64, err error)
	// SearchLog finds up to limit log lines whose text holds q (any case),
	// each with its line number within its step, and counts every match.
	SearchLog(ctx context.Context, id, q string, limit int) ([]LogMatch, int, error)
	// Unfinished lists the builds a previous process left running and
	// queued, oldest first; the Service interrupts the one and requeues the other.
	Unfinished(ctx context.Context) (running, queued []string, err error)
	// RecordPush appends a push to a build's history; pushed marks the build pushed.
	RecordPush(ctx context.Context, id string, p Push, pushed bool) error
}
