package templates

import (
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
)

// Trail is where an explorer page was reached from (build → index →
// platform manifest → config or layer), carried in the links' query
// (?build=&platform=&manifest=) so each page can show its breadcrumb.
type Trail struct {
	Build, Platform, Manifest string
}

// ParseTrail reads a trail from a URL's query; a value that is not a build
// id, a platform or a digest is an EInvalid error.
func ParseTrail(q url.Values) (Trail, error) {
	t := Trail{Build: q.Get("build"), Manifest: q.Get("manifest")}
	if t.Build != "" && !builds.ValidID(t.Build) {
		return Trail{}, builds.CodeErrorf(builds.EInvalid, "invalid_trail", "build=%q is not a build id", t.Build)
	}
	if t.Manifest != "" {
		if _, err := digest.Parse(t.Manifest); err != nil {
			return Trail{}, builds.CodeErrorf(builds.EInvalid, "invalid_trail", "manifest=%q is not a digest", t.Manifest)
		}
	}
	if p := q.Get("platform"); p != "" {
		n, err := builds.ParsePlatform(p)
		if err != nil {
			return Trail{}, err
		}
		t.Platform = n
	}
	return t, nil
}

// Query is the trail as a query string ("" when empty), for links onward.
func (t Trail) Query() string {
	v := url.Values{}
	for k, s := range map[string]string{"build": t.Build, "platform": t.Platform, "manifest": t.Manifest} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

// With adds the trail's query to a link.
func (t Trail) With(link string) string {
	q := t.Query()
	if q == "" {
		return link
	}
	if strings.Contains(link, "?") {
		return link + "&" + q
	}
	return link + "?" + q
}

// Crumb is one step of a breadcrumb; the last one is the page itself (no link).
type Crumb struct{ Label, Href string }

// Crumbs is the path to a page: History, the build, its index, the platform
// manifest, then here.
func (t Trail) Crumbs(here string) []Crumb {
	out := []Crumb{{Label: "History", Href: "/builds"}}
	if t.Build != "" {
		out = append(out, Crumb{Label: "Build " + ShortID(t.Build), Href: "/builds/" + t.Build},
			Crumb{Label: "Index", Href: "/builds/" + t.Build + "/index"})
	}
	if t.Manifest != "" {
		label := "Manifest " + ShortDigest(t.Manifest)
		if t.Platform != "" {
			label = t.Platform + " manifest"
		}
		out = append(out, Crumb{Label: label, Href: Trail{Build: t.Build, Platform: t.Platform}.With("/blobs/" + t.Manifest)})
	}
	return append(out, Crumb{Label: here})
}

// manifestTrail is the trail a manifest page hands to its config and layers.
func (v BlobPageView) manifestTrail() Trail {
	t := v.Trail
	t.Manifest = v.Blob.Digest
	return t
}

// blobCrumbs is a blob page's breadcrumb: a manifest is the platform's
// step itself; a config or attestation sits under its manifest.
func blobCrumbs(v BlobPageView) []Crumb {
	kind := strings.ToUpper(v.Blob.Kind[:1]) + v.Blob.Kind[1:]
	if v.Blob.Manifest != nil {
		t := v.Trail
		t.Manifest = ""
		here := "Manifest " + ShortDigest(v.Blob.Digest)
		if t.Platform != "" {
			here = t.Platform + " manifest"
		}
		return t.Crumbs(here)
	}
	return v.Trail.Crumbs(kind + " " + ShortDigest(v.Blob.Digest))
}

// ConfigFact is one image config field the config view shows.
type ConfigFact struct{ Label, Value, TestID string }

// ConfigFacts are the config's fields that are set; empty ones are left out.
func ConfigFacts(c ocispec.ImageConfig) []ConfigFact {
	all := []ConfigFact{
		{"Entrypoint", strings.Join(c.Entrypoint, " "), "config-entrypoint"},
		{"Cmd", strings.Join(c.Cmd, " "), "config-cmd"},
		{"WorkingDir", c.WorkingDir, "config-workdir"},
		{"User", c.User, "config-user"},
		{"StopSignal", c.StopSignal, "config-stopsignal"},
		{"Env", strings.Join(c.Env, "  "), "config-env"},
		{"ExposedPorts", strings.Join(sortedKeys(c.ExposedPorts), " "), "config-ports"},
		{"Volumes", strings.Join(sortedKeys(c.Volumes), " "), "config-volumes"},
	}
	out := all[:0]
	for _, f := range all {
		if f.Value != "" {
			out = append(out, f)
		}
	}
	return out
}
