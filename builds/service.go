package builds

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"time"
)

// MaxDockerfileSize bounds an inline Dockerfile.
const MaxDockerfileSize = 1 << 20

// Service is what the HTTP layer calls: it validates requests, records builds
// and hands them to the Runner.
type Service struct {
	store  Store
	runner *Runner
	node   *Node
	log    *slog.Logger
}

// NewService wires a Service. The runner must use the same store and node.
func NewService(store Store, runner *Runner, node *Node, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, runner: runner, node: node, log: log}
}

// Recover runs once at start-up, before the runner starts: builds a previous
// process left running become interrupted, and queued ones are queued again.
func (s *Service) Recover(ctx context.Context) error {
	queued, err := s.store.Recover(ctx, time.Now().UTC())
	if err != nil {
		return err
	}
	for _, id := range queued {
		s.runner.Enqueue(id)
	}
	if len(queued) > 0 {
		s.log.Info("requeued builds from the previous run", "count", len(queued))
	}
	return nil
}

// Nodes reports every BuildKit node's health and platforms.
func (s *Service) Nodes(ctx context.Context) []NodeStatus {
	return []NodeStatus{s.node.Status(ctx, 3*time.Second)}
}

// Platforms lists the platforms the reachable nodes can build, or nil when none answers.
func (s *Service) Platforms(ctx context.Context) []string {
	var out []string
	for _, n := range s.Nodes(ctx) {
		for _, p := range n.Platforms {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// Start validates req, records a queued build and queues it.
func (s *Service) Start(ctx context.Context, req Request) (*Build, error) {
	df := req.Dockerfile
	if strings.TrimSpace(df) == "" {
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is empty; give the Dockerfile text in \"dockerfile\", starting with a FROM line")
	}
	if len(df) > MaxDockerfileSize {
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is %d bytes; the limit is %d bytes", len(df), MaxDockerfileSize)
	}
	if strings.ContainsRune(df, 0) {
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile contains a NUL byte; send it as plain text")
	}
	plats, err := ParsePlatforms(req.Platforms)
	if err != nil {
		return nil, err
	}
	opts, err := req.Options.Validate()
	if err != nil {
		return nil, err
	}
	if len(plats) > 16 {
		return nil, CodeErrorf(EInvalid, "invalid_platform", "%d platforms asked for; at most 16 fit in one build", len(plats))
	}
	nodes := s.Nodes(ctx)
	var avail []string
	reachable := false
	for _, n := range nodes {
		if n.OK {
			reachable = true
			for _, p := range n.Platforms {
				if !slices.Contains(avail, p) {
					avail = append(avail, p)
				}
			}
		}
	}
	if len(plats) == 0 {
		if reachable && len(avail) > 0 {
			plats = []string{avail[0]}
		} else {
			plats = []string{"linux/" + runtime.GOARCH}
		}
	}
	// When no daemon answers, the build is still recorded: it fails with a
	// message that says BuildKit is unreachable, rather than the request hanging.
	if reachable {
		for _, p := range plats {
			if !slices.Contains(avail, p) {
				return nil, CodeErrorf(EInvalid, "unsupported_platform",
					"no BuildKit node can build %s; available platforms: %s", p, strings.Join(avail, ", "))
			}
		}
	}
	now := time.Now().UTC()
	id := NewID(now)
	b := &Build{
		ID:         id,
		Status:     StatusQueued,
		Platforms:  plats,
		CreatedAt:  now,
		Dockerfile: df,
		Options:    opts,
		Ref:        id,
		Manifests:  []Manifest{},
		Steps:      []Step{},
		Tags:       []string{},
	}
	if err := s.store.CreateBuild(ctx, b); err != nil {
		return nil, fmt.Errorf("record build: %w", err)
	}
	s.runner.Enqueue(id)
	s.log.Info("build queued", "build_id", id, "platforms", strings.Join(plats, ","))
	return b, nil
}

// Get returns one build with its manifests and steps.
func (s *Service) Get(ctx context.Context, id string) (*Build, error) {
	if !ValidID(id) {
		return nil, CodeErrorf(ENotFound, "build_not_found", "no build has the id %q", id)
	}
	return s.store.GetBuild(ctx, id)
}

// List returns builds newest first, a page at a time.
func (s *Service) List(ctx context.Context, opt ListOptions) ([]*Build, error) {
	if opt.Limit <= 0 {
		opt.Limit = 50
	}
	if opt.Limit > 500 {
		return nil, CodeErrorf(EInvalid, "invalid_limit", "limit %d is too large; ask for at most 500 builds a page", opt.Limit)
	}
	if opt.Before != "" && !ValidID(opt.Before) {
		return nil, CodeErrorf(EInvalid, "invalid_cursor", "before=%q is not a build id; pass the id of the last build of the previous page", opt.Before)
	}
	return s.store.ListBuilds(ctx, opt)
}

// Log returns a build's log lines.
func (s *Service) Log(ctx context.Context, id string) ([]LogLine, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	return s.store.Log(ctx, id)
}

// QueuePosition is a queued build's place in line (1 = next), or 0.
func (s *Service) QueuePosition(id string) int { return s.runner.Position(id) }

// Cancel stops a queued or running build. A finished build cannot be cancelled.
func (s *Service) Cancel(ctx context.Context, id string) (*Build, error) {
	b, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.Status.Final() {
		return nil, CodeErrorf(EConflict, "build_finished", "build %s already %s; only queued or running builds can be cancelled", id, b.Status)
	}
	wasQueued, wasRunning := s.runner.Cancel(id)
	if wasQueued || (!wasRunning && b.Status == StatusQueued) {
		if err := s.store.FinishBuild(ctx, id, time.Now().UTC(), Result{Status: StatusCanceled, Error: "canceled by user before it started"}); err != nil {
			return nil, err
		}
	}
	if wasRunning {
		// The runner records the final state; wait briefly so the answer shows it.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			nb, err := s.store.GetBuild(ctx, id)
			if err == nil && nb.Status.Final() {
				return nb, nil
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return s.store.GetBuild(ctx, id)
}
