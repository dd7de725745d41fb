package buildkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/content/proxy"
	cerrdefs "github.com/containerd/errdefs"
	controlapi "github.com/moby/buildkit/api/services/control"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"manifold/builds"
	"manifold/builds/builder"
	"manifold/builds/content"
)

// ExternalRunner records builds a client runs itself; builds.Service implements it.
type ExternalRunner interface {
	RunExternal(ctx context.Context, b *builds.Build, started func(*builds.Build), follow func(ctx context.Context, b *builds.Build) builds.Result) error
}

// Buildx records every solve a `docker buildx` client runs through the
// builder endpoint (it is the endpoint's builder.Watcher) as a Manifold
// build, marked via buildx:
//
//   - when the solve's request passes the endpoint, the build is recorded
//     running, with who (the certificate's user), the platforms, build args,
//     labels, target and tags the client asked for;
//   - its progress is read from the node (Control.Status for the solve's ref,
//     the stream buildx itself reads) into the same recorder Manifold's own
//     builds use: steps, timing, cache hits and log lines, live;
//   - when the solve ends, the node's build history record
//     (ListenBuildHistory for that ref, the API `docker buildx history`
//     reads) says how it went: the error with its step and Dockerfile line,
//     the exporter's response (the image's digest, the names pushed);
//   - an image result (pushed, or exported to the client as an OCI or
//     Docker archive) is copied from the node's content store into
//     Manifold's, so the explorer, downloads and the pull API work on it.
//     BuildKit's history keeps the index, manifests and configs of a
//     recorded build, so this copy does not race its garbage collection.
type Buildx struct {
	engine *Engine
	node   *Node
	runs   ExternalRunner
	// ctx is the application's: a build outlives the endpoint call that began it.
	ctx context.Context
	log *slog.Logger
}

var _ builder.Watcher = (*Buildx)(nil)

// NewBuildx records the builds the endpoint passes to node.
func NewBuildx(ctx context.Context, e *Engine, node *Node, runs ExternalRunner, log *slog.Logger) *Buildx {
	return &Buildx{engine: e, node: node, runs: runs, ctx: ctx, log: log}
}

// Began records a solve the endpoint is about to pass to the node, after
// putting Manifold's source policy in its request; the function it returns
// takes the node's answer (or error) when it answers.
func (x *Buildx) Began(ctx context.Context, s *builder.Solve) (func(*controlapi.SolveResponse, error), error) {
	closePolicy, err := x.policy(ctx, s.Request)
	if err != nil {
		return nil, err
	}
	req := s.Request
	if req.Frontend == "" && req.Definition == nil && len(req.FrontendAttrs) == 0 && len(exporters(req)) == 0 {
		// buildx opens the builder with an empty solve first: nothing is built.
		return func(*controlapi.SolveResponse, error) { closePolicy() }, nil
	}
	ended := make(chan solveEnd, 1)
	recorded := make(chan struct{})
	b := x.build(s)
	go func() {
		defer close(recorded)
		err := x.runs.RunExternal(x.ctx, b, nil, func(ctx context.Context, b *builds.Build) builds.Result {
			return x.follow(ctx, b, s, ended)
		})
		if err != nil {
			x.log.Error("record a buildx build", "ref", b.Ref, "user", b.CreatedBy, "err", err)
		}
	}()
	return func(resp *controlapi.SolveResponse, err error) {
		closePolicy()
		ended <- solveEnd{resp, err}
		// The client's answer waits until the build and its result are in
		// Manifold: when `docker buildx build` returns, the build is recorded.
		// A recording that takes longer than recordWait lets it go on alone.
		select {
		case <-recorded:
		case <-time.After(recordWait):
			x.log.Warn("a buildx build is still being recorded; its client gets its answer now", "ref", b.Ref)
		}
	}, nil
}

// recordWait bounds how long a buildx client's answer waits for its build to be recorded.
const recordWait = 2 * time.Minute

