package buildkit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/content"
	"manifold/builds/registry"
	"manifold/outbound"
)

// Engine is Manifold's BuildKit solver (builds.Solver) and what it needs:
// the node, the blob store BuildKit exports into, the registry client
// (credentials, pushes), build secrets, the outbound policy, the frontend
// policy and the build network mode.
type Engine struct {
	pool      *Pool
	blobs     *content.Store
	workDir   string
	limits    builds.ContextLimits
	registry  *registry.Client
	secrets   SecretSource
	outbound  *outbound.Policy
	frontends builds.FrontendPolicy
	network   string
	records   Records
	hub       *builds.Hub
	log       *slog.Logger
}

// Records is what the engine keeps in the database while it solves: steps
// and events, where each platform runs, and which node built what last
// (for warm-cache routing). The db package implements it.
type Records interface {
	// Record appends events (numbering them) and saves the steps that changed, in one transaction.
	Record(ctx context.Context, id string, events []builds.Event, steps []builds.Step) ([]builds.Event, error)
	// SavePlacements records where platforms run and how they went
	// (replacing those platforms' rows), under the build's cache key.
	SavePlacements(ctx context.Context, id, key string, ps []builds.Placement) error
	// WarmNode is the node that last built platform successfully for a
	// build with the same cache key, or "".
	WarmNode(ctx context.Context, key, platform string) (string, error)
}

// SecretSource opens a user's build secrets for one solve.
type SecretSource interface {
	BuildSecrets(ctx context.Context, user string, names []string) (map[string][]byte, error)
}

// EngineConfig wires an Engine.
type EngineConfig struct {
	// Pool is the nodes builds are routed to.
	Pool  *Pool
	Blobs *content.Store
	// WorkDir holds per-build scratch folders, removed after each build.
	WorkDir string
	// Context bounds uploaded contexts as they are unpacked.
	Context builds.ContextLimits
	// Registry pushes results and hands BuildKit the stored credentials.
	Registry *registry.Client
	// Secrets opens build secrets; nil when builds may not use any.
	Secrets SecretSource
	// Outbound is asked about every source a solve loads; nil refuses every
	// non-public address.
	Outbound  *outbound.Policy
	Frontends builds.FrontendPolicy
	// Network is the build network mode; builds.NetworkNone asks every solve for no network.
	Network string
	// Records and Hub record and publish a build's progress.
	Records Records
	Hub     *builds.Hub
	Log     *slog.Logger
}

// NewEngine returns the BuildKit solver.
func NewEngine(cfg EngineConfig) *Engine {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Engine{pool: cfg.Pool, blobs: cfg.Blobs, workDir: cfg.WorkDir, limits: cfg.Context.WithDefaults(),
		registry: cfg.Registry, secrets: cfg.Secrets, outbound: cfg.Outbound, frontends: cfg.Frontends,
		network: cfg.Network, records: cfg.Records, hub: cfg.Hub, log: cfg.Log}
}

// Pool is the nodes the engine builds on.
func (e *Engine) Pool() *Pool { return e.pool }

