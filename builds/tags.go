package builds

import (
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

// PullRepos are the names under which the pull API serves the tag.
func (t TagRef) PullRepos() []string {
	repos := []string{t.Repo}
	if short, ok := strings.CutPrefix(t.Repo, "library/"); ok && t.Host() == "docker.io" {
		repos = append(repos, short)
	}
	return repos
}