// policy opens a session on the node that answers BuildKit's source policy
// questions with Manifold's outbound policy (the one its own builds get),
// and names it in the request: every source the solve loads (images, ADD
// URLs, git) is asked about, whatever the client sent. A policy session the
// client named itself is replaced. It returns how to close the session.
func (x *Buildx) policy(ctx context.Context, req *controlapi.SolveRequest) (func(), error) {
	c, err := x.node.conn(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := session.NewSession(context.WithoutCancel(ctx), "manifold-source-policy")
	if err != nil {
		return nil, fmt.Errorf("open the source policy session: %w", err)
	}
	sess.Allow(x.engine.sourcePolicy())
	sctx, cancel := context.WithCancel(x.ctx)
	go func() {
		if err := sess.Run(sctx, c.Dialer()); err != nil && sctx.Err() == nil {
			x.log.Warn("source policy session", "err", err)
		}
	}()
	req.SourcePolicySession = sess.ID()
	return func() { cancel(); _ = sess.Close() }, nil
}

// solveEnd is the node's answer to a solve.
type solveEnd struct {
	resp *controlapi.SolveResponse
	err  error
}

// build is what the solve's request says of the build it starts.
func (x *Buildx) build(s *builder.Solve) *builds.Build {
	req := s.Request
	attrs := req.FrontendAttrs
	b := &builds.Build{Ref: req.Ref, CreatedBy: s.User, Via: builds.ViaBuildx, Tags: []string{}}
	b.Context = builds.Source{Type: "client"}
	b.DockerfilePath = attrs["filename"]
	b.Target = attrs["target"]
	_, b.NoCache = attrs["no-cache"]
	b.BuildArgs, b.Labels = map[string]string{}, map[string]string{}
	for k, v := range attrs {
		switch {
		case strings.HasPrefix(k, "build-arg:"):
			b.BuildArgs[strings.TrimPrefix(k, "build-arg:")] = v
		case strings.HasPrefix(k, "label:"):
			b.Labels[strings.TrimPrefix(k, "label:")] = v
		case k == "attest:provenance":
			b.Provenance = "min"
			for _, part := range strings.Split(v, ",") {
				if m, ok := strings.CutPrefix(part, "mode="); ok && (m == "min" || m == "max") {
					b.Provenance = m
				}
				if part == "disabled=true" {
					b.Provenance = ""
				}
			}
		}
	}
	for _, p := range strings.Split(attrs["platform"], ",") {
		if p = strings.TrimSpace(p); p != "" {
			b.Platforms = append(b.Platforms, p)
		}
	}
	// Named as Manifold's own builds name them, so the history's platform= finds them.
	if ps, err := builds.ParsePlatforms(b.Platforms); err == nil {
		b.Platforms = ps
	}
	if len(b.Platforms) == 0 {
		// No platform asked for: BuildKit builds the node's own.
		ctx, cancel := context.WithTimeout(x.ctx, 5*time.Second)
		if st := x.node.RecentStatus(ctx, 5*time.Second); len(st.Platforms) > 0 {
			b.Platforms = st.Platforms[:1]
		}
		cancel()
	}
	for _, e := range exporters(req) {
		if e.Type == client.ExporterImage && e.Attrs["push"] == "true" {
			b.PushWanted = true
		}
		for _, n := range strings.Split(e.Attrs["name"], ",") {
			if n = strings.TrimSpace(n); n != "" && !slices.Contains(b.Tags, n) {
				b.Tags = append(b.Tags, n)
			}
		}
	}
	return b
}

// exporters are the solve's exports (BuildKit ≥ 0.13 lists them; older
// clients name one in the deprecated fields).
func exporters(req *controlapi.SolveRequest) []*controlapi.Exporter {
	if len(req.Exporters) > 0 {
		return req.Exporters
	}
	if req.ExporterDeprecated != "" {
		return []*controlapi.Exporter{{Type: req.ExporterDeprecated, Attrs: req.ExporterAttrsDeprecated}}
	}
	return nil
}

// follow records the solve's progress until it ends, then its outcome.
func (x *Buildx) follow(ctx context.Context, b *builds.Build, s *builder.Solve, ended <-chan solveEnd) builds.Result {
	log := x.log.With("build_id", b.ID, "ref", b.Ref)
	c, err := x.node.conn(ctx)
	if err != nil {
		s.Cancel()
		<-ended
		return failed("%s", err.Error())
	}
	rec := newRecorder(x.engine.records, x.engine.hub, b.ID, log)
	rec.node = x.node.Name
	solveDone := make(chan struct{})
	var end solveEnd
	go func() {
		select {
		case end = <-ended:
		case <-ctx.Done(): // canceled in Manifold: end the client's solve
			s.Cancel()
			end = <-ended
		}
		close(solveDone)
	}()
	statusDone := make(chan struct{})
	pctx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	go func() {
		defer close(statusDone)
		x.progress(pctx, c, b.Ref, rec, solveDone)
	}()
	<-solveDone
	select {
	case <-statusDone:
	case <-time.After(30 * time.Second):
		log.Warn("the build's progress did not end 30 s after its solve; it is recorded as far as it came")
		stopProgress()
		<-statusDone // the recorder is done with the steps before the outcome reads them
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	hist, herr := x.record(hctx, c, b.Ref)
	if herr != nil {
		log.Warn("read the build's history record", "err", herr)
	}
	// The solve's own error carries the failing vertex and the Dockerfile
	// source; the history record's keeps only the message (the rest is in
	// its external error blob).
	var fail error
	switch {
	case end.err != nil:
		fail = grpcerrors.FromGRPC(end.err)
	case hist != nil && hist.Error != nil && hist.Error.Code != int32(codes.OK):
		fail = grpcerrors.FromGRPC(grpcstatus.FromProto(hist.Error).Err())
	}
	if fail != nil {
		if grpcstatus.Code(fail) == codes.Canceled || errors.Is(fail, context.Canceled) {
			return builds.Result{Status: builds.StatusCanceled, Error: "the buildx client canceled the build"}
		}
		res := x.engine.failure(fail, rec, b, x.node, false)
		res.Dockerfile = quotedDockerfile(fail, b.DockerfilePath)
		return res
	}
	res := builds.Result{Status: builds.StatusSucceeded, Manifests: []builds.Manifest{}}
	root, ok, err := exported(end.resp, hist)
	if err != nil {
		return failed("read the build's result from %s: %v", x.node.Name, err)
	}
	if !ok {
		return res // the result stayed in BuildKit (cacheonly, a local folder): nothing to store
	}
	if err := x.fetch(hctx, c, b, root, rec); err != nil {
		// The client has its result; Manifold could not keep a copy.
		res.Error = "the build succeeded, but its result could not be copied into Manifold's store: " + err.Error()
		return res
	}
	r, err := x.engine.result(hctx, root)
	if err != nil {
		return failed("%s", err.Error())
	}
	for i := range r.Manifests {
		r.Manifests[i].Node = x.node.Name
	}
	if b.PushWanted && end.resp != nil {
		now := time.Now().UTC()
		for _, t := range strings.Split(end.resp.ExporterResponse["image.name"], ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			r.Pushes = append(r.Pushes, builds.Push{Target: t, Digest: root.Digest.String(), At: now, OK: true})
		}
	}
	return r
}

// quotedDockerfile is the Dockerfile BuildKit quoted in a build's error (its
// source information carries the file it blames), when it is the build's
// Dockerfile and fits Manifold's limit for one (1 MiB of text); else "".
func quotedDockerfile(err error, name string) string {
	for _, src := range errdefs.Sources(err) {
		info := src.Info
		if info == nil || len(info.Data) == 0 || len(info.Data) > 1<<20 || !utf8.Valid(info.Data) {
			continue
		}
		if name == "" || path.Base(info.Filename) == path.Base(name) {
			return string(info.Data)
		}
	}
	return ""
}

// exported is the image the solve exported: the root descriptor the
// exporter answered with (what buildx prints as containerimage.digest), else
// the first export the history record holds; ok is false when the result
// was no image (cacheonly, a local folder).
func exported(resp *controlapi.SolveResponse, hist *controlapi.BuildHistoryRecord) (ocispec.Descriptor, bool, error) {
	if resp != nil && (resp.ExporterResponse["containerimage.descriptor"] != "" || resp.ExporterResponse["containerimage.digest"] != "") {
		d, err := rootDescriptor(resp.ExporterResponse)
		return d, err == nil, err
	}
	if hist == nil || hist.Result == nil {
		return ocispec.Descriptor{}, false, nil
	}
	for _, i := range slices.Sorted(maps.Keys(hist.Result.Results)) {
		d := hist.Result.Results[i]
		if content.IsIndex(d.MediaType) || content.IsManifest(d.MediaType) {
			dg, err := digest.Parse(d.Digest)
			if err != nil {
				return ocispec.Descriptor{}, false, err
			}
			return ocispec.Descriptor{MediaType: d.MediaType, Digest: dg, Size: d.Size, Annotations: d.Annotations}, true, nil
		}
	}
	return ocispec.Descriptor{}, false, nil
}

// progress feeds the solve's status stream to the recorder. The stream is
// asked for again while the solve runs and sent nothing yet: BuildKit answers
// "no such job" until the solve has begun on the node, and once it has ended
// answers from the build's history.
func (x *Buildx) progress(ctx context.Context, c *client.Client, ref string, rec *recorder, solveDone <-chan struct{}) {
	ch := make(chan *client.SolveStatus, 64)
	recorded := make(chan struct{})
	go func() { defer close(recorded); rec.run(ch) }()
	defer func() { close(ch); <-recorded }()
	got := false
	for attempt := 0; !got && attempt < 60; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
		ended := false
		select {
		case <-solveDone:
			ended = true
		default:
		}
		stream, err := c.ControlClient().Status(ctx, &controlapi.StatusRequest{Ref: ref})
		if err != nil {
			continue
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && got {
					x.log.Warn("the build's progress stream broke", "ref", ref, "err", err)
				}
				break
			}
			got = true
			ch <- client.NewSolveStatus(resp)
		}
		if ended {
			return // asked once more after the solve ended, from the history
		}
	}
}

