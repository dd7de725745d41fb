package content

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestHelperWriteForever is not a test: the kill test runs it in a child
// process, which writes half a blob into the store and then hangs.
func TestHelperWriteForever(t *testing.T) {
	dir := os.Getenv("MANIFOLD_HALF_WRITE_STORE")
	if dir == "" {
		t.Skip("run by TestKillDuringWriteLeavesNoBlob")
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Writer(context.Background(), content.WithRef("half"))
	if err != nil {
		t.Fatal(err)
	}
	half := make([]byte, 4<<20)
	_, _ = rand.Read(half)
	if _, err := w.Write(half); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "half-written"), nil, 0o644)
	time.Sleep(time.Hour)
}

func TestKillDuringWriteLeavesNoBlob(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriteForever$")
	cmd.Env = append(os.Environ(), "MANIFOLD_HALF_WRITE_STORE="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "half-written")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the writer never wrote")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill() // SIGKILL in the middle of the write
	_ = cmd.Wait()

	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var blobs int
	if err := s.Walk(context.Background(), func(content.Info) error { blobs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if blobs != 0 {
		t.Fatalf("a killed write left %d visible blobs", blobs)
	}
	// The unfinished ingest is visible only as such, and can be aborted.
	statuses, err := s.ListStatuses(context.Background())
	if err != nil || len(statuses) != 1 || statuses[0].Ref != "half" {
		t.Fatalf("ingests after the kill: %+v %v", statuses, err)
	}
	if err := s.Abort(context.Background(), "half"); err != nil {
		t.Fatal(err)
	}
	// A write whose bytes do not match the digest it claims is refused.
	data := []byte("the real bytes")
	err = content.WriteBlob(context.Background(), s, "lie", strings.NewReader("other bytes!!!"), ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))})
	if err == nil {
		t.Fatal("a blob with the wrong digest was accepted")
	}
	if _, err := s.Info(context.Background(), digest.FromBytes(data)); err == nil {
		t.Fatal("the refused blob is visible")
	}
	if err := content.WriteBlob(context.Background(), s, "ok", strings.NewReader(string(data)), ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}); err != nil {
		t.Fatalf("a good write after the failures: %v", err)
	}
}
