package templates

import (
	"testing"

	"manifold/builds/explore"
)

func TestBaseLineAndDiffFolders(t *testing.T) {
	p := explore.PlatformComparison{BaseA: []string{"docker.io/library/busybox:1@sha256:abc"}, BaseChanged: true,
		FilesChanged: []explore.FileChange{{Path: "bin/sh", TypeA: "symlink", TypeB: "symlink", LinkA: "busybox", LinkB: "dash"}},
		FilesOnlyA:   []explore.FileEntry{{Path: "data/x/f", Type: "file", Size: 3}, {Path: "data/y", Type: "file", Size: 2048}},
		FilesOnlyB:   []explore.FileEntry{{Path: "data/z", Type: "symlink", Link: "/etc/hosts"}, {Path: "top", Type: "file", Size: 1}}}
	if got := BaseLine(p); got != "docker.io/library/busybox:1@sha256:abc → scratch" {
		t.Fatalf("BaseLine = %q", got)
	}
	ds := DiffFolders(p)
	if len(ds) != 3 || ds[0].Dir != "/" || ds[1].Dir != "bin/" || ds[2].Dir != "data/" {
		t.Fatalf("folders = %+v", ds)
	}
	if s := ds[2].Summary(); s != "3 entries differ: 2 only in A, 1 only in B" {
		t.Fatalf("summary = %q", s)
	}
	if a, b := ds[1].Rows[0].A.Text(), ds[1].Rows[0].B.Text(); a != "→ busybox" || b != "→ dash" {
		t.Fatalf("a changed symlink reads %q / %q", a, b)
	}
	if z := ds[2].Rows[2]; z.Path != "data/z" || z.A.Text() != "absent" || z.B.Text() != "→ /etc/hosts" {
		t.Fatalf("a new symlink reads %+v", z)
	}
}
