package builds

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver/pb"
	srctypes "github.com/moby/buildkit/source/types"
	spb "github.com/moby/buildkit/sourcepolicy/pb"
	"github.com/moby/buildkit/sourcepolicy/policysession"

	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"

	"manifold/builds/outbound"
)

// refusedError turns the outbound policy's words into the user's sentence:
// role is what the host is to the user ("registry", "git", "push target").
// A refusal is the caller's to fix (400); a connection that failed is the
// upstream's (502), said the same way whatever the network answered. Other
// errors come back as they are, with ok false.
func refusedError(role, code string, err error) (error, bool) {
	var r *outbound.Refusal
	if errors.As(err, &r) {
		return CodeErrorf(EInvalid, "address_not_allowed", "%s %s", role, r.Error()), true
	}
	var d *outbound.DialError
	if errors.As(err, &d) {
		return CodeErrorf(EUpstream, code, "could not reach %s host %s", role, d.Host), true
	}
	return err, false
}

// splitHostPort splits a registry host ("r.example.com", "r:5000", "[::1]:5000")
// into host and port, the port being defaultPort when none is given.
func splitHostPort(hostport, defaultPort string) (string, string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), defaultPort
}

// checkRegistry asks the policy whether a registry host[:port] may be reached.
func (e *Engine) checkRegistry(ctx context.Context, role, hostport string) error {
	h, p := splitHostPort(hostport, "443")
	if err := e.outbound.Check(ctx, h, p); err != nil {
		e, _ := refusedError(role, "registry_error", err)
		return e
	}
	return nil
}

// gitHostPort is the host and port a git URL names.
func gitHostPort(u string) (string, string) {
	if m := scpLike.FindStringSubmatch(u); m != nil {
		return m[2], "22"
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", ""
	}
	return p.Hostname(), outbound.DefaultPort(p.Scheme, p.Port())
}

// checkGit asks the policy whether a git context's host may be reached.
func (e *Engine) checkGit(ctx context.Context, g GitSource) error {
	h, p := gitHostPort(g.URL)
	if err := e.outbound.Check(ctx, h, p); err != nil {
		e, _ := refusedError("git", "registry_error", err)
		return e
	}
	return nil
}

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
		h, p := gitHostPort(full)
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
		h, p := splitHostPort(reference.Domain(named), "")
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
