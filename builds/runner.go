package builds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/solver/errdefs"

	"manifold/builds/outbound"
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

	// What the Service reads through the Runner until it is split up: the
	// node's health, the store, context and listing limits, credentials.
	node    *Node
	content *ContentStore
	limits  ContextLimits
	regs    *Registries
	listing ListingLimits

	// engine is the BuildKit side; solver runs the builds (the engine, or a test's fake).
	engine *Engine
	solver Solver

	mu      sync.Mutex
	queue   []string
	running map[string]runningBuild
	wake    chan struct{}
	wg      sync.WaitGroup
	// gcMu: a solve, until its result is recorded, holds it for reading;
	// garbage collection takes it for writing.
	gcMu sync.RWMutex
}

// Solver runs one build and returns its final result; the Runner owns the
// queue, the concurrency limit, cancellation and recording the outcome.
// Engine is the BuildKit implementation; tests give the Runner a fake.
type Solver interface {
	Solve(ctx context.Context, b *Build, log *slog.Logger) Result
}

// Engine is Manifold's BuildKit solver and what it needs: the node, the
// content store BuildKit exports into, registry credentials, build secrets,
// the outbound policy, the frontend policy and the build network mode.
type Engine struct {
	node      *Node
	content   *ContentStore
	workDir   string
	limits    ContextLimits
	regs      *Registries
	secrets   SecretSource
	outbound  *outbound.Policy
	frontends FrontendPolicy
	network   string
	store     Store
	hub       *Hub
	log       *slog.Logger
}

// RunnerConfig wires a Runner.
type RunnerConfig struct {
	Store   Store
	Hub     *Hub
	Node    *Node
	Content *ContentStore
	WorkDir string // per-build scratch folders live here and are removed after each build
	Log     *slog.Logger
	Limit   int // builds running at once; 2 when zero
	// MaxQueuedPerUser bounds how many builds one user may have waiting; 10 when zero.
	MaxQueuedPerUser int
	// Context bounds uploaded contexts.
	Context ContextLimits
	// Registries holds the credentials handed to BuildKit; nil for none.
	Registries *Registries
	// Secrets opens build secrets; nil when builds may not use any.
	Secrets SecretSource
	// Outbound is the address policy for everything fetched or pushed on a
	// user's word; nil refuses every non-public address.
	Outbound *outbound.Policy
	// Listing bounds the explorer's layer listings.
	Listing ListingLimits
	// Frontends lists the `# syntax=` frontends builds may use; none when empty.
	Frontends FrontendPolicy
	// Network is the build network mode; NetworkNone asks every solve for no network.
	Network string
	// Solver runs each build; nil means the BuildKit Engine made from the fields above.
	Solver Solver
}

// SecretSource opens a user's build secrets for one solve.
type SecretSource interface {
	BuildSecrets(ctx context.Context, user string, names []string) (map[string][]byte, error)
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
	limits := cfg.Context.withDefaults()
	e := &Engine{node: cfg.Node, content: cfg.Content, workDir: cfg.WorkDir, limits: limits, regs: cfg.Registries,
		secrets: cfg.Secrets, outbound: cfg.Outbound, frontends: cfg.Frontends, network: cfg.Network, store: cfg.Store, hub: cfg.Hub, log: cfg.Log}
	r := &Runner{
		store: cfg.Store, hub: cfg.Hub, log: cfg.Log, limit: cfg.Limit, maxQueued: cfg.MaxQueuedPerUser,
		node: cfg.Node, content: cfg.Content, limits: limits, regs: cfg.Registries, listing: cfg.Listing,
		engine: e, solver: cfg.Solver,
		running: map[string]runningBuild{},
		wake:    make(chan struct{}, 1),
	}
	if r.solver == nil {
		r.solver = e
	}
	return r
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

	startedAt := time.Now().UTC()
	started, events, err := r.store.StartBuild(appCtx, id, startedAt, StartEvents(startedAt))
	if err != nil || !started {
		if err != nil {
			log.Error("start build", "err", err)
		}
		return
	}
	r.hub.Publish(id, events)
	log.Info("build started", "platforms", strings.Join(b.Platforms, ","))
	r.gcMu.RLock()
	defer r.gcMu.RUnlock()
	res := r.solver.Solve(ctx, b, log)
	if cause := context.Cause(ctx); cause != nil && res.Status != StatusSucceeded {
		switch {
		case errors.Is(cause, errCanceledByUser):
			res = Result{Status: StatusCanceled, Error: "canceled by user"}
		case appCtx.Err() != nil:
			res = Result{Status: StatusInterrupted, Error: "Manifold stopped while the build was running"}
		}
	}
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
	events, err = r.store.FinishBuild(fctx, id, finishedAt, res, FinishEvents(res, &startedAt, finishedAt))
	if err != nil {
		log.Error("finish build", "err", err)
		return
	}
	r.hub.Publish(id, events)
	log.Info("build finished", "status", res.Status, "index_digest", res.IndexDigest, "error", res.Error)
}

