package builds

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registries is the credential manager, or nil when none is configured.
func (s *Service) Registries() *Registries { return s.runner.regs }

// Push sends an already built image from the store to target
// ("registry/repo:tag") and records it in the build's history, whether it
// worked or not. A target the outbound policy refuses is refused before
// anything happens. A registry that refuses gives its own words back.
func (s *Service) Push(ctx context.Context, id, target string) (Push, error) {
	b, root, err := s.result(ctx, id)
	if err != nil {
		return Push{}, err
	}
	tags, err := ParseTags([]string{target})
	if err != nil {
		return Push{}, err
	}
	if len(tags) != 1 {
		return Push{}, CodeErrorf(EInvalid, "invalid_tag", "give one tag to push to")
	}
	t := tags[0]
	if err := s.runner.engine.checkRegistry(ctx, "push target "+t.Full+": registry", t.Host()); err != nil {
		return Push{}, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Minute)
	defer cancel()
	p, err := s.runner.engine.push(ctx, t, root, nil)
	if rerr := s.store.RecordPush(ctx, b.ID, p, false); rerr != nil {
		return p, rerr
	}
	s.log.Info("pushed from the store", "build_id", b.ID, "target", t.Full, "ok", p.OK, "error", p.Error)
	if err != nil {
		if e, ok := refusedError("push target "+t.Full+": registry", "push_failed", err); ok && ErrorKind(e) == EInvalid {
			return p, e
		}
		return p, CodeErrorf(EUpstream, "push_failed", "the push to %s failed: %s", t.Full, p.Error)
	}
	return p, nil
}

// push sends root and everything it references from the store to t, through
// the outbound policy, and says how it went; progress, when not nil, gets
// one status per blob sent.
func (e *Engine) push(ctx context.Context, t TagRef, root ocispec.Descriptor, progress func(ocispec.Descriptor)) (Push, error) {
	p := Push{Target: t.Full, Digest: root.Digest.String()}
	err := e.pushFromStore(ctx, t, root, progress)
	p.At, p.OK = time.Now().UTC(), err == nil
	if err != nil {
		e, _ := refusedError("registry", "push_failed", err)
		p.Error = e.Error()
	}
	return p, err
}

func (e *Engine) pushFromStore(ctx context.Context, t TagRef, root ocispec.Descriptor, progress func(ocispec.Descriptor)) error {
	pusher, err := e.resolver(ctx).Pusher(ctx, t.Full)
	if err != nil {
		return fmt.Errorf("reach %s: %w", t.Host(), err)
	}
	var wrap func(images.Handler) images.Handler
	if progress != nil {
		wrap = func(h images.Handler) images.Handler {
			return images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
				children, err := h.Handle(ctx, d)
				if err == nil && !images.IsManifestType(d.MediaType) && !images.IsIndexType(d.MediaType) {
					progress(d)
				}
				return children, err
			})
		}
	}
	if err := remotes.PushContent(ctx, pusher, root, e.content, nil, platforms.All, wrap); err != nil {
		return err
	}
	if progress != nil {
		progress(root)
	}
	return nil
}

// pushAll pushes a finished build's result to each of its tags, after the
// solve, from the store: the connections are Manifold's, so the outbound
// policy checks every address they reach. Progress goes to the build's log as
// one step per tag.
func (e *Engine) pushAll(ctx context.Context, b *Build, root ocispec.Descriptor, rec *recorder) []Push {
	tags, err := ParseTags(b.Tags)
	if err != nil {
		p := Push{Digest: root.Digest.String(), At: time.Now().UTC(), Error: ErrorMessage(err)}
		return []Push{p}
	}
	ch := make(chan *client.SolveStatus, 16)
	done := make(chan struct{})
	go func() { defer close(done); rec.run(ch) }()
	var out []Push
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
		if err := e.checkRegistry(ctx, "registry", t.Host()); err != nil {
			// Checked when the build was started; the allow-list may have changed since.
			out = append(out, Push{Target: t.Full, Digest: root.Digest.String(), At: time.Now().UTC(), Error: ErrorMessage(err)})
		} else {
			p, _ := e.push(ctx, t, root, progress)
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

// resolver talks to registries with the stored credentials, over plain HTTP
// only where allowed, through the outbound policy: every connection it makes,
// including redirects (registries send blob fetches to storage elsewhere) and
// token requests, is checked at dial time.
func (e *Engine) resolver(ctx context.Context) remotes.Resolver {
	regs := e.regs
	creds := func(host string) (string, string, error) {
		if regs == nil {
			return "", "", nil
		}
		u, p, _, err := regs.login(ctx, host)
		return u, p, err
	}
	plain := func(host string) (bool, error) {
		if regs == nil {
			return isLoopbackHost(host), nil
		}
		return regs.Insecure(ctx, host), nil
	}
	hc := e.outbound.Client()
	auth := docker.NewDockerAuthorizer(docker.WithAuthCreds(creds), docker.WithAuthClient(hc))
	checkRedirect := hc.CheckRedirect
	// What containerd does on a redirect when the client has no CheckRedirect,
	// after the policy's own check.
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkRedirect(req, via); err != nil {
			return err
		}
		return auth.Authorize(req.Context(), req)
	}
	return docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithAuthorizer(auth),
		docker.WithPlainHTTP(plain),
		docker.WithClient(hc),
	)})
}
