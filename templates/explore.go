package templates

import (
	"bytes"
	"encoding/json"
	"regexp"
	"sort"

	"manifold/builds"
	"manifold/builds/explore"
)

// IndexPageView is the explorer's index page of a build.
type IndexPageView struct {
	Build *builds.Build
	Index *explore.IndexView
	Host  string // how this server is reached, for the equivalent commands
}

// BlobPageView is the explorer's page of one blob.
type BlobPageView struct {
	Trail Trail
	Blob  *explore.BlobView
	Raw   []Segment // pretty-printed JSON, digests as links (Class "digest")
	Host  string
}

// FilesPageView is a layer's (or a merged platform's) file list.
type FilesPageView struct {
	Trail     Trail
	Digest    string
	Merged    bool
	Sort      string
	Files     []explore.FileEntry
	Truncated string
	Total     int64
	Shown     int
}

// ComparePageView is the comparison page.
type ComparePageView struct {
	A, B       string
	Comparison *explore.Comparison
	Error      string
}

var digestPattern = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// PrettyJSON indents a JSON document and marks every digest in it, so the
// page can link each to its blob.
func PrettyJSON(raw []byte) []Segment {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	s := buf.String()
	var out []Segment
	last := 0
	for _, loc := range digestPattern.FindAllStringIndex(s, -1) {
		out = append(out, Segment{Text: s[last:loc[0]]}, Segment{Class: "digest", Text: s[loc[0]:loc[1]]})
		last = loc[1]
	}
	return append(out, Segment{Text: s[last:]})
}

// FileMode prints a mode like ls does, for the file lists.
func FileMode(f explore.FileEntry) string {
	kinds := map[string]byte{"dir": 'd', "symlink": 'l', "char": 'c', "block": 'b', "fifo": 'p', "hardlink": 'h', "whiteout": 'w', "opaque": 'o'}
	b := []byte("----------")
	if k, ok := kinds[f.Type]; ok {
		b[0] = k
	}
	for i, c := range "rwxrwxrwx" {
		if f.Mode&(1<<(8-i)) != 0 {
			b[i+1] = byte(c)
		}
	}
	return string(b)
}

// SizePtr prints an optional size.
func SizePtr(n *int64) string {
	if n == nil {
		return "not listed yet"
	}
	return HumanBytes(*n)
}

// Signed prints a size change with its sign.
func Signed(n int64) string {
	if n > 0 {
		return "+" + HumanBytes(n)
	}
	if n < 0 {
		return "−" + HumanBytes(-n)
	}
	return "0 B"
}

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
