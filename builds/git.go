package builds

import (
	"net"
	"net/url"
	"regexp"
	"strings"
)

var (
	// scpLike is git's user@host:path form of an ssh URL.
	scpLike = regexp.MustCompile(`^([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+):([A-Za-z0-9._~/-]+)$`)
	gitRef  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/+-]*$`)
	subdir  = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._/ +-]*$`)
)

// Validate checks a git context: the URL's scheme is https, ssh or git (never
// file:// or a local path), it carries no password, and neither the ref nor
// the subdir can be read as an option or leave the repository.
func (g GitSource) Validate() (GitSource, error) {
	bad := func(format string, args ...any) (GitSource, error) {
		return g, CodeErrorf(EInvalid, "invalid_git", format, args...)
	}
	g.URL, g.Ref, g.Subdir = strings.TrimSpace(g.URL), strings.TrimSpace(g.Ref), strings.TrimSpace(g.Subdir)
	if g.URL == "" {
		return bad("the git URL is empty; give one such as https://github.com/org/repo.git")
	}
	if len(g.URL) > 2048 || strings.ContainsAny(g.URL, " \t\r\n#\x00\\") {
		return bad("git URL %q has spaces, '#' or other characters a URL cannot hold; give the ref and subdir in their own fields", g.URL)
	}
	if strings.HasPrefix(g.URL, "-") {
		return bad("git URL %q starts with '-'", g.URL)
	}
	if m := scpLike.FindStringSubmatch(g.URL); m != nil {
		if strings.HasPrefix(m[2], "-") {
			return bad("git URL %q has a host starting with '-'", g.URL)
		}
		if strings.HasPrefix(m[3], "-") {
			return bad("git URL %q has a path starting with '-'", g.URL)
		}
	} else {
		u, err := url.Parse(g.URL)
		if err != nil {
			return bad("git URL %q cannot be read: %v", g.URL, err)
		}
		switch u.Scheme {
		case "https", "ssh", "git":
		case "":
			return bad("git URL %q has no scheme; use https://, ssh:// or git://", g.URL)
		default:
			return bad("git URL scheme %q is not accepted; use https://, ssh:// or git://", u.Scheme)
		}
		host := u.Hostname()
		if host == "" || strings.HasPrefix(host, "-") {
			return bad("git URL %q names no host", g.URL)
		}
		if net.ParseIP(host) == nil && !regexp.MustCompile(`^[A-Za-z0-9.-]+$`).MatchString(host) {
			return bad("git URL %q has an invalid host %q", g.URL, host)
		}
		if _, hasPass := u.User.Password(); hasPass {
			return bad("git URL %q carries a password; Manifold does not store credentials in URLs", u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return bad("git URL %q has a query or fragment; give the ref and subdir in their own fields", g.URL)
		}
		if u.Path == "" || u.Path == "/" {
			return bad("git URL %q names no repository", g.URL)
		}
	}
	if g.Ref != "" {
		if len(g.Ref) > 255 || !gitRef.MatchString(g.Ref) || strings.Contains(g.Ref, "..") ||
			strings.Contains(g.Ref, "//") || strings.HasSuffix(g.Ref, "/") || strings.HasSuffix(g.Ref, ".lock") {
			return bad("git ref %q is not a branch, tag or commit name; use letters, digits and . _ / + - and do not start with '-'", g.Ref)
		}
	}
	if g.Subdir != "" {
		clean, err := CleanContextPath("git subdir", strings.TrimSuffix(g.Subdir, "/"))
		if err != nil {
			return g, CodeErrorf(EInvalid, "invalid_git", "%s", ErrorMessage(err))
		}
		if !subdir.MatchString(clean) {
			return bad("git subdir %q has characters a folder name here cannot have (':', '#', …)", g.Subdir)
		}
		g.Subdir = clean
	}
	return g, nil
}
