package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"manifold/builds"
)

// TestBackupDuringABuildRestoresTheSame backs up a data folder while a
// build runs, restores it into a new folder and serves the same builds and
// downloads, byte for byte.
func TestBackupDuringABuildRestoresTheSame(t *testing.T) {
	ctx := context.Background()
	a := startApp(t, "", "--buildkit", env.Addr())
	done := a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}})
	if b := a.wait(t, done); b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	running := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 4 && echo slow > /slow\n",
		"platforms": []string{"linux/amd64"}, "no_cache": true})
	waitStatus(t, a, running, builds.StatusRunning)

	dest := filepath.Join(t.TempDir(), "backup")
	var out strings.Builder
	if err := run(ctx, []string{"backup", "--data", a.Data, dest}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("backup: %v", err)
	}
	if r := a.getBuild(t, running); r.Status != builds.StatusRunning {
		t.Fatalf("the build finished (%s) before the backup did; the test did not back up during a build", r.Status)
	}
	t.Log(strings.TrimSpace(out.String()))
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("backup folder mode %v, %v", fi.Mode(), err)
	}
	if r := a.wait(t, running); r.Status != builds.StatusSucceeded {
		t.Fatalf("the build that ran during the backup: %s %s", r.Status, r.Error)
	}

	// What the original serves, to compare with the restored copy.
	paths := []string{
		"/api/v1/builds/" + done,
		"/api/v1/builds/" + done + "/log",
		"/api/v1/builds/" + done + "/export?format=oci",
		"/api/v1/builds/" + done + "/export?format=docker&platform=linux/arm64",
		"/api/v1/builds/" + done + "/index",
	}
	want := map[string][]byte{}
	for _, p := range paths {
		code, body := a.do(t, "GET", p, "")
		if code != 200 {
			t.Fatalf("GET %s = %d %s", p, code, body)
		}
		want[p] = body
	}
	a.stop()

	// A backup folder is not written over, and a data folder with a database is not restored into.
	if err := run(ctx, []string{"backup", "--data", a.Data, dest}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("backup into a used folder: %v", err)
	}
	if err := run(ctx, []string{"restore", "--data", a.Data, dest}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "already holds a database") {
		t.Fatalf("restore over a database: %v", err)
	}
	if err := run(ctx, []string{"restore", "--data", t.TempDir(), a.Data}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "not a finished backup") {
		t.Fatalf("restore of a folder that is no backup: %v", err)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	out.Reset()
	if err := run(ctx, []string{"restore", "--data", restored, dest}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Log(strings.TrimSpace(out.String()))
	b := startApp(t, restored, "--buildkit", env.Addr())
	for _, p := range paths {
		code, body := b.do(t, "GET", p, "")
		if code != 200 || !bytes.Equal(body, want[p]) {
			t.Fatalf("GET %s after restore = %d, %d bytes; before: %d bytes\n%.400s\n---\n%.400s", p, code, len(body), len(want[p]), body, want[p])
		}
	}
	// The build that was running at the backup's moment was running in the copy:
	// the restored server says it was interrupted, as after a crash.
	if r := b.wait(t, running); r.Status != builds.StatusInterrupted {
		t.Fatalf("the build running during the backup is %s in the copy, want interrupted", r.Status)
	}
	// The copy is a working server: it builds on the restored store.
	if r := b.wait(t, b.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64"}})); r.Status != builds.StatusSucceeded {
		t.Fatalf("a build on the restored folder: %s %s", r.Status, r.Error)
	}
}

// getBuild reads a build once.
func (a *app) getBuild(t *testing.T, id string) *builds.Build {
	t.Helper()
	var b builds.Build
	if code := getJSON(t, a, "/api/v1/builds/"+id, &b); code != 200 {
		t.Fatalf("GET build %s = %d", id, code)
	}
	return &b
}
