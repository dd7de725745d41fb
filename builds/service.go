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

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"

	"manifold/outbound"
)

// MaxDockerfileSize bounds an inline Dockerfile.
const MaxDockerfileSize = 1 << 20

// Service is what the HTTP layer calls about a build's lifecycle: it
// validates requests, records builds, hands them to the Runner, follows
// their events and cancels them.
type Service struct {
	store  Store
	runner *Runner
	hub    *Hub
	log    *slog.Logger
	nodes  Nodes

	// uploads is where uploaded contexts are kept (the blob store).
	uploads   ccontent.Store
	workDir   string
	limits    ContextLimits
	frontends FrontendPolicy
	outbound  *outbound.Policy

	// admit makes counting a user's queued builds and adding one a single step.
	admit sync.Mutex

	// jobs owns the background work (checksums, the periodic collection).
	jobs *Jobs
	// accounts checks build secrets and keeps the audit log; nil in tests.
	accounts AccountsPolicy
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	// Nodes reports the BuildKit nodes' health and platforms.
	Nodes Nodes
	// Uploads keeps uploaded contexts (the blob store).
	Uploads ccontent.Store
	// WorkDir holds folder uploads while they are assembled.
	WorkDir string
	// Context bounds uploaded contexts.
	Context ContextLimits
	// Frontends lists the `# syntax=` frontends builds may use; none when empty.
	Frontends FrontendPolicy
	// Outbound is the address policy git contexts and push targets are
	// checked against before a build is queued; nil refuses every non-public address.
	Outbound *outbound.Policy
	// Accounts checks build secrets and writes the audit log; nil (tests) does neither.
	Accounts AccountsPolicy
	// Jobs owns background work; a new one when nil.
	Jobs *Jobs
	Log  *slog.Logger
}

// NewService wires a Service over the runner's store and hub.
func NewService(runner *Runner, cfg ServiceConfig) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Jobs == nil {
		cfg.Jobs = NewJobs()
	}
	return &Service{store: runner.store, runner: runner, hub: runner.hub, log: cfg.Log, nodes: cfg.Nodes,
		uploads: cfg.Uploads, workDir: cfg.WorkDir, limits: cfg.Context.WithDefaults(), frontends: cfg.Frontends,
		outbound: cfg.Outbound, accounts: cfg.Accounts, jobs: cfg.Jobs}
}

// Jobs owns the service's background work; the content service shares it.
func (s *Service) Jobs() *Jobs { return s.jobs }

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
	return nil
}

// RunExternal records a build a client runs on BuildKit itself (see
// Runner.RunExternal), audited as the client's user starting it.
func (s *Service) RunExternal(ctx context.Context, b *Build, started func(*Build), follow func(ctx context.Context, b *Build) Result) error {
	return s.runner.RunExternal(ctx, b, func(b *Build) {
		s.audit(ctx, b.CreatedBy, "build.start", b.ID, "", b.Via+" "+strings.Join(b.Platforms, ","))
		if started != nil {
			started(b)
		}
	}, follow)
}

// Nodes reports every BuildKit node's health and platforms.
func (s *Service) Nodes(ctx context.Context) []NodeStatus {
	if s.nodes == nil {
		return nil
	}
	return s.nodes.Status(ctx)
}

// NodeDetails reports every node's health, platforms, running solves and
// build cache on disk, for the nodes page.
func (s *Service) NodeDetails(ctx context.Context) []NodeStatus {
	if s.nodes == nil {
		return nil
	}
	return s.nodes.Details(ctx)
}

