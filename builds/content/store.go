package content

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
)

// Store is Manifold's content-addressed blob store: containerd's local
// store, plus direct file access for streaming.
type Store struct {
	ccontent.Store
	root string
	// gc: a solve holds it for reading until its result is recorded (Hold);
	// garbage collection takes it for writing.
	gc sync.RWMutex
}

// Hold keeps garbage collection away until release is called: a solve holds
// it from before BuildKit writes its result into the store until the result
// is recorded, so a collection never sees blobs that no build names yet.
func (s *Store) Hold() (release func()) {
	s.gc.RLock()
	return s.gc.RUnlock
}

// OpenStore opens (creating if needed) the blob store at dir.
// containerd's local store writes each blob under an ingest name, checks its
// digest and renames it into place, so a partial blob is never visible.
func OpenStore(dir string) (*Store, error) {
	s, err := openLocalStore(dir)
	if err != nil {
		return nil, err
	}
	// Walk expects the blobs folder, which the store makes only at the first commit.
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	return &Store{Store: s, root: dir}, nil
}

// blobPath is where the local store keeps a committed blob.
func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// CopyBlob writes n bytes of a blob from offset off.
func (s *Store) CopyBlob(w io.Writer, d digest.Digest, off, n int64) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open blob %s: %w", d, err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	// An *os.File behind a LimitedReader lets net/http use sendfile.
	written, err := io.Copy(w, &io.LimitedReader{R: f, N: n})
	if err == nil && written != n {
		err = fmt.Errorf("blob %s ended %d bytes early", d, n-written)
	}
	return err
}

// OpenBlob opens a stored blob for reading.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}