// Solve builds b on BuildKit: it routes each platform to a node (Pool.Place),
// prepares the inputs (the inline Dockerfile, the uploaded context), checks
// the frontend, attaches the sessions (registry auth, build secrets, the
// outbound source policy), solves each node's platforms on it in parallel,
// records progress as steps and log lines, merges the nodes' stored indexes
// into one and pushes the tags asked for. Platforms a retried build keeps
// (its placements that already succeeded) are merged, not built again.
func (e *Engine) Solve(ctx context.Context, b *builds.Build, log *slog.Logger) builds.Result {
	var kept []builds.Placement
	var todo []string
	for _, p := range b.Platforms {
		if i := slices.IndexFunc(b.Placements, func(pl builds.Placement) bool {
			return pl.Platform == p && pl.Status == builds.StatusSucceeded && pl.IndexDigest != ""
		}); i >= 0 {
			kept = append(kept, b.Placements[i])
		} else {
			todo = append(todo, p)
		}
	}
	key := b.CacheKey()
	groups, err := e.pool.Place(ctx, todo, b.Placement, func(platform string) string {
		n, err := e.records.WarmNode(ctx, key, platform)
		if err != nil {
			log.Warn("look up the node with a warm cache", "platform", platform, "err", err)
		}
		return n
	})
	if err != nil {
		return failed("%s", builds.ErrorMessage(err))
	}
	var placed []builds.Placement
	for _, g := range groups {
		placed = append(placed, g.Placements...)
	}
	if err := e.records.SavePlacements(ctx, b.ID, key, placed); err != nil {
		return failed("record where the platforms run: %v", err)
	}
	dir, err := os.MkdirTemp(e.workDir, "build-"+b.ID+"-")
	if err != nil {
		return failed("prepare the build folder: %v", err)
	}
	defer os.RemoveAll(dir)
	spec, err := e.inputs(ctx, b, dir)
	if err != nil {
		return failed("%s", err.Error())
	}
	multi := len(e.pool.nodes) > 1 || len(kept) > 0
	rec := newRecorder(e.records, e.hub, b.ID, log)
	if !multi && len(groups) == 1 {
		rec.node = groups[0].Node.Name
	}
	outs, err := e.solveGroups(ctx, b, spec, groups, rec, multi)
	if err != nil {
		return failed("%s", err.Error())
	}
	if ctx.Err() != nil {
		return failed("%s", context.Cause(ctx))
	}
	// Each platform's placement says how it went; the build fails with the
	// first platform that failed, the others' results kept for a retry.
	var res *builds.Result
	placed = placed[:0]
	for _, o := range outs {
		for _, pl := range o.group.Placements {
			if o.err != nil {
				pl.Status, pl.Error = builds.StatusFailed, o.res.Error
			} else {
				pl.Status, pl.IndexDigest = builds.StatusSucceeded, o.root.Digest.String()
			}
			placed = append(placed, pl)
		}
		if o.err != nil && res == nil {
			r := o.res
			if multi {
				r.Error = strings.Join(o.group.Platforms, ", ") + " on " + o.group.Node.Name + ": " + r.Error
			}
			res = &r
		}
	}
	if err := e.records.SavePlacements(context.WithoutCancel(ctx), b.ID, key, placed); err != nil {
		log.Error("record how the platforms went", "err", err)
	}
	all := append(slices.Clone(kept), placed...)
	if res != nil {
		res.Placements = all
		return *res
	}
	root, err := e.merge(context.WithoutCancel(ctx), b.Platforms, all)
	if err != nil {
		return failed("%s", err.Error())
	}
	r, err := e.result(context.WithoutCancel(ctx), root)
	if err != nil {
		return failed("%s", err.Error())
	}
	r.Placements = all
	for i, m := range r.Manifests {
		if j := slices.IndexFunc(all, func(pl builds.Placement) bool { return pl.Platform == m.Platform }); j >= 0 {
			r.Manifests[i].Node, r.Manifests[i].Emulated = all[j].Node, all[j].Emulated
		}
	}
	if b.PushWanted {
		// Pushed by Manifold from the store, after the solve, so the outbound
		// policy checks every connection; a refused push keeps the result.
		r.Pushes = e.pushAll(ctx, b, root, rec)
	}
	return r
}

// groupOutcome is how one node's solve went: its stored index, or the
// failed result that names the step and line.
type groupOutcome struct {
	group    Group
	exporter map[string]string
	root     ocispec.Descriptor
	res      builds.Result
	err      error
}

