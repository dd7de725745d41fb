package builds

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// Filter narrows the history. Every field is optional; set ones must all
// hold. ParseFilter builds it from query parameters and checks each value.
type Filter struct {
	Status   Status    // one status
	Platform string    // normalized: the build asked for this platform
	Tag      string    // as given: a tag ("team/app:v1") or a repository ("team/app")
	User     string    // who started the build
	Since    time.Time // created at or after
	Until    time.Time // created before
	Query    string    // free text, at least 3 characters, over tags and the Dockerfile
	Via      string    // ViaBuildx, or ViaManifold for the builds Manifold ran itself

	// Set by ParseFilter from Tag: the repository as the pull API and
	// build_tags name it (TagRef.PullName: "docker.io/library/busybox",
	// "127.0.0.1_5000/team/app"), the tag when one was named, and the
	// normalized name ("registry.example.com/team/app").
	Repo, TagName, Name string
}

// FilterKeys are the query parameters a Filter reads, in the order they are written back.
var FilterKeys = []string{"status", "platform", "tag", "user", "since", "until", "q", "via"}

// ViaManifold, as a filter's via=, keeps the builds Manifold ran itself.
const ViaManifold = "manifold"

// Empty reports whether the filter keeps every build.
func (f Filter) Empty() bool {
	return f.Status == "" && f.Platform == "" && f.Tag == "" && f.User == "" && f.Since.IsZero() && f.Until.IsZero() && f.Query == "" && f.Via == ""
}

var statuses = []Status{StatusQueued, StatusRunning, StatusSucceeded, StatusFailed, StatusCanceled, StatusInterrupted}

// ParseFilter reads status, platform, tag, user, since, until and q through
// get (a URL's query); an unusable value is an EInvalid error with a sentence.
func ParseFilter(get func(string) string) (Filter, error) {
	var f Filter
	for _, k := range FilterKeys {
		if v := get(k); len(v) > 200 || !utf8.ValidString(v) {
			return f, CodeErrorf(EInvalid, "invalid_filter", "%s= is too long or not text; give at most 200 characters", k)
		}
	}
	if s := strings.TrimSpace(get("status")); s != "" {
		if !slices.Contains(statuses, Status(s)) {
			return f, CodeErrorf(EInvalid, "invalid_filter", "status=%q is not a build status; use queued, running, succeeded, failed, canceled or interrupted", s)
		}
		f.Status = Status(s)
	}
	if s := strings.TrimSpace(get("platform")); s != "" {
		p, err := ParsePlatform(s)
		if err != nil {
			return f, err
		}
		f.Platform = p
	}
	if s := strings.TrimSpace(get("tag")); s != "" {
		named, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			return f, CodeErrorf(EInvalid, "invalid_filter", "tag=%q is not a tag or repository like registry.example.com/team/app:1.2 or team/app", s)
		}
		if _, ok := named.(reference.Digested); ok {
			return f, CodeErrorf(EInvalid, "invalid_filter", "tag=%q names a digest; give a tag or a repository", s)
		}
		full := reference.TagNameOnly(named).String()
		f.Tag, f.Name = s, named.Name()
		f.Repo = TagRef{Full: full, Repo: reference.Path(named)}.PullName()
		if t, ok := named.(reference.Tagged); ok {
			f.TagName = t.Tag()
		}
	}
	f.User = strings.TrimSpace(get("user"))
	var err error
	if f.Since, err = parseFilterTime("since", get("since"), false); err != nil {
		return f, err
	}
	if f.Until, err = parseFilterTime("until", get("until"), true); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, CodeErrorf(EInvalid, "invalid_filter", "since= must come before until=")
	}
	if q := strings.TrimSpace(get("q")); q != "" {
		if utf8.RuneCountInString(q) < 3 {
			return f, CodeErrorf(EInvalid, "invalid_filter", "q=%q is too short; search for at least 3 characters", q)
		}
		f.Query = q
	}
	switch v := strings.TrimSpace(get("via")); v {
	case "", ViaBuildx, ViaManifold:
		f.Via = v
	default:
		return f, CodeErrorf(EInvalid, "invalid_filter", "via=%q is not how a build is made; use buildx (docker buildx through the builder endpoint) or manifold", v)
	}
	return f, nil
}

// parseFilterTime reads RFC 3339 or a day (2026-11-28, UTC); a day given as
// until= includes that whole day.
func parseFilterTime(key, s string, end bool) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02T15:04", s); err == nil { // <input type=datetime-local>
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t.UTC(), nil
	}
	return time.Time{}, CodeErrorf(EInvalid, "invalid_filter", "%s=%q is not a date; write 2026-11-28 or 2026-11-28T14:00:00Z", key, s)
}

// Values writes the filter back as query parameters (only the set ones).
func (f Filter) Values() url.Values {
	v := url.Values{}
	if f.Status != "" {
		v.Set("status", string(f.Status))
	}
	if f.Platform != "" {
		v.Set("platform", f.Platform)
	}
	if f.Tag != "" {
		v.Set("tag", f.Tag)
	}
	if f.User != "" {
		v.Set("user", f.User)
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.Format(time.RFC3339))
	}
	if f.Query != "" {
		v.Set("q", f.Query)
	}
	if f.Via != "" {
		v.Set("via", f.Via)
	}
	return v
}

// String is the filter as a query string, "" when empty.
func (f Filter) String() string { return f.Values().Encode() }

// IDFloor is the smallest id NewID could give at t: ids carry their
// creation time in their first ten characters, so a time range is an id range.
func IDFloor(t time.Time) string {
	ms := uint64(max(t.UnixMilli(), 0))
	out := make([]byte, 26)
	for i := range out {
		out[i] = '0'
	}
	for i := 9; i >= 0; i-- {
		out[i] = crockford[ms&31]
		ms >>= 5
	}
	return string(out)
}

// Describe says in words what a filter keeps, for pages ("status failed, tag team/app").
func (f Filter) Describe() string {
	var parts []string
	for _, k := range FilterKeys {
		if v := f.Values().Get(k); v != "" {
			parts = append(parts, fmt.Sprintf("%s %s", k, v))
		}
	}
	return strings.Join(parts, ", ")
}