// Platforms lists what the answering nodes can build; down is what the
// first node that does not answer said, or "".
func (s *Service) Platforms(ctx context.Context) (avail []string, down string) {
	if s.nodes == nil {
		return nil, "no BuildKit node is configured"
	}
	for _, n := range s.nodes.RecentStatus(ctx) {
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
	if err := checkInputs(req); err != nil {
		return nil, err
	}
	plats, err := ParsePlatforms(req.Platforms)
	if err != nil {
		return nil, err
	}
	if len(plats) > 16 {
		return nil, CodeErrorf(EInvalid, "invalid_platform", "%d platforms asked for; at most 16 fit in one build", len(plats))
	}
	opts, err := req.Options.Validate()
	if err != nil {
		return nil, err
	}
	if err := s.frontends.CheckBuildArgs(opts.BuildArgs); err != nil {
		return nil, err
	}
	if err := s.frontends.CheckDockerfile([]byte(req.Dockerfile)); err != nil {
		return nil, err
	}
	if opts.Context, err = s.checkContext(ctx, req, opts); err != nil {
		return nil, err
	}
	opts.RetryOf = req.retryOf // never the caller's word
	tags, err := s.checkTags(ctx, req)
	if err != nil {
		return nil, err
	}
	if plats, err = s.choosePlatforms(ctx, plats); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	id := NewID(now)
	tagNames := []string{}
	for _, t := range tags {
		tagNames = append(tagNames, t.Full)
	}
	b := &Build{
		ID:         id,
		Status:     StatusQueued,
		Platforms:  plats,
		CreatedAt:  now,
		Dockerfile: req.Dockerfile,
		Options:    opts,
		Ref:        id,
		Manifests:  []Manifest{},
		Steps:      []Step{},
		Tags:       tagNames,
		PushWanted: req.Push,
		CreatedBy:  req.CreatedBy,
		Placements: req.keep,
	}
	if err := s.admitAndQueue(ctx, b, tags); err != nil {
		return nil, err
	}
	s.log.Info("build queued", "build_id", id, "platforms", strings.Join(plats, ","))
	s.audit(ctx, req.CreatedBy, "build.start", id, req.ClientIP, strings.Join(plats, ","))
	return b, nil
}

// Retry starts a new build of a failed one's inputs that builds again only
// the platforms that failed (on the same node or another, as the placement
// policy — the old one's unless placement is given — decides), and merges
// them with the platforms that succeeded, kept from the failed build.
// platform must be one of those that failed; req carries the caller
// (CreatedBy, CreatedByID, ClientIP).
func (s *Service) Retry(ctx context.Context, id, platform, placement string, req Request) (*Build, error) {
	old, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := old.Rebuildable(); err != nil {
		return nil, err
	}
	if old.Status != StatusFailed {
		return nil, CodeErrorf(EConflict, "not_failed", "build %s is %s: only a failed build's platforms can be retried; use Rebuild to build it all again", id, old.Status)
	}
	p, err := ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	var keep []Placement
	var failed []string
	for _, pl := range old.Placements {
		if pl.Status == StatusSucceeded && pl.IndexDigest != "" {
			keep = append(keep, Placement{Platform: pl.Platform, Node: pl.Node, Emulated: pl.Emulated,
				Reason: "kept from build " + old.ID, Status: StatusSucceeded, IndexDigest: pl.IndexDigest})
		} else {
			failed = append(failed, pl.Platform)
		}
	}
	if !slices.Contains(failed, p) {
		if len(failed) == 0 {
			return nil, CodeErrorf(EConflict, "nothing_to_retry", "build %s failed before any platform was placed on a node; use Rebuild", id)
		}
		return nil, CodeErrorf(EInvalid, "invalid_platform", "platform %s of build %s did not fail; the platforms to retry are %s", p, id, strings.Join(failed, ", "))
	}
	next := old.Request()
	next.CreatedBy, next.CreatedByID, next.ClientIP = req.CreatedBy, req.CreatedByID, req.ClientIP
	if placement != "" {
		next.Placement = placement
	}
	next.keep, next.retryOf = keep, old.ID
	return s.Start(ctx, next)
}

// checkInputs checks that a request names one Dockerfile and at most one context.
func checkInputs(req Request) error {
	df := req.Dockerfile
	hasContext := req.Upload != nil || req.Git != nil
	switch {
	case req.DockerfilePath != "" && !hasContext:
		return CodeErrorf(EInvalid, "invalid_path", "dockerfile_path names a file in the context, but there is no context; upload one or give \"git\"")
	case strings.TrimSpace(df) == "" && !hasContext:
		return CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is empty; give the Dockerfile text in \"dockerfile\", starting with a FROM line, or a context that holds one")
	case df != "" && strings.TrimSpace(df) == "":
		return CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is blank; give its text, starting with a FROM line, or leave \"dockerfile\" out to use the context's")
	case len(df) > MaxDockerfileSize:
		return CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile is %d bytes; the limit is %d bytes", len(df), MaxDockerfileSize)
	case strings.ContainsRune(df, 0):
		return CodeErrorf(EInvalid, "invalid_dockerfile", "the Dockerfile contains a NUL byte; send it as plain text")
	case req.Upload != nil && req.Git != nil:
		return CodeErrorf(EInvalid, "invalid_context", "give either an uploaded context or a git context, not both")
	case req.DockerfilePath != "" && df != "":
		return CodeErrorf(EInvalid, "invalid_path", "give either the Dockerfile text or dockerfile_path, not both")
	}
	return nil
}

