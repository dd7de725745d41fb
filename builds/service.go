package builds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxDockerfileSize bounds an inline Dockerfile.
const MaxDockerfileSize = 1 << 20

// Service is what the HTTP layer calls: it validates requests, records builds
// and hands them to the Runner.
type Service struct {
	store  Store
	runner *Runner
	hub    *Hub
	node   *Node
	log    *slog.Logger
	reach  reachCache
	// referrers caches, per index, the manifests that name a subject.
	referrers referrerCache
	// walk is the storage view's last walk of the content store.
	walk storeWalk
	// listing bounds layer listings.
	listing ListingLimits

	// admit makes counting a user's queued builds and adding one a single step.
	admit sync.Mutex

	// jobs owns the background work (checksums, the periodic collection).
	jobs *Jobs
	// accounts checks build secrets and keeps the audit log; nil in tests.
	accounts AccountsPolicy

	summing    sync.Mutex
	summingIDs map[string]bool
	sumSlots   chan struct{} // one checksum computation at a time

	// onCollect is told of every finished garbage collection (metrics).
	onCollect func(GCReport)
}

// NewService wires a Service over the runner's store, hub and node.
func NewService(runner *Runner, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: runner.store, runner: runner, hub: runner.hub, node: runner.node, log: log, sumSlots: make(chan struct{}, 1), listing: runner.listing, jobs: NewJobs()}
}

// Recover runs once at start-up, before the runner starts: builds a previous
// process left running become interrupted, and queued ones are queued again.
func (s *Service) Recover(ctx context.Context) error {
	running, queued, err := s.store.Unfinished(ctx)
	if err != nil {
		return err
	}
	for _, id := range running {
		b, err := s.store.GetBuild(ctx, id)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		res := Result{Status: StatusInterrupted, Error: "Manifold stopped while the build was running; start it again with Rebuild"}
		if _, err := s.store.FinishBuild(ctx, id, now, res, FinishEvents(res, b.StartedAt, now)); err != nil {
			return fmt.Errorf("interrupt build %s: %w", id, err)
		}
	}
	for _, id := range queued {
		s.runner.Enqueue(id)
	}
	if len(queued) > 0 {
		s.log.Info("requeued builds from the previous run", "count", len(queued))
	}
	return s.indexOld(ctx)
}

// imageBlobs turns a walk from an index into the build's image blobs.
func imageBlobs(descs []ocispec.Descriptor) []BlobRef {
	out := make([]BlobRef, 0, len(descs))
	for _, d := range descs {
		out = append(out, BlobRef{Digest: d.Digest.String(), Size: d.Size, Image: true})
	}
	return out
}

// indexOld records, once, the blobs and pull names of builds made before
// Manifold kept them: the pull API serves only what a build reaches, and
// the storage view adds up from these rows.
func (s *Service) indexOld(ctx context.Context) error {
	done := 0
	for {
		batch, err := s.store.Unindexed(ctx, 200)
		if err != nil || len(batch) == 0 {
			if done > 0 {
				s.log.Info("indexed builds from before blob records", "count", done)
			}
			return err
		}
		list := make([]BuildIndex, 0, len(batch))
		for _, u := range batch {
			var blobs []BlobRef
			if u.ContextDigest != "" {
				blobs = append(blobs, BlobRef{Digest: u.ContextDigest, Size: u.ContextSize})
			}
			if u.Status == StatusSucceeded && u.IndexDigest != "" {
				// A result whose blobs are gone (collected) simply serves nothing.
				if descs, err := s.reach.get(ctx, s.runner.content, u.IndexDigest); err == nil {
					blobs = append(blobs, imageBlobs(descs)...)
				}
			}
			tags, err := ParseTags(u.Tags)
			if err != nil {
				tags = nil // stored tags were checked when the build was made
			}
			list = append(list, BuildIndex{ID: u.ID, Tags: tags, Blobs: blobs})
		}
		if err := s.store.IndexBuilds(ctx, list); err != nil {
			return err
		}
		done += len(list)
	}
}