// Solve builds b on BuildKit: it prepares the inputs (the inline
// Dockerfile, the uploaded context), checks the frontend, attaches the
// sessions (registry auth, build secrets, the outbound source policy),
// records progress as steps and log lines, reads the stored result and
// pushes the tags asked for.
func (e *Engine) Solve(ctx context.Context, b *Build, log *slog.Logger) Result {
	fail := func(format string, args ...any) Result {
		return Result{Status: StatusFailed, Error: fmt.Sprintf(format, args...)}
	}
	if st := e.node.RecentStatus(ctx, 5*time.Second); !st.OK {
		return fail("%s", st.Error)
	}
	dir, err := os.MkdirTemp(e.workDir, "build-"+b.ID+"-")
	if err != nil {
		return fail("prepare the build folder: %v", err)
	}
	defer os.RemoveAll(dir)
	spec := solveSpec{
		Ref: b.Ref, Platforms: b.Platforms, Options: b.Options, Store: e.content,
		DockerfileName: b.DockerfilePath, Git: b.Git,
	}
	if b.Dockerfile != "" {
		spec.DockerfileDir, spec.DockerfileName = filepath.Join(dir, "dockerfile"), "Dockerfile"
		if err := os.Mkdir(spec.DockerfileDir, 0o700); err != nil {
			return fail("prepare the build folder: %v", err)
		}
		if err := os.WriteFile(filepath.Join(spec.DockerfileDir, "Dockerfile"), []byte(b.Dockerfile), 0o600); err != nil {
			return fail("write the Dockerfile: %v", err)
		}
	}
	if b.Git == nil {
		spec.ContextDir = filepath.Join(dir, "context")
		if err := os.Mkdir(spec.ContextDir, 0o700); err != nil {
			return fail("prepare the build folder: %v", err)
		}
		if b.Context.Type == "upload" {
			if err := ExtractContext(ctx, e.content, b.Context.Digest, spec.ContextDir, e.limits); err != nil {
				return fail("unpack the uploaded context: %s", err.Error())
			}
		}
	}
	noForward, err := e.checkFrontend(b, spec.ContextDir, b.DockerfilePath)
	if err != nil {
		return fail("%s", err.Error())
	}
	spec.NoForward, spec.NoNetwork = noForward, e.network == NetworkNone

	if e.regs != nil {
		spec.Session = []session.Attachable{e.regs.authProvider()}
	}
	if len(b.Secrets) > 0 {
		if e.secrets == nil {
			return fail("this server keeps no build secrets")
		}
		vals, err := e.secrets.BuildSecrets(ctx, b.CreatedBy, b.Secrets)
		if err != nil {
			return fail("open the build's secrets: %v", err)
		}
		// Handed to BuildKit through the session only: never logged, never stored in clear.
		spec.Session = append(spec.Session, secretsprovider.FromMap(vals))
	}
	// BuildKit asks the outbound policy about every source it loads (ADD URLs, git, images).
	spec.SourcePolicy = e.sourcePolicy()
	rec := newRecorder(e.store, e.hub, b.ID, log)
	resp, err := e.node.solve(ctx, spec, rec.run)
	if err != nil {
		if ctx.Err() != nil {
			return fail("%s", context.Cause(ctx))
		}
		return e.failure(err, rec, b)
	}
	root, err := rootDescriptor(resp.ExporterResponse)
	if err != nil {
		return fail("read the build result: %v", err)
	}
	manifests, err := ReadManifests(context.WithoutCancel(ctx), e.content, root)
	if err != nil {
		return fail("read the image index %s: %v", root.Digest, err)
	}
	reach, err := Reachable(context.WithoutCancel(ctx), e.content, root)
	if err != nil {
		return fail("walk the image index %s: %v", root.Digest, err)
	}
	res := Result{Status: StatusSucceeded, IndexDigest: root.Digest.String(), Manifests: manifests, Blobs: imageBlobs(reach)}
	if b.PushWanted {
		// Pushed by Manifold from the store, after the solve, so the outbound
		// policy checks every connection; a refused push keeps the result.
		res.Pushes = e.pushAll(ctx, b, root, rec)
	}
	return res
}

