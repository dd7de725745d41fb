package buildkit

import (
	"context"
	"net/url"
	"strings"

	"github.com/distribution/reference"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver/pb"
	srctypes "github.com/moby/buildkit/source/types"
	spb "github.com/moby/buildkit/sourcepolicy/pb"
	"github.com/moby/buildkit/sourcepolicy/policysession"

	"manifold/builds"
	"manifold/outbound"
)

// sourcePolicy is the session BuildKit asks, for every source a solve loads,
// whether it may fetch it: URLs (ADD http://…) and git repositories go
// through the whole policy; image references are refused only when they name
// a refused address or localhost, with no name lookup (BuildKit may map them
// to a mirror, and offline machines resolve nothing); local sources are the
// session's own; anything else is denied.
func (e *Engine) sourcePolicy() session.Attachable {
	return policysession.NewPolicyProvider(func(ctx context.Context, req *policysession.CheckPolicyRequest) (*policysession.DecisionResponse, *gatewaypb.ResolveSourceMetaRequest, error) {
		var src *pb.SourceOp
		if req.Source != nil {
			src = req.Source.Source
		}
		if src == nil {
			return deny("a source without an identifier is not fetched"), nil, nil
		}
		if why := e.sourceRefusal(ctx, src); why != "" {
			e.log.Info("source refused by the outbound policy", "source", src.Identifier, "reason", why)
			return deny(why), nil, nil
		}
		return &policysession.DecisionResponse{Action: spb.PolicyAction_ALLOW}, nil, nil
	})
}

func deny(msg string) *policysession.DecisionResponse {
	return &policysession.DecisionResponse{Action: spb.PolicyAction_DENY, DenyMessages: []*policysession.DenyMessage{{Message: msg}}}
}

// sourceRefusal says why src may not be fetched, or "" when it may.
func (e *Engine) sourceRefusal(ctx context.Context, src *pb.SourceOp) string {
	id := src.Identifier
	scheme, rest, _ := strings.Cut(id, "://")
	shown := outbound.Quote(id)
	switch scheme {
	case srctypes.LocalScheme:
		return ""
	case srctypes.HTTPScheme, srctypes.HTTPSScheme:
		u, err := url.Parse(id)
		if err != nil || u.Host == "" {
			return "source " + shown + " is not a URL this server fetches"
		}
		if err := e.outbound.Check(ctx, u.Hostname(), outbound.DefaultPort(u.Scheme, u.Port())); err != nil {
			return "source " + shown + " was refused: URL " + err.Error()
		}
		return ""
	case srctypes.GitScheme:
		full := src.Attrs[pb.AttrFullRemoteURL]
		if full == "" {
			full = "https://" + rest
		}
		h, p := builds.GitHostPort(full)
		if h == "" {
			return "source " + outbound.Quote(full) + " is not a git URL this server fetches"
		}
		if err := e.outbound.Check(ctx, h, p); err != nil {
			return "git source " + outbound.Quote(full) + " was refused: git " + err.Error()
		}
		return ""
	case srctypes.DockerImageScheme, srctypes.DockerImageBlobScheme:
		named, err := reference.ParseNormalizedNamed(rest)
		if err != nil {
			return "image " + outbound.Quote(rest) + " is not an image reference"
		}
		h, p := builds.SplitHostPort(reference.Domain(named), "")
		if err := e.outbound.CheckLiteral(h, p); err != nil {
			return "image " + outbound.Quote(rest) + " was refused: registry " + err.Error()
		}
		return ""
	}
	return "source " + shown + " is of a kind this server does not fetch"
}

// denyMessages are the policy's sentences carried by a failed solve's error.
func denyMessages(err error) []string {
	var out []string
	for _, m := range policysession.DenyMessages(err) {
		if m != nil && m.Message != "" {
			out = append(out, m.Message)
		}
	}
	return out
}
