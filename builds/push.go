package builds

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registries is the credential manager, or nil when none is configured.
func (s *Service) Registries() *Registries { return s.runner.regs }

// Push sends an already built image from the store to target
// ("registry/repo:tag") and records it in the build's history, whether it
// worked or not. A registry that refuses gives its own words back.
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
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Minute)
	defer cancel()
	err = s.pushFromStore(ctx, t, root)
	p := Push{Target: t.Full, Digest: root.Digest.String(), At: time.Now().UTC(), OK: err == nil}
	if err != nil {
		p.Error = err.Error()
	}
	if rerr := s.store.RecordPush(ctx, b.ID, p, false); rerr != nil {
		return p, rerr
	}
	s.log.Info("pushed from the store", "build_id", b.ID, "target", t.Full, "ok", p.OK, "error", p.Error)
	if err != nil {
		return p, CodeErrorf(EUpstream, "push_failed", "the push to %s failed: %s", t.Full, p.Error)
	}
	return p, nil
}

func (s *Service) pushFromStore(ctx context.Context, t TagRef, root ocispec.Descriptor) error {
	pusher, err := s.resolver(ctx).Pusher(ctx, t.Full)
	if err != nil {
		return fmt.Errorf("reach %s: %w", t.Host(), err)
	}
	return remotes.PushContent(ctx, pusher, root, s.runner.content, nil, platforms.All, nil)
}

// resolver talks to registries with the stored credentials, over plain HTTP
// only where allowed.
func (s *Service) resolver(ctx context.Context) remotes.Resolver {
	regs := s.runner.regs
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
	return docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(creds))),
		docker.WithPlainHTTP(plain),
	)})
}