// failure turns a Solve error into a result whose message names the failing
// step and, where BuildKit gave source information, the Dockerfile line.
func (e *Engine) failure(err error, rec *recorder, b *Build) Result {
	msg := strings.TrimPrefix(grpcMessage(err), "failed to solve: ")
	if deny := denyMessages(err); len(deny) > 0 {
		// The outbound policy refused a source: its sentence says which and why.
		msg = strings.Join(deny, "; ")
	}
	if lostBuilder(msg) {
		e.node.Forget()
		return Result{Status: StatusFailed, Error: fmt.Sprintf("the builder was lost: BuildKit at %s stopped answering during the build (%s)", e.node.Addr, msg)}
	}
	res := Result{Status: StatusFailed}
	var failed *Step
	var ve *errdefs.VertexError
	if errors.As(err, &ve) && ve.Vertex != nil {
		failed = rec.byDigest[ve.Digest]
	}
	if failed == nil {
		for _, s := range rec.steps {
			if s.Error != "" && !strings.Contains(s.Error, "context canceled") {
				failed = s
			}
		}
	}
	for _, src := range errdefs.Sources(err) {
		if src.Info != nil && len(src.Ranges) > 0 && src.Ranges[0].Start != nil {
			res.ErrorLine = int(src.Ranges[0].Start.Line)
		}
	}
	if m := missingTarget.FindStringSubmatch(msg); m != nil && b.Dockerfile != "" {
		if stages := StageNames(b.Dockerfile); len(stages) > 0 {
			msg += "; the Dockerfile's stages are " + strings.Join(stages, ", ")
		} else {
			msg += "; the Dockerfile names no stages (use FROM … AS name)"
		}
	}
	where := ""
	if res.ErrorLine > 0 {
		where = fmt.Sprintf(" (Dockerfile line %d)", res.ErrorLine)
	}
	if failed != nil {
		res.ErrorStep = failed.Number
		res.Error = fmt.Sprintf("step #%d %s%s failed: %s", failed.Number, failed.Name, where, msg)
	} else if where != "" {
		res.Error = fmt.Sprintf("Dockerfile line %d: %s", res.ErrorLine, msg)
	} else {
		res.Error = msg
	}
	return res
}

var missingTarget = regexp.MustCompile(`target stage "?([^"\s]+)"? could not be found`)

func lostBuilder(msg string) bool {
	low := strings.ToLower(msg)
	for _, s := range []string{"connection refused", "error reading from server: eof", "transport is closing",
		"connection reset by peer", "broken pipe", "code = unavailable", "closed network connection"} {
		if strings.Contains(low, s) {
			return true
		}
	}
	return strings.Contains(low, "no such file or directory") && strings.Contains(low, "dial")
}