// Nodes reports every BuildKit node's health and platforms.
func (s *Service) Nodes(ctx context.Context) []NodeStatus {
	return []NodeStatus{s.node.Status(ctx, 3*time.Second)}
}

// Platforms lists what the answering nodes can build; down is what the
// first node that does not answer said, or "".
func (s *Service) Platforms(ctx context.Context) (avail []string, down string) {
	for _, n := range []NodeStatus{s.node.RecentStatus(ctx, 3*time.Second)} {
		if !n.OK {
			if down == "" {
				down = n.Error
			}
			continue
		}
		for _, p := range n.Platforms {
			if !slices.Contains(avail, p) {
				avail = append(avail, p)
			}
		}
	}
	return avail, down
}

// Start validates req, records a queued build and queues it. An upload the
// request brought is removed again when the request is refused.
func (s *Service) Start(ctx context.Context, req Request) (*Build, error) {
	b, err := s.start(ctx, req)
	if err != nil {
		s.DiscardUpload(req.Upload)
	}
	return b, err
}

func (s *Service) start(ctx context.Context, req Request) (*Build, error) {
	if len(req.Secrets) > 0 && s.accounts != nil {
		// The secrets a build names must be its user's own.
		if err := s.accounts.CheckSecrets(ctx, req.CreatedByID, req.Secrets); err != nil {
			return nil, err
		}
	}
	df := req.Dockerfile
	hasContext := req.Upload != nil || req.Git != nil
	switch {
	case req.DockerfilePath != "" && !hasContext:
		return nil, CodeErrorf(EInvalid, "invalid_path", "dockerfile_path names a file in the context, but there is no context; upload one or give \"git\"")
	case strings.TrimSpace(df) == "" && !hasContext:
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is empty; give the Dockerfile text in \"dockerfile\", starting with a FROM line, or a context that holds one")
	case df != "" && strings.TrimSpace(df) == "":
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is blank; give its text, starting with a FROM line, or leave \"dockerfile\" out to use the context's")
	case len(df) > MaxDockerfileSize:
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is %d bytes; the limit is %d bytes", len(df), MaxDockerfileSize)
	case strings.ContainsRune(df, 0):
		return nil, CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile contains a NUL byte; send it as plain text")
	case req.Upload != nil && req.Git != nil:
		return nil, CodeErrorf(EInvalid, "invalid_context", "give either an uploaded context or a git context, not both")
	case req.DockerfilePath != "" && df != "":
		return nil, CodeErrorf(EInvalid, "invalid_path", "give either the Dockerfile text or dockerfile_path, not both")
	}
	plats, err := ParsePlatforms(req.Platforms)
	if err != nil {
		return nil, err
	}
	opts, err := req.Options.Validate()
	if err != nil {
		return nil, err
	}
	if err := s.runner.engine.frontends.CheckBuildArgs(opts.BuildArgs); err != nil {
		return nil, err
	}
	if err := s.runner.engine.frontends.CheckDockerfile([]byte(df)); err != nil {
		return nil, err
	}
	opts.Context = Source{Type: "none"}
	switch {
	case req.Upload != nil:
		want := ""
		if df == "" {
			want = opts.DockerfilePath
			if want == "" {
				want = "Dockerfile"
			}
		}
		files, found, err := ScanContext(ctx, s.runner.content, req.Upload.Digest, s.runner.limits, want)
		if err != nil {
			return nil, err
		}
		if want != "" && !found[want] {
			return nil, CodeErrorf(EInvalid, "invalid_path", "the context has no file %q; give dockerfile_path, or the Dockerfile text in \"dockerfile\"", want)
		}
		opts.Context = Source{Type: "upload", Digest: req.Upload.Digest, Size: req.Upload.Size, Files: files}
	case opts.Git != nil:
		if err := s.runner.engine.checkGit(ctx, *opts.Git); err != nil {
			return nil, err
		}
		opts.Context = Source{Type: "git"}
	}
	if len(plats) > 16 {
		return nil, CodeErrorf(EInvalid, "invalid_platform", "%d platforms asked for; at most 16 fit in one build", len(plats))
	}
	tags, err := ParseTags(req.Tags)
	if err != nil {
		return nil, err
	}
	if req.Push && len(tags) == 0 {
		return nil, CodeErrorf(EInvalid, "invalid_tag", "push needs at least one tag naming where to push, like registry.example.com/team/app:1.2")
	}
	tagNames := []string{}
	for _, t := range tags {
		if req.Push {
			// Refused before anything is stored: the push runs after the build, from the store.
			if err := s.runner.engine.checkRegistry(ctx, "push target "+t.Full+": registry", t.Host()); err != nil {
				return nil, err
			}
		}
		tagNames = append(tagNames, t.Full)
	}
	avail, _ := s.Platforms(ctx)
	reachable := len(avail) > 0
	if len(plats) == 0 {
		if reachable {
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
		Tags:       tagNames,
		PushWanted: req.Push,
		CreatedBy:  req.CreatedBy,
	}
	s.admit.Lock()
	defer s.admit.Unlock()
	if max := s.runner.maxQueued; max > 0 {
		n, err := s.store.CountQueued(ctx, req.CreatedBy)
		if err != nil {
			return nil, err
		}
		if n >= max {
			return nil, CodeErrorf(ETooMany, "queue_full", "you already have %d builds waiting in the queue, the most one user may have; wait for one to start, or cancel one", n)
		}
	}
	if err := s.store.CreateBuild(ctx, b, tags); err != nil {
		return nil, fmt.Errorf("record build: %w", err)
	}
	s.runner.Enqueue(id)
	s.log.Info("build queued", "build_id", id, "platforms", strings.Join(plats, ","))
	s.audit(ctx, req.CreatedBy, "build.start", id, req.ClientIP, strings.Join(plats, ","))
	return b, nil
}

