package builds

import (
	"encoding/hex"
	"net"
	"strings"

	"github.com/distribution/reference"
)

// TagRef is one tag a build carries, split for the pull API.
type TagRef struct {
	Full string // normalized: "docker.io/library/app:1.0", "127.0.0.1:5000/team/app:1.2"
	Repo string // the path without the registry: "library/app", "team/app"
	Tag  string
}

// ParseTags checks image references like "registry/repo:tag" and normalizes
// them; a reference without a tag gets ":latest".
func ParseTags(in []string) ([]TagRef, error) {
	if len(in) > 32 {
		return nil, CodeErrorf(EInvalid, "invalid_tag", "%d tags given; at most 32 are accepted", len(in))
	}
	var out []TagRef
	seen := map[string]bool{}
	for _, s := range in {
		s = strings.TrimSpace(s)
		named, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			return nil, CodeErrorf(EInvalid, "invalid_tag", "tag %q is not an image reference like registry.example.com/team/app:1.2: %v", s, err)
		}
		if _, ok := named.(reference.Digested); ok {
			return nil, CodeErrorf(EInvalid, "invalid_tag", "tag %q names a digest; give a tag such as :1.2 instead", s)
		}
		tagged := reference.TagNameOnly(named).(reference.NamedTagged)
		full := tagged.String()
		if seen[full] {
			continue
		}
		seen[full] = true
		out = append(out, TagRef{Full: full, Repo: reference.Path(tagged), Tag: tagged.Tag()})
	}
	return out, nil
}

// Host is the registry the tag names ("docker.io" when it names none).
func (t TagRef) Host() string {
	named, err := reference.ParseNormalizedNamed(t.Full)
	if err != nil {
		return ""
	}
	return reference.Domain(named)
}

// PullName is the one repository name under which the pull API serves the
// tag: the registry host, then the path ("docker.io/library/app",
// "registry.example.com/team/app"). A port joins the host with '_', which no
// registry host name contains ("127.0.0.1:5000/team/app" is served as
// "127.0.0.1_5000/team/app"), and an IPv6 host is written as "ip6-" and its
// 32 hex digits; hosts are lower-cased, as DNS compares them. Two different
// tags therefore never share a name, and the same tag always gets the same.
func (t TagRef) PullName() string {
	return pullHost(t.Host()) + "/" + t.Repo
}

func pullHost(host string) string {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, ""
	}
	h = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		h = "ip6-" + hex.EncodeToString(ip.To16())
	}
	if port != "" {
		h += "_" + port
	}
	return h
}
