package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/content"
	"manifold/outbound"
)

// Client reaches registries on Manifold's behalf: with the stored
// credentials, through the outbound policy, sending from the blob store.
type Client struct {
	creds  *Credentials // nil: no credentials are kept
	policy *outbound.Policy
	blobs  *content.Store
}

// NewClient returns a Client; creds may be nil.
func NewClient(creds *Credentials, policy *outbound.Policy, blobs *content.Store) *Client {
	return &Client{creds: creds, policy: policy, blobs: blobs}
}

// Credentials is the credential manager, or nil when none is configured.
func (c *Client) Credentials() *Credentials { return c.creds }

// Check asks the outbound policy whether a registry host[:port] may be
// reached; role names it in the sentence ("registry", "push target …").
func (c *Client) Check(ctx context.Context, role, hostport string) error {
	return builds.CheckRegistry(ctx, c.policy, role, hostport)
}

// Push sends root and everything it references from the store to t, through
// the outbound policy, and says how it went; progress, when not nil, gets
// one status per blob sent.
func (c *Client) Push(ctx context.Context, t builds.TagRef, root ocispec.Descriptor, progress func(ocispec.Descriptor)) (builds.Push, error) {
	p := builds.Push{Target: t.Full, Digest: root.Digest.String()}
	err := c.pushFromStore(ctx, t, root, progress)
	p.At, p.OK = time.Now().UTC(), err == nil
	if err != nil {
		e, _ := builds.RefusedError("registry", "push_failed", err)
		p.Error = e.Error()
	}
	return p, err
}

func (c *Client) pushFromStore(ctx context.Context, t builds.TagRef, root ocispec.Descriptor, progress func(ocispec.Descriptor)) error {
	pusher, err := c.Resolver(ctx).Pusher(ctx, t.Full)
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
	if err := remotes.PushContent(ctx, pusher, root, c.blobs, nil, platforms.All, wrap); err != nil {
		return err
	}
	if progress != nil {
		progress(root)
	}
	return nil
}

// Resolver talks to registries with the stored credentials, over plain HTTP
// only where allowed, through the outbound policy: every connection it makes,
// including redirects (registries send blob fetches to storage elsewhere) and
// token requests, is checked at dial time.
func (c *Client) Resolver(ctx context.Context) remotes.Resolver {
	regs := c.creds
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
	hc := c.policy.Client()
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

// Records is what the registry service keeps about builds in the database:
// pushes, and what the pull API resolves names through. The db package
// implements it.
type Records interface {
	// RecordPush appends a push to a build's history; pushed marks the build pushed.
	RecordPush(ctx context.Context, id string, p builds.Push, pushed bool) error
	// Servable reports whether a succeeded build that the pull name resolves
	// to ("builds": any) reaches the digest as part of its image.
	Servable(ctx context.Context, name, digest string) (bool, error)
	// ReferringIndexes lists the index digests of up to limit succeeded builds under name that reach digest.
	ReferringIndexes(ctx context.Context, name, digest string, limit int) ([]string, error)
	// PullNames lists the pull API's repository names after last, in order.
	PullNames(ctx context.Context, last string, n int) ([]string, error)
	// TagBuild is the newest succeeded build carrying repo:tag, or "".
	TagBuild(ctx context.Context, repo, tag string) (string, error)
	// RepoKnown reports whether any build carries a tag in repo.
	RepoKnown(ctx context.Context, repo string) (bool, error)
	// RepoTags lists repo's tags of succeeded builds after last, in order.
	RepoTags(ctx context.Context, repo, last string, n int) ([]string, error)
	// SucceededIDs lists succeeded builds' ids after last, oldest first.
	SucceededIDs(ctx context.Context, last string, n int) ([]string, error)
}

// Results finds a succeeded build's image; *content.Service implements it.
type Results interface {
	Result(ctx context.Context, id string) (*builds.Build, ocispec.Descriptor, error)
}

// Service is the registry side of Manifold: promoting a built image to a
// registry, and the pull API's name resolution (which digest a name serves).
type Service struct {
	client    *Client
	blobs     *content.Store
	records   Records
	results   Results
	log       *slog.Logger
	referrers referrerCache
}

// NewService returns the registry service.
func NewService(client *Client, records Records, results Results, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{client: client, blobs: client.blobs, records: records, results: results, log: log}
}

// Credentials is the credential manager, or nil when none is configured.
func (s *Service) Credentials() *Credentials { return s.client.creds }

// Blobs is the blob store the pull API streams from.
func (s *Service) Blobs() *content.Store { return s.blobs }

// Push sends an already built image from the store to target
// ("registry/repo:tag") and records it in the build's history, whether it
// worked or not. A target the outbound policy refuses is refused before
// anything happens. A registry that refuses gives its own words back.
func (s *Service) Push(ctx context.Context, id, target string) (builds.Push, error) {
	b, root, err := s.results.Result(ctx, id)
	if err != nil {
		return builds.Push{}, err
	}
	tags, err := builds.ParseTags([]string{target})
	if err != nil {
		return builds.Push{}, err
	}
	if len(tags) != 1 {
		return builds.Push{}, builds.CodeErrorf(builds.EInvalid, "invalid_tag", "give one tag to push to")
	}
	t := tags[0]
	if err := s.client.Check(ctx, "push target "+t.Full+": registry", t.Host()); err != nil {
		return builds.Push{}, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Minute)
	defer cancel()
	p, err := s.client.Push(ctx, t, root, nil)
	if rerr := s.records.RecordPush(ctx, b.ID, p, false); rerr != nil {
		return p, rerr
	}
	s.log.Info("pushed from the store", "build_id", b.ID, "target", t.Full, "ok", p.OK, "error", p.Error)
	if err != nil {
		if e, ok := builds.RefusedError("push target "+t.Full+": registry", "push_failed", err); ok && builds.ErrorKind(e) == builds.EInvalid {
			return p, e
		}
		return p, builds.CodeErrorf(builds.EUpstream, "push_failed", "the push to %s failed: %s", t.Full, p.Error)
	}
	return p, nil
}