// AccountsPolicy is what the Service asks of the account service: whether
// the build secrets a request names are its user's, and recording what
// users did in the audit log.
type AccountsPolicy interface {
	CheckSecrets(ctx context.Context, userID int64, names []string) error
	Audit(ctx context.Context, actor, action, target, ip, detail string) error
}

// UseAccounts has the Service check build secrets and write the audit log
// through a; without it (tests) neither happens.
func (s *Service) UseAccounts(a AccountsPolicy) { s.accounts = a }

// audit records an action; a failure to record it is logged, never dropped.
func (s *Service) audit(ctx context.Context, actor, action, target, ip, detail string) {
	if s.accounts == nil {
		return
	}
	if err := s.accounts.Audit(ctx, actor, action, target, ip, detail); err != nil {
		s.log.Error("audit", "action", action, "target", target, "err", err)
	}
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

// WriteLog writes a build's whole log as plain text, in buildctl's style.
func (s *Service) WriteLog(ctx context.Context, id string, w io.Writer) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	p := NewPlainLog(w)
	return s.eachEvent(ctx, id, 0, func(e Event) error { return p.Add(e) })
}

// Events returns every stored event of a build, in order.
func (s *Service) Events(ctx context.Context, id string) ([]Event, error) {
	var out []Event
	err := s.eachEvent(ctx, id, 0, func(e Event) error { out = append(out, e); return nil })
	return out, err
}

// eventPage is how many events are read from the database at a time.
const eventPage = 1000

func (s *Service) eachEvent(ctx context.Context, id string, after int64, fn func(Event) error) error {
	for {
		events, err := s.store.Events(ctx, id, after, eventPage)
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(events) < eventPage {
			return nil
		}
	}
}

// Shutdown stops the background jobs and waits for them; call it after the
// HTTP server stopped and before the database closes.
func (s *Service) Shutdown() { s.jobs.Shutdown() }

// CollectEvery applies retention and collects garbage every interval until Shutdown.
func (s *Service) CollectEvery(interval time.Duration, ret Retention) {
	s.jobs.Every(interval, func(ctx context.Context) {
		if _, err := s.CollectGarbage(ctx, ret); err != nil && ctx.Err() == nil {
			s.log.Error("garbage collection", "err", err)
		}
	})
}

