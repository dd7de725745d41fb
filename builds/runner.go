package builds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/moby/buildkit/client"
)

// Cancellation causes, so a finished solve knows why its context ended.
var (
	errCanceledByUser = errors.New("canceled by user")
	errShutdown       = errors.New("manifold is shutting down")
)

// Runner executes queued builds on BuildKit, at most Limit at a time, in FIFO order.
type Runner struct {
	store   Store
	node    *Node
	content content.Store
	workDir string
	log     *slog.Logger
	limit   int

	mu      sync.Mutex
	queue   []string
	running map[string]context.CancelCauseFunc
	wake    chan struct{}
	wg      sync.WaitGroup
}

// RunnerConfig wires a Runner.
type RunnerConfig struct {
	Store   Store
	Node    *Node
	Content content.Store
	WorkDir string // per-build scratch folders live here and are removed after each build
	Log     *slog.Logger
	Limit   int // builds running at once; 2 when zero
}

// NewRunner returns a Runner; call Start to begin taking builds.
func NewRunner(cfg RunnerConfig) *Runner {
	if cfg.Limit <= 0 {
		cfg.Limit = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Runner{
		store: cfg.Store, node: cfg.Node, content: cfg.Content, workDir: cfg.WorkDir,
		log: cfg.Log, limit: cfg.Limit,
		running: map[string]context.CancelCauseFunc{},
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

// Cancel takes a build out of the queue or cancels its running solve. It
// reports whether the build was queued (true, false) or running (false, true).
func (r *Runner) Cancel(id string) (wasQueued, wasRunning bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.queue, id); i >= 0 {
		r.queue = slices.Delete(r.queue, i, i+1)
		return true, false
	}
	if cancel, ok := r.running[id]; ok {
		cancel(errCanceledByUser)
		return false, true
	}
	return false, false
}

func (r *Runner) next(ctx context.Context) (string, bool) {
	for {
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
		log.Error("load queued build", "err", err)
		return
	}
	ctx, cancel := context.WithCancelCause(appCtx)
	defer cancel(nil)
	r.mu.Lock()
	r.running[id] = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, id)
		r.mu.Unlock()
	}()

	started, err := r.store.StartBuild(appCtx, id, time.Now().UTC())
	if err != nil || !started {
		if err != nil {
			log.Error("start build", "err", err)
		}
		return
	}
	log.Info("build started", "platforms", strings.Join(b.Platforms, ","))
	res := r.solve(ctx, b, log)
	if cause := context.Cause(ctx); cause != nil && res.Status != StatusSucceeded {
		switch {
		case errors.Is(cause, errCanceledByUser):
			res = Result{Status: StatusCanceled, Error: "canceled by user"}
		case errors.Is(cause, errShutdown) || appCtx.Err() != nil:
			res = Result{Status: StatusInterrupted, Error: "Manifold stopped while the build was running"}
		}
	}
	// The app context may be over: finishing must still be recorded.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(appCtx), 10*time.Second)
	defer fcancel()
	if err := r.store.FinishBuild(fctx, id, time.Now().UTC(), res); err != nil {
		log.Error("finish build", "err", err)
		return
	}
	log.Info("build finished", "status", res.Status, "index_digest", res.IndexDigest, "error", res.Error)
}

func (r *Runner) solve(ctx context.Context, b *Build, log *slog.Logger) Result {
	fail := func(format string, args ...any) Result {
		return Result{Status: StatusFailed, Error: fmt.Sprintf(format, args...)}
	}
	if st := r.node.Status(ctx, 5*time.Second); !st.OK {
		return fail("%s", st.Error)
	}
	dir, err := os.MkdirTemp(r.workDir, "build-"+b.ID+"-")
	if err != nil {
		return fail("prepare the build folder: %v", err)
	}
	defer os.RemoveAll(dir)
	dfDir, ctxDir := filepath.Join(dir, "dockerfile"), filepath.Join(dir, "context")
	if err := os.Mkdir(dfDir, 0o700); err != nil {
		return fail("prepare the build folder: %v", err)
	}
	if err := os.Mkdir(ctxDir, 0o700); err != nil {
		return fail("prepare the build folder: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dfDir, "Dockerfile"), []byte(b.Dockerfile), 0o600); err != nil {
		return fail("write the Dockerfile: %v", err)
	}

	ch := make(chan *client.SolveStatus)
	rec := newRecorder(r.store, b.ID, log)
	recDone := make(chan struct{})
	go func() { defer close(recDone); rec.run(ch) }()
	resp, err := r.node.solve(ctx, solveSpec{
		Ref: b.Ref, Platforms: b.Platforms, DockerfileDir: dfDir, ContextDir: ctxDir, Options: b.Options, Store: r.content,
	}, ch)
	<-recDone
	if err != nil {
		if ctx.Err() != nil {
			return fail("%s", context.Cause(ctx))
		}
		return fail("%s", solveError(err, r.node))
	}
	root, err := rootDescriptor(resp.ExporterResponse)
	if err != nil {
		return fail("read the build result: %v", err)
	}
	manifests, err := ReadManifests(context.WithoutCancel(ctx), r.content, root)
	if err != nil {
		return fail("read the image index %s: %v", root.Digest, err)
	}
	return Result{Status: StatusSucceeded, IndexDigest: root.Digest.String(), Manifests: manifests}
}

// solveError turns a Solve error into one sentence a user can act on.
func solveError(err error, n *Node) string {
	msg := grpcMessage(err)
	low := strings.ToLower(msg)
	if strings.Contains(low, "connection refused") || strings.Contains(low, "error reading from server: eof") ||
		strings.Contains(low, "transport is closing") || strings.Contains(low, "no such file or directory") && strings.Contains(low, "dial") {
		return fmt.Sprintf("the builder was lost: BuildKit at %s stopped answering (%s)", n.Addr, msg)
	}
	return msg
}
