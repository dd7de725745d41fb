package templates

import (
	"fmt"
	"sort"
	"strings"

	"manifold/builds/explore"
)

// BaseLine names both sides' base images: "busybox:1@sha256:… → scratch";
// a side whose Dockerfile pulled nothing (FROM scratch) is "scratch".
func BaseLine(p explore.PlatformComparison) string {
	name := func(bases []string) string {
		if len(bases) == 0 {
			return "scratch"
		}
		return strings.Join(bases, ", ")
	}
	if !p.BaseChanged {
		return "unchanged: " + name(p.BaseA)
	}
	return name(p.BaseA) + " → " + name(p.BaseB)
}

// DiffFolder is the files of one top-level folder that differ between the
// two sides, shown collapsed behind their counts.
type DiffFolder struct {
	Dir                   string
	Rows                  []DiffRow
	Changed, OnlyA, OnlyB int
}

// Summary is the folder's counts in words.
func (d DiffFolder) Summary() string {
	var parts []string
	if d.Changed > 0 {
		parts = append(parts, fmt.Sprintf("%d changed", d.Changed))
	}
	if d.OnlyA > 0 {
		parts = append(parts, fmt.Sprintf("%d only in A", d.OnlyA))
	}
	if d.OnlyB > 0 {
		parts = append(parts, fmt.Sprintf("%d only in B", d.OnlyB))
	}
	noun := "entries differ"
	if len(d.Rows) == 1 {
		noun = "entry differs"
	}
	return fmt.Sprintf("%d %s: %s", len(d.Rows), noun, strings.Join(parts, ", "))
}

// DiffRow is one path that differs: what each side has there ("" when absent).
type DiffRow struct {
	Path string
	A, B DiffCell
}

// DiffCell is one side of a path: a file's size, a link's target, or a folder.
type DiffCell struct {
	Present bool
	Type    string
	Size    int64
	Link    string
}

// Text is the cell in words: "1.2 KB", "→ /bin/busybox", "folder", "absent".
func (c DiffCell) Text() string {
	switch {
	case !c.Present:
		return "absent"
	case c.Type == "symlink":
		return "→ " + c.Link
	case c.Type == "hardlink":
		return "hard link to " + c.Link
	case c.Type == "dir":
		return "folder"
	case c.Type == "file" || c.Type == "":
		return HumanBytes(c.Size)
	}
	return c.Type
}

// DiffFolders groups a platform's file differences by top-level folder.
func DiffFolders(p explore.PlatformComparison) []DiffFolder {
	byDir := map[string]*DiffFolder{}
	get := func(path string) *DiffFolder {
		dir, _, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if !ok {
			dir = "/"
		} else {
			dir += "/"
		}
		if byDir[dir] == nil {
			byDir[dir] = &DiffFolder{Dir: dir}
		}
		return byDir[dir]
	}
	for _, f := range p.FilesChanged {
		d := get(f.Path)
		d.Changed++
		d.Rows = append(d.Rows, DiffRow{Path: f.Path, A: DiffCell{true, f.TypeA, f.SizeA, f.LinkA}, B: DiffCell{true, f.TypeB, f.SizeB, f.LinkB}})
	}
	for _, f := range p.FilesOnlyA {
		d := get(f.Path)
		d.OnlyA++
		d.Rows = append(d.Rows, DiffRow{Path: f.Path, A: DiffCell{true, f.Type, f.Size, f.Link}})
	}
	for _, f := range p.FilesOnlyB {
		d := get(f.Path)
		d.OnlyB++
		d.Rows = append(d.Rows, DiffRow{Path: f.Path, B: DiffCell{true, f.Type, f.Size, f.Link}})
	}
	out := make([]DiffFolder, 0, len(byDir))
	for _, d := range byDir {
		sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Path < d.Rows[j].Path })
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}
