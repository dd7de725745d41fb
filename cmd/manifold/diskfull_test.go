package main

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"manifold/builds"
)

// TestDiskFull fills the data folder's filesystem (a small tmpfs the test
// mounts) while a build exports its result: the build fails saying the disk
// is full, SQLite stays consistent, no partial blob is visible, and once
// space is freed the next build works.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("this machine cannot mount a tmpfs for the test (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	data := filepath.Join(mnt, "data")
	a := startApp(t, data, "--buildkit", env.Addr())
	if b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN echo small > /small\n", "platforms": []string{"linux/amd64"}, "no_cache": true})); b.Status != builds.StatusSucceeded {
		t.Fatalf("first build: %s %s", b.Status, b.Error)
	}
	// Leave about 12 MB free, then build a 30 MB layer.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		var st syscallStatfs
		if err := statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		if st.free() < 12<<20 {
			break
		}
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	full := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN head -c 30000000 /dev/urandom > /big\n", "platforms": []string{"linux/amd64"}, "no_cache": true}))
	if full.Status != builds.StatusFailed || !strings.Contains(full.Error, "disk") || !strings.Contains(full.Error, "full") {
		t.Fatalf("build on a full disk: %s %q", full.Status, full.Error)
	}
	verifyStore(t, data)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "manifold.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	db.Close()

	// Space freed: the same build works.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN head -c 30000000 /dev/urandom > /big\n", "platforms": []string{"linux/amd64"}, "no_cache": true})); b.Status != builds.StatusSucceeded {
		t.Fatalf("build after space was freed: %s %s", b.Status, b.Error)
	}
	verifyStore(t, data)
}
