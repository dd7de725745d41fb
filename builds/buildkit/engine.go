package buildkit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/opencontainers/go-digest"

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
	node      *Node
	blobs     *content.Store
	workDir   string
	limits    builds.ContextLimits
	registry  *registry.Client
	secrets   SecretSource
	outbound  *outbound.Policy
	frontends builds.FrontendPolicy
	network   string
	store     builds.Store
	hub       *builds.Hub
	log       *slog.Logger
}

// SecretSource opens a user's build secrets for one solve.
type SecretSource interface {
	BuildSecrets(ctx context.Context, user string, names []string) (map[string][]byte, error)
}

// EngineConfig wires an Engine.
type EngineConfig struct {
	Node  *Node
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
	// Store and Hub record and publish a build's progress.
	Store builds.Store
	Hub   *builds.Hub
	Log   *slog.Logger
}

// NewEngine returns the BuildKit solver.
func NewEngine(cfg EngineConfig) *Engine {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Engine{node: cfg.Node, blobs: cfg.Blobs, workDir: cfg.WorkDir, limits: cfg.Context.WithDefaults(),
		registry: cfg.Registry, secrets: cfg.Secrets, outbound: cfg.Outbound, frontends: cfg.Frontends,
		network: cfg.Network, store: cfg.Store, hub: cfg.Hub, log: cfg.Log}
}

// Node is the daemon the engine builds on.
func (e *Engine) Node() *Node { return e.node }

// Solve builds b on BuildKit: it prepares the inputs (the inline
// Dockerfile, the uploaded context), checks the frontend, attaches the
// sessions (registry auth, build secrets, the outbound source policy),
// records progress as steps and log lines, reads the stored result and
// pushes the tags asked for.
func (e *Engine) Solve(ctx context.Context, b *builds.Build, log *slog.Logger) builds.Result {
	if st := e.node.RecentStatus(ctx, 5*time.Second); !st.OK {
		return failed("%s", st.Error)
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
	if spec.Session, err = e.sessions(ctx, b); err != nil {
		return failed("%s", err.Error())
	}
	// BuildKit asks the outbound policy about every source it loads (ADD URLs, git, images).
	spec.SourcePolicy = e.sourcePolicy()
	rec := newRecorder(e.store, e.hub, b.ID, log)
	resp, err := e.node.solve(ctx, spec, rec.run)
	if err != nil {
		if ctx.Err() != nil {
			return failed("%s", context.Cause(ctx))
		}
		return e.failure(err, rec, b)
	}
	res, root, err := e.result(context.WithoutCancel(ctx), resp.ExporterResponse)
	if err != nil {
		return failed("%s", err.Error())
	}
	if b.PushWanted {
		// Pushed by Manifold from the store, after the solve, so the outbound
		// policy checks every connection; a refused push keeps the result.
		res.Pushes = e.pushAll(ctx, b, root, rec)
	}
	return res
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

// result reads what the solve stored: the index BuildKit's exporter names,
// its platform manifests and every blob it reaches.
func (e *Engine) result(ctx context.Context, resp map[string]string) (builds.Result, ocispec.Descriptor, error) {
	root, err := rootDescriptor(resp)
	if err != nil {
		return builds.Result{}, root, fmt.Errorf("read the build result: %v", err)
	}
	manifests, err := content.ReadManifests(ctx, e.blobs, root)
	if err != nil {
		return builds.Result{}, root, fmt.Errorf("read the image index %s: %v", root.Digest, err)
	}
	reach, err := content.Reachable(ctx, e.blobs, root)
	if err != nil {
		return builds.Result{}, root, fmt.Errorf("walk the image index %s: %v", root.Digest, err)
	}
	return builds.Result{Status: builds.StatusSucceeded, IndexDigest: root.Digest.String(), Manifests: manifests, Blobs: content.ImageBlobs(reach)}, root, nil
}

// failure turns a Solve error into a result whose message names the failing
// step and, where BuildKit gave source information, the Dockerfile line.
func (e *Engine) failure(err error, rec *recorder, b *builds.Build) builds.Result {
	msg := strings.TrimPrefix(grpcMessage(err), "failed to solve: ")
	if deny := denyMessages(err); len(deny) > 0 {
		// The outbound policy refused a source: its sentence says which and why.
		msg = strings.Join(deny, "; ")
	}
	if lostBuilder(msg) {
		e.node.Forget()
		return builds.Result{Status: builds.StatusFailed, Error: fmt.Sprintf("the builder was lost: BuildKit at %s stopped answering during the build (%s)", e.node.Addr, msg)}
	}
	res := builds.Result{Status: builds.StatusFailed}
	var failed *builds.Step
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
	ch := make(chan *client.SolveStatus, 16)
	done := make(chan struct{})
	go func() { defer close(done); rec.run(ch) }()
	var out []builds.Push
	for _, t := range tags {
		vertex := digest.FromString("manifold push " + b.ID + " " + t.Full)
		started := time.Now()
		ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: vertex, Name: "pushing " + t.Full, Started: &started}}}
		var mu sync.Mutex
		progress := func(d ocispec.Descriptor) {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			what := "layer"
			switch {
			case d.Digest == root.Digest:
				what = "manifest list"
			case d.MediaType == ocispec.MediaTypeImageConfig || d.MediaType == images.MediaTypeDockerSchema2Config:
				what = "config"
			case d.MediaType == "application/vnd.in-toto+json":
				what = "attestation"
			}
			ch <- &client.SolveStatus{Statuses: []*client.VertexStatus{{
				ID: "pushing " + what + " " + d.Digest.String(), Vertex: vertex, Current: d.Size, Total: d.Size,
				Timestamp: now, Started: &now, Completed: &now,
			}}}
		}
		if err := e.registry.Check(ctx, "registry", t.Host()); err != nil {
			// Checked when the build was started; the allow-list may have changed since.
			out = append(out, builds.Push{Target: t.Full, Digest: root.Digest.String(), At: time.Now().UTC(), Error: builds.ErrorMessage(err)})
		} else {
			p, _ := e.registry.Push(ctx, t, root, progress)
			out = append(out, p)
		}
		completed := time.Now()
		last := out[len(out)-1]
		ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: vertex, Name: "pushing " + t.Full, Started: &started, Completed: &completed, Error: last.Error}}}
		e.log.Info("pushed", "build_id", b.ID, "target", t.Full, "ok", last.OK, "error", last.Error)
	}
	close(ch)
	<-done
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