// record reads the solve's build history record from the node, once it is
// complete (BuildKit completes it before it answers the solve).
func (x *Buildx) record(ctx context.Context, c *client.Client, ref string) (*controlapi.BuildHistoryRecord, error) {
	for attempt := 0; ; attempt++ {
		stream, err := c.ControlClient().ListenBuildHistory(ctx, &controlapi.BuildHistoryRequest{Ref: ref, EarlyExit: true})
		if err != nil {
			return nil, err
		}
		var rec *controlapi.BuildHistoryRecord
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			if ev.Record != nil && ev.Record.Ref == ref {
				rec = ev.Record
			}
		}
		if rec != nil && rec.CompletedAt != nil {
			return rec, nil
		}
		if attempt == 20 {
			return rec, fmt.Errorf("BuildKit has no completed history record for %s", ref)
		}
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// fetch copies the image at root (its index, manifests, attestations,
// configs and layers) from the node's content store into Manifold's, as a
// step of the build so its log shows what was copied and how long it took.
func (x *Buildx) fetch(ctx context.Context, c *client.Client, b *builds.Build, root ocispec.Descriptor, rec *recorder) (err error) {
	steps := rec.own()
	defer steps.close()
	vertex := digest.FromString("manifold fetch " + b.ID)
	end := steps.start(vertex, "[manifold] copy the result "+root.Digest.String()+" into Manifold's store")
	defer func() {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		end(msg)
	}()
	remote := proxy.NewContentStore(c.ContentClient())
	if root.MediaType == "" {
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		if err := content.ReadJSON(ctx, remote, root, &probe); err != nil {
			return fmt.Errorf("read %s on %s: %v", root.Digest, x.node.Name, err)
		}
		root.MediaType = probe.MediaType
	}
	descs, err := content.Reachable(ctx, remote, root)
	if err != nil {
		return fmt.Errorf("walk %s on %s: %v", root.Digest, x.node.Name, err)
	}
	for _, d := range descs {
		if _, err := x.engine.blobs.Info(ctx, d.Digest); err == nil {
			continue // already stored
		}
		ra, err := remote.ReaderAt(ctx, d)
		if err != nil {
			return fmt.Errorf("read blob %s on %s: %v", d.Digest, x.node.Name, err)
		}
		err = ccontent.WriteBlob(ctx, x.engine.blobs, "buildx-"+d.Digest.Encoded(), ccontent.NewReader(ra), d)
		ra.Close()
		if err != nil && !cerrdefs.IsAlreadyExists(err) {
			return fmt.Errorf("store blob %s: %v", d.Digest, err)
		}
		steps.item(vertex, "copied "+d.Digest.String(), d.Size)
	}
	return nil
}