// checkContext checks the build's context and says where it comes from: an
// upload is scanned (and must hold the Dockerfile when no text was given),
// a git host must pass the outbound policy.
func (s *Service) checkContext(ctx context.Context, req Request, opts Options) (Source, error) {
	switch {
	case req.Upload != nil:
		want := ""
		if req.Dockerfile == "" {
			want = opts.DockerfilePath
			if want == "" {
				want = "Dockerfile"
			}
		}
		files, found, err := ScanContext(ctx, s.uploads, req.Upload.Digest, s.limits, want)
		if err != nil {
			return Source{}, err
		}
		if want != "" && !found[want] {
			return Source{}, CodeErrorf(EInvalid, "invalid_path", "the context has no file %q; give dockerfile_path, or the Dockerfile text in \"dockerfile\"", want)
		}
		return Source{Type: "upload", Digest: req.Upload.Digest, Size: req.Upload.Size, Files: files}, nil
	case opts.Git != nil:
		if err := CheckGit(ctx, s.outbound, *opts.Git); err != nil {
			return Source{}, err
		}
		return Source{Type: "git"}, nil
	}
	return Source{Type: "none"}, nil
}

// checkTags parses the tags; when the build pushes, each registry must pass
// the outbound policy now, before anything is stored (the push runs after
// the build, from the store).
func (s *Service) checkTags(ctx context.Context, req Request) ([]TagRef, error) {
	tags, err := ParseTags(req.Tags)
	if err != nil {
		return nil, err
	}
	if req.Push && len(tags) == 0 {
		return nil, CodeErrorf(EInvalid, "invalid_tag", "push needs at least one tag naming where to push, like registry.example.com/team/app:1.2")
	}
	if req.Push {
		for _, t := range tags {
			if err := CheckRegistry(ctx, s.outbound, "push target "+t.Full+": registry", t.Host()); err != nil {
				return nil, err
			}
		}
	}
	return tags, nil
}

// choosePlatforms fills in the first available platform when none was asked
// for, and refuses a platform no answering node can build. When no node
// answers, the build is still recorded: it fails with a message that says
// BuildKit is unreachable, rather than the request hanging.
func (s *Service) choosePlatforms(ctx context.Context, plats []string) ([]string, error) {
	avail, _ := s.Platforms(ctx)
	reachable := len(avail) > 0
	if len(plats) == 0 {
		if reachable {
			return []string{avail[0]}, nil
		}
		return []string{"linux/" + runtime.GOARCH}, nil
	}
	if reachable {
		for _, p := range plats {
			if !slices.Contains(avail, p) {
				return nil, CodeErrorf(EInvalid, "unsupported_platform",
					"no BuildKit node can build %s; available platforms: %s", p, strings.Join(avail, ", "))
			}
		}
	}
	return plats, nil
}

// admitAndQueue records b and queues it, unless its user already has as
// many builds waiting as one user may: counting and recording are one step.
func (s *Service) admitAndQueue(ctx context.Context, b *Build, tags []TagRef) error {
	s.admit.Lock()
	defer s.admit.Unlock()
	if max := s.runner.maxQueued; max > 0 {
		n, err := s.store.CountQueued(ctx, b.CreatedBy)
		if err != nil {
			return err
		}
		if n >= max {
			return CodeErrorf(ETooMany, "queue_full", "you already have %d builds waiting in the queue, the most one user may have; wait for one to start, or cancel one", n)
		}
	}
	if err := s.store.CreateBuild(ctx, b, tags); err != nil {
		return fmt.Errorf("record build: %w", err)
	}
	s.runner.Enqueue(b.ID)
	return nil
}

// AccountsPolicy is what the Service asks of the account service: whether
// the build secrets a request names are its user's, and recording what
// users did in the audit log.
type AccountsPolicy interface {
	CheckSecrets(ctx context.Context, userID int64, names []string) error
	Audit(ctx context.Context, actor, action, target, ip, detail string) error
}

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
func (s *Service) ContextLimits() ContextLimits { return s.limits }

// IngestContext stores an uploaded context archive (tar or tar.gz) in the content store.
func (s *Service) IngestContext(ctx context.Context, r io.Reader) (Upload, error) {
	return IngestContext(ctx, s.uploads, r, s.limits.MaxBytes)
}

// DiscardUpload removes an upload that no build took, if this request wrote it.
func (s *Service) DiscardUpload(u *Upload) {
	if u == nil || !u.Fresh {
		return
	}
	if d, err := digest.Parse(u.Digest); err == nil {
		_ = s.uploads.Delete(context.Background(), d)
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