// solveGroups solves each group on its node, all at once, and waits for
// every one: a platform that fails does not stop the others, whose results
// are kept. Progress from every node goes to one recorder; with several
// nodes, each step is keyed by its node too (the same vertex can run on
// two), and a routing step says where each platform went and why.
func (e *Engine) solveGroups(ctx context.Context, b *builds.Build, spec solveSpec, groups []Group, rec *recorder, multi bool) ([]groupOutcome, error) {
	merged := make(chan *client.SolveStatus, 64)
	recorded := make(chan struct{})
	go func() { defer close(recorded); rec.run(merged) }()
	outs := make([]groupOutcome, len(groups))
	var wg sync.WaitGroup
	var prepErr error
	for i, g := range groups {
		sessions, err := e.sessions(ctx, b)
		if err != nil {
			prepErr = err
			break
		}
		gspec := spec
		gspec.Platforms = g.Platforms
		gspec.Session = sessions
		// BuildKit asks the outbound policy about every source it loads (ADD URLs, git, images).
		gspec.SourcePolicy = e.sourcePolicy()
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Node.running.Add(1)
			defer g.Node.running.Add(-1)
			if multi {
				now := time.Now()
				var lines []string
				for _, pl := range g.Placements {
					lines = append(lines, pl.Platform+" → "+g.Node.Name+" ("+pl.Reason+")")
				}
				merged <- &client.SolveStatus{Vertexes: []*client.Vertex{{
					Digest: digest.FromString("manifold route " + b.ID + " " + g.Node.Name),
					Name:   "[internal] route " + strings.Join(lines, ", "), Started: &now, Completed: &now,
				}}}
			}
			resp, err := g.Node.solve(ctx, gspec, func(ch <-chan *client.SolveStatus) {
				for st := range ch {
					if multi {
						st = onNode(g.Node.Name, st)
					}
					merged <- st
				}
			})
			outs[i] = groupOutcome{group: g, err: err}
			if err == nil {
				outs[i].exporter = resp.ExporterResponse
			}
		}()
	}
	wg.Wait()
	close(merged)
	<-recorded
	// The recorder has seen every step now: failures can name theirs.
	for i, o := range outs {
		if o.group.Node == nil {
			continue // never started: preparing the sessions failed
		}
		if o.err != nil {
			outs[i].res = e.failure(o.err, rec, b, o.group.Node, multi)
			continue
		}
		root, err := rootDescriptor(o.exporter)
		if err != nil {
			outs[i].err = err
			outs[i].res = failed("read the build result from %s: %v", o.group.Node.Name, err)
		}
		outs[i].root = root
	}
	return outs, prepErr
}

// onNode keys a status update's vertices by node as well, for builds that
// run on several: the same vertex (the Dockerfile's load, a shared stage)
// can run on two nodes, and each is its own step.
func onNode(node string, st *client.SolveStatus) *client.SolveStatus {
	key := func(d digest.Digest) digest.Digest { return digest.Digest(node + "/" + string(d)) }
	out := &client.SolveStatus{}
	for _, v := range st.Vertexes {
		c := *v
		c.Digest = key(v.Digest)
		out.Vertexes = append(out.Vertexes, &c)
	}
	for _, s := range st.Statuses {
		c := *s
		c.Vertex = key(s.Vertex)
		out.Statuses = append(out.Statuses, &c)
	}
	for _, l := range st.Logs {
		c := *l
		c.Vertex = key(l.Vertex)
		out.Logs = append(out.Logs, &c)
	}
	for _, w := range st.Warnings {
		c := *w
		c.Vertex = key(w.Vertex)
		out.Warnings = append(out.Warnings, &c)
	}
	return out
}

// merge makes the build's index from the indexes each node stored (and
// those a retried build keeps), in the build's platform order: platform
// manifests with the attestation manifests that describe them. One index is
// the result as BuildKit wrote it.
func (e *Engine) merge(ctx context.Context, platforms []string, placed []builds.Placement) (ocispec.Descriptor, error) {
	var roots []string
	for _, p := range platforms {
		for _, pl := range placed {
			if pl.Platform == p && !slices.Contains(roots, pl.IndexDigest) {
				roots = append(roots, pl.IndexDigest)
			}
		}
	}
	descs := make([]ocispec.Descriptor, 0, len(roots))
	for _, r := range roots {
		d, err := digest.Parse(r)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("a stored result names %q, not a digest", r)
		}
		info, err := e.blobs.Info(ctx, d)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("the stored index %s of a kept platform is gone; build all platforms again", d)
		}
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: info.Size})
	}
	if len(descs) == 1 {
		return descs[0], nil
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	seen := map[digest.Digest]bool{}
	for _, d := range descs {
		var part ocispec.Index
		if err := content.ReadJSON(ctx, e.blobs, d, &part); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("read a node's index: %v", err)
		}
		for _, m := range part.Manifests {
			if !seen[m.Digest] {
				seen[m.Digest] = true
				idx.Manifests = append(idx.Manifests, m)
			}
		}
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := ccontent.WriteBlob(ctx, e.blobs, "merge-"+desc.Digest.Encoded(), bytes.NewReader(raw), desc); err != nil && !cerrdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("store the merged index: %v", err)
	}
	return desc, nil
}

