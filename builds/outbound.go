package builds

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"

	"manifold/outbound"
)

// RefusedError turns the outbound policy's words into the user's sentence:
// role is what the host is to the user ("registry", "git", "push target").
// A refusal is the caller's to fix (400); a connection that failed is the
// upstream's (502), said the same way whatever the network answered. Other
// errors come back as they are, with ok false.
func RefusedError(role, code string, err error) (error, bool) {
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

// SplitHostPort splits a registry host ("r.example.com", "r:5000", "[::1]:5000")
// into host and port, the port being defaultPort when none is given.
func SplitHostPort(hostport, defaultPort string) (string, string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), defaultPort
}

// CheckRegistry asks the policy whether a registry host[:port] may be
// reached; role names the host in the sentence ("registry", "push target …").
func CheckRegistry(ctx context.Context, policy *outbound.Policy, role, hostport string) error {
	h, p := SplitHostPort(hostport, "443")
	if err := policy.Check(ctx, h, p); err != nil {
		e, _ := RefusedError(role, "registry_error", err)
		return e
	}
	return nil
}

// GitHostPort is the host and port a git URL names.
func GitHostPort(u string) (string, string) {
	if m := scpLike.FindStringSubmatch(u); m != nil {
		return m[2], "22"
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", ""
	}
	return p.Hostname(), outbound.DefaultPort(p.Scheme, p.Port())
}

// CheckGit asks the policy whether a git context's host may be reached.
func CheckGit(ctx context.Context, policy *outbound.Policy, g GitSource) error {
	h, p := GitHostPort(g.URL)
	if err := policy.Check(ctx, h, p); err != nil {
		e, _ := RefusedError("git", "registry_error", err)
		return e
	}
	return nil
}
