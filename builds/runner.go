package builds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// errCanceledByUser is the cause a user's cancel gives a solve's context,
// so the finished solve knows why it ended (shutdown ends the app context).
var errCanceledByUser = errors.New("canceled by user")

// Runner executes queued builds on BuildKit, at most Limit at a time, in FIFO order.
type Runner struct {
	store Store
	hub   *Hub
	log   *slog.Logger
	limit int
	// maxQueued bounds one user's waiting builds (Service.Start checks it).
	maxQueued int

	// solver runs the builds; hold keeps the blob store's collection away
	// from a solve until its result is recorded.
	solver  Solver
	hold    func() (release func())
	recover func(error) bool

	mu      sync.Mutex
	queue   []string
	running map[string]runningBuild
	wake    chan struct{}
	wg      sync.WaitGroup
}

// Solver runs one build and returns its final result; the Runner owns the
// queue, the concurrency limit, cancellation and recording the outcome.
// builds/buildkit implements it; tests give the Runner a fake.
type Solver interface {
	Solve(ctx context.Context, b *Build, log *slog.Logger) Result
}

// RunnerConfig wires a Runner.
type RunnerConfig struct {
	Store Store
	Hub   *Hub
	Log   *slog.Logger
	Limit int // builds running at once; 2 when zero
	// MaxQueuedPerUser bounds how many builds one user may have waiting; 10 when zero.
	MaxQueuedPerUser int
	// Solver runs each build: BuildKit (builds/buildkit), or a test's fake.
	Solver Solver
	// Hold, when set, is called before each solve and what it returns once
	// the result is recorded: the blob store's collection waits meanwhile.
	Hold func() (release func())
	// Recover, when set, is asked when recording a build's end fails; true
	// means it made room (released the full disk's reserve) and the Runner
	// tries once more.
	Recover func(err error) bool
}

// NewRunner returns a Runner; call Start to begin taking builds.
func NewRunner(cfg RunnerConfig) *Runner {
	if cfg.MaxQueuedPerUser <= 0 {
		cfg.MaxQueuedPerUser = 10
	}
	if cfg.Limit <= 0 {
		cfg.Limit = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Hub == nil {
		cfg.Hub = NewHub()
	}
	if cfg.Hold == nil {
		cfg.Hold = func() func() { return func() {} }
	}
	return &Runner{
		store: cfg.Store, hub: cfg.Hub, log: cfg.Log, limit: cfg.Limit, maxQueued: cfg.MaxQueuedPerUser,
		solver: cfg.Solver, hold: cfg.Hold, recover: cfg.Recover,
		running: map[string]runningBuild{},
		wake:    make(chan struct{}, 1),
	}
}

// Start launches the workers. They stop when ctx ends; Wait waits for them.
func (r *Runner) Start(ctx context.Context) {
	for range r.limit {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				id, ok := r.next(ctx)
				if !ok {
					return
				}
				r.run(ctx, id)
			}
		}()
	}
}

// Wait blocks until every worker has returned (after Start's context ended).
func (r *Runner) Wait() { r.wg.Wait() }

// Enqueue adds a queued build to the end of the line.
func (r *Runner) Enqueue(id string) {
	r.mu.Lock()
	r.queue = append(r.queue, id)
	r.mu.Unlock()
	r.signal()
}

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Position is a queued build's place in line (1 = next), or 0 when it is not waiting.
func (r *Runner) Position(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Index(r.queue, id) + 1
}

// runningBuild is a build a worker runs: how to cancel it, and a channel
// closed once its final state is recorded.
type runningBuild struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Cancel takes a build out of the queue or cancels its running solve. It
// reports whether the build was queued, and for a running build returns a
// channel closed once its final state is recorded (nil otherwise).
func (r *Runner) Cancel(id string) (wasQueued bool, finished <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.queue, id); i >= 0 {
		r.queue = slices.Delete(r.queue, i, i+1)
		return true, nil
	}
	if rb, ok := r.running[id]; ok {
		rb.cancel(errCanceledByUser)
		return false, rb.done
	}
	return false, nil
}

func (r *Runner) next(ctx context.Context) (string, bool) {
	for {
		if ctx.Err() != nil {
			return "", false // shutting down: what waits stays queued for the next start
		}
		r.mu.Lock()
		if len(r.queue) > 0 {
			id := r.queue[0]
			r.queue = r.queue[1:]
			more := len(r.queue) > 0
			r.mu.Unlock()
			if more {
				r.signal() // another worker may take the next one
			}
			return id, true
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-r.wake:
		}
	}
}

// run executes one build from start to its final state.
func (r *Runner) run(appCtx context.Context, id string) {
	log := r.log.With("build_id", id)
	b, err := r.store.GetBuild(appCtx, id)
	if err != nil {
		if appCtx.Err() == nil {
			log.Error("load queued build", "err", err)
		}
		return
	}
	r.execute(appCtx, id, log, func() (time.Time, bool) {
		startedAt := time.Now().UTC()
		started, events, err := r.store.StartBuild(appCtx, id, startedAt, StartEvents(startedAt))
		if err != nil || !started {
			if err != nil {
				log.Error("start build", "err", err)
			}
			return startedAt, false
		}
		r.hub.Publish(id, events)
		log.Info("build started", "platforms", strings.Join(b.Platforms, ","))
		return startedAt, true
	}, func(ctx context.Context) Result { return r.solver.Solve(ctx, b, log) })
}