func failed(format string, args ...any) builds.Result {
	return builds.Result{Status: builds.StatusFailed, Error: fmt.Sprintf(format, args...)}
}

// inputs lays out a build's inputs under dir (the inline Dockerfile, the
// unpacked upload) and checks its frontend again: the solve's spec.
func (e *Engine) inputs(ctx context.Context, b *builds.Build, dir string) (solveSpec, error) {
	spec := solveSpec{
		Ref: b.Ref, Platforms: b.Platforms, Options: b.Options, Store: e.blobs,
		DockerfileName: b.DockerfilePath, Git: b.Git,
	}
	if b.Dockerfile != "" {
		spec.DockerfileDir, spec.DockerfileName = filepath.Join(dir, "dockerfile"), "Dockerfile"
		if err := os.Mkdir(spec.DockerfileDir, 0o700); err != nil {
			return spec, fmt.Errorf("prepare the build folder: %v", err)
		}
		if err := os.WriteFile(filepath.Join(spec.DockerfileDir, "Dockerfile"), []byte(b.Dockerfile), 0o600); err != nil {
			return spec, fmt.Errorf("write the Dockerfile: %v", err)
		}
	}
	if b.Git == nil {
		spec.ContextDir = filepath.Join(dir, "context")
		if err := os.Mkdir(spec.ContextDir, 0o700); err != nil {
			return spec, fmt.Errorf("prepare the build folder: %v", err)
		}
		if b.Context.Type == "upload" {
			if err := builds.ExtractContext(ctx, e.blobs, b.Context.Digest, spec.ContextDir, e.limits); err != nil {
				return spec, fmt.Errorf("unpack the uploaded context: %s", err.Error())
			}
		}
	}
	noForward, err := e.frontends.CheckRun(b, spec.ContextDir, b.DockerfilePath)
	if err != nil {
		return spec, err
	}
	spec.NoForward, spec.NoNetwork = noForward, e.network == builds.NetworkNone
	return spec, nil
}

// sessions are what BuildKit may ask Manifold for during the solve: the
// stored registry credentials and the build's secrets.
func (e *Engine) sessions(ctx context.Context, b *builds.Build) ([]session.Attachable, error) {
	var out []session.Attachable
	if creds := e.registry.Credentials(); creds != nil {
		out = append(out, creds.AuthProvider())
	}
	if len(b.Secrets) > 0 {
		if e.secrets == nil {
			return nil, errors.New("this server keeps no build secrets")
		}
		vals, err := e.secrets.BuildSecrets(ctx, b.CreatedBy, b.Secrets)
		if err != nil {
			return nil, fmt.Errorf("open the build's secrets: %v", err)
		}
		// Handed to BuildKit through the session only: never logged, never stored in clear.
		out = append(out, secretsprovider.FromMap(vals))
	}
	return out, nil
}

// result reads what the solve stored: the build's index, its platform
// manifests and every blob it reaches.
func (e *Engine) result(ctx context.Context, root ocispec.Descriptor) (builds.Result, error) {
	manifests, err := content.ReadManifests(ctx, e.blobs, root)
	if err != nil {
		return builds.Result{}, fmt.Errorf("read the image index %s: %v", root.Digest, err)
	}
	reach, err := content.Reachable(ctx, e.blobs, root)
	if err != nil {
		return builds.Result{}, fmt.Errorf("walk the image index %s: %v", root.Digest, err)
	}
	return builds.Result{Status: builds.StatusSucceeded, IndexDigest: root.Digest.String(), Manifests: manifests, Blobs: content.ImageBlobs(reach)}, nil
}