// CloseWatchers ends every Watch, and any started later: the server is
// shutting down.
func (s *Service) CloseWatchers() { s.hub.Close() }

// ErrWatcherDropped ends a Watch whose consumer fell too far behind; it
// reconnects with the last event id it saw and nothing is lost.
var ErrWatcherDropped = errors.New("watcher fell behind and was dropped")

// Watch replays a build's events after the given sequence number from the
// database, then follows new ones live, calling fn for each, until the done
// event, ctx ending, or the watcher being dropped. fn first gets an
// EventOpen once the build is known (an unknown build is an error before
// any call), and an EventPing when nothing happened for keepAlive.
func (s *Service) Watch(ctx context.Context, id string, after int64, keepAlive time.Duration, fn func(Event) error) error {
	// Subscribe before loading and replaying: an event persisted meanwhile
	// arrives twice at most, and the sequence number filters the second copy
	// out; a build not final when loaded sends its final events through the hub.
	sub := s.hub.Subscribe(id)
	defer s.hub.Unsubscribe(sub)
	b, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := fn(Event{Type: EventOpen, Time: time.Now().UTC()}); err != nil {
		return err
	}
	last, done := after, false
	replay := func() error {
		return s.eachEvent(ctx, id, last, func(e Event) error {
			last = e.Seq
			done = done || e.Type == EventDone
			return fn(e)
		})
	}
	if err := replay(); err != nil || done {
		return err
	}
	if b.Status.Final() {
		// It had finished when loaded: whatever it wrote was replayed, and a
		// build whose done event was never written still ends the stream.
		return fn(NewEvent(EventDone, StatusEvent{Status: b.Status, Error: b.Error}))
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if err := fn(Event{Type: EventPing, Time: time.Now().UTC()}); err != nil {
				return err
			}
		case e, ok := <-sub.C:
			if !ok {
				return ErrWatcherDropped
			}
			if e.Seq <= last {
				continue
			}
			last = e.Seq
			if err := fn(e); err != nil {
				return err
			}
			if e.Type == EventDone {
				return nil
			}
			ping.Reset(keepAlive)
		}
	}
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
	wasQueued, finished := s.runner.Cancel(id)
	if wasQueued || (finished == nil && b.Status == StatusQueued) {
		now, res := time.Now().UTC(), Result{Status: StatusCanceled, Error: "canceled by user before it started"}
		events, err := s.store.FinishBuild(ctx, id, now, res, FinishEvents(res, nil, now))
		if err != nil {
			return nil, err
		}
		s.hub.Publish(id, events)
	}
	if finished != nil {
		// The runner records the final state; wait briefly so the answer shows it.
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return s.store.GetBuild(ctx, id)
}

// ContextLimits are the bounds uploaded contexts must keep.
func (s *Service) ContextLimits() ContextLimits { return s.runner.limits }

// IngestContext stores an uploaded context archive (tar or tar.gz) in the content store.
func (s *Service) IngestContext(ctx context.Context, r io.Reader) (Upload, error) {
	return IngestContext(ctx, s.runner.content, r, s.runner.limits.MaxBytes)
}

// DiscardUpload removes an upload that no build took, if this request wrote it.
func (s *Service) DiscardUpload(u *Upload) {
	if u == nil || !u.Fresh {
		return
	}
	if d, err := digest.Parse(u.Digest); err == nil {
		_ = s.runner.content.Delete(context.Background(), d)
	}
}

// Request returns the request that would build b again, with the same inputs.
func (b *Build) Request() Request {
	r := Request{Dockerfile: b.Dockerfile, Platforms: b.Platforms, Options: b.Options, Tags: b.Tags, Push: b.PushWanted, CreatedBy: b.CreatedBy}
	if b.Context.Type == "upload" {
		r.Upload = &Upload{Digest: b.Context.Digest, Size: b.Context.Size}
	}
	r.Options.Context = Source{}
	return r
}