// execute runs build id as a running build: Cancel reaches solve's
// context from before start records it running until its final state is
// recorded. start records the start (false: the build is not to run); the
// blob store's collection waits while solve runs; a solve whose context
// ended is recorded canceled (by a user) or interrupted (shutdown).
func (r *Runner) execute(appCtx context.Context, id string, log *slog.Logger, start func() (time.Time, bool), solve func(ctx context.Context) Result) {
	ctx, cancel := context.WithCancelCause(appCtx)
	defer cancel(nil)
	rb := runningBuild{cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.running[id] = rb
	r.mu.Unlock()
	defer func() { // after the final state is recorded (or could not be)
		r.mu.Lock()
		delete(r.running, id)
		r.mu.Unlock()
		close(rb.done)
	}()
	startedAt, ok := start()
	if !ok {
		return
	}
	defer r.hold()()
	res := solve(ctx)
	if cause := context.Cause(ctx); cause != nil && res.Status != StatusSucceeded {
		switch {
		case errors.Is(cause, errCanceledByUser):
			res = Result{Status: StatusCanceled, Error: "canceled by user"}
		case appCtx.Err() != nil:
			res = Result{Status: StatusInterrupted, Error: "Manifold stopped while the build was running"}
		}
	}
	r.finish(appCtx, id, log, res, startedAt)
}

// finish records a build's pushes and its final state, and publishes it.
func (r *Runner) finish(appCtx context.Context, id string, log *slog.Logger, res Result, startedAt time.Time) {
	// The app context may be over: finishing must still be recorded.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(appCtx), 10*time.Second)
	defer fcancel()
	allOK := true
	for _, p := range res.Pushes {
		allOK = allOK && p.OK
	}
	for i, p := range res.Pushes {
		// The build counts as pushed once its last push is recorded, if all worked.
		if err := r.store.RecordPush(fctx, id, p, allOK && i == len(res.Pushes)-1); err != nil {
			log.Error("record push", "err", err)
		}
	}
	finishedAt := time.Now().UTC()
	events, err := r.store.FinishBuild(fctx, id, finishedAt, res, FinishEvents(res, &startedAt, finishedAt))
	if err != nil && r.recover != nil && r.recover(err) {
		// Room was made (a full disk): the build's end must not be lost.
		log.Warn("finish build failed; trying again", "err", err)
		events, err = r.store.FinishBuild(fctx, id, finishedAt, res, FinishEvents(res, &startedAt, finishedAt))
	}
	if err != nil {
		log.Error("finish build", "err", err)
		return
	}
	r.hub.Publish(id, events)
	log.Info("build finished", "status", res.Status, "index_digest", res.IndexDigest, "error", res.Error)
}

// RunExternal records a build that a client runs on BuildKit itself — a
// `docker buildx` solve through the builder endpoint. b is recorded as
// running at once (it never waits in Manifold's queue, nor counts against its
// limit: the client runs it); follow follows the solve and returns how it
// went, recorded as any build's end. Cancel works on it as on a build
// Manifold runs: it cancels follow's context. RunExternal returns when the
// build's end is recorded; started is called once b is.
func (r *Runner) RunExternal(appCtx context.Context, b *Build, started func(*Build), follow func(ctx context.Context, b *Build) Result) error {
	now := time.Now().UTC()
	b.ID = NewID(now)
	b.Ref = cmp.Or(b.Ref, b.ID)
	b.Status, b.CreatedAt, b.StartedAt = StatusRunning, now, &now
	if b.Manifests == nil {
		b.Manifests, b.Steps, b.Pushes = []Manifest{}, []Step{}, []Push{}
	}
	log := r.log.With("build_id", b.ID, "via", b.Via)
	// The names it pushes to are pull names too (when they parse as tags).
	refs, _ := ParseTags(b.Tags)
	// Recorded running, never queued: a restart finds it interrupted, and
	// never queues a build it cannot run.
	if err := r.store.CreateBuild(appCtx, b, refs); err != nil {
		return fmt.Errorf("record build: %w", err)
	}
	var startErr error
	r.execute(appCtx, b.ID, log, func() (time.Time, bool) {
		events, err := r.store.Record(appCtx, b.ID, StartEvents(now), nil)
		if err != nil {
			startErr = fmt.Errorf("record build: %w", err)
			return now, false
		}
		r.hub.Publish(b.ID, events)
		log.Info("build started", "platforms", strings.Join(b.Platforms, ","), "user", b.CreatedBy)
		if started != nil {
			started(b)
		}
		return now, true
	}, func(ctx context.Context) Result { return follow(ctx, b) })
	return startErr
}