// failure turns a Solve error into a result whose message names the failing
// step and, where BuildKit gave source information, the Dockerfile line.
func (e *Engine) failure(err error, rec *recorder, b *builds.Build, node *Node, multi bool) builds.Result {
	msg := strings.TrimPrefix(grpcMessage(err), "failed to solve: ")
	if deny := denyMessages(err); len(deny) > 0 {
		// The outbound policy refused a source: its sentence says which and why.
		msg = strings.Join(deny, "; ")
	}
	if strings.Contains(msg, "no space left on device") {
		return builds.Result{Status: builds.StatusFailed, Error: "the disk is full: no space was left while the result was stored (" + msg +
			"); free space on the disk of Manifold's data folder, or collect garbage (POST /api/v1/gc), then build again"}
	}
	if lostBuilder(msg) {
		node.Forget()
		return builds.Result{Status: builds.StatusFailed, Error: fmt.Sprintf("the builder was lost: BuildKit node %s at %s stopped answering during the build (%s)", node.Name, node.Addr, msg)}
	}
	res := builds.Result{Status: builds.StatusFailed}
	var failed *builds.Step
	var ve *errdefs.VertexError
	if errors.As(err, &ve) && ve.Vertex != nil {
		key := ve.Digest
		if multi {
			key = node.Name + "/" + key
		}
		failed = rec.stepAt(key)
	}
	if failed == nil {
		for _, s := range rec.stepsOn(node.Name, multi) {
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
		if stages := builds.StageNames(b.Dockerfile); len(stages) > 0 {
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

// pushAll pushes a finished build's result to each of its tags, after the
// solve, from the store: the connections are Manifold's, so the outbound
// policy checks every address they reach. Progress goes to the build's log as
// one step per tag.
func (e *Engine) pushAll(ctx context.Context, b *builds.Build, root ocispec.Descriptor, rec *recorder) []builds.Push {
	tags, err := builds.ParseTags(b.Tags)
	if err != nil {
		p := builds.Push{Digest: root.Digest.String(), At: time.Now().UTC(), Error: builds.ErrorMessage(err)}
		return []builds.Push{p}
	}
	steps := rec.own()
	defer steps.close()
	var out []builds.Push
	for _, t := range tags {
		vertex := digest.FromString("manifold push " + b.ID + " " + t.Full)
		end := steps.start(vertex, "pushing "+t.Full)
		progress := func(d ocispec.Descriptor) {
			what := "layer"
			switch {
			case d.Digest == root.Digest:
				what = "manifest list"
			case d.MediaType == ocispec.MediaTypeImageConfig || d.MediaType == images.MediaTypeDockerSchema2Config:
				what = "config"
			case d.MediaType == "application/vnd.in-toto+json":
				what = "attestation"
			}
			steps.item(vertex, "pushing "+what+" "+d.Digest.String(), d.Size)
		}
		if err := e.registry.Check(ctx, "registry", t.Host()); err != nil {
			// Checked when the build was started; the allow-list may have changed since.
			out = append(out, builds.Push{Target: t.Full, Digest: root.Digest.String(), At: time.Now().UTC(), Error: builds.ErrorMessage(err)})
		} else {
			p, _ := e.registry.Push(ctx, t, root, progress)
			out = append(out, p)
		}
		last := out[len(out)-1]
		end(last.Error)
		e.log.Info("pushed", "build_id", b.ID, "target", t.Full, "ok", last.OK, "error", last.Error)
	}
	return out
}

// rootDescriptor reads the exported image's root descriptor from BuildKit's exporter response.
func rootDescriptor(resp map[string]string) (ocispec.Descriptor, error) {
	var desc ocispec.Descriptor
	if enc := resp["containerimage.descriptor"]; enc != "" {
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return desc, fmt.Errorf("decode containerimage.descriptor: %w", err)
		}
		if err := json.Unmarshal(raw, &desc); err != nil {
			return desc, fmt.Errorf("parse containerimage.descriptor: %w", err)
		}
		return desc, nil
	}
	if d := resp["containerimage.digest"]; d != "" {
		dg, err := digest.Parse(d)
		if err != nil {
			return desc, fmt.Errorf("parse containerimage.digest: %w", err)
		}
		return ocispec.Descriptor{Digest: dg, MediaType: ocispec.MediaTypeImageIndex}, nil
	}
	return desc, fmt.Errorf("BuildKit's response names no image digest")
}
