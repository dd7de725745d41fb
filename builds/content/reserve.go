package content

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Reserve is a file of zeros kept in the data folder so that, when the disk
// fills up, Manifold can free room to record what happened (SQLite needs a
// little space to commit even a failure). Refill makes it again once there
// is room.
type Reserve struct {
	path string
	size int64
	mu   sync.Mutex
}

// ReserveSize is how much room the reserve keeps: enough for SQLite to
// record a build's end and a few thousand log lines.
const ReserveSize = 16 << 20

// OpenReserve keeps a reserve of size bytes at dir/.reserve, making it now
// when there is room.
func OpenReserve(dir string, size int64) *Reserve {
	r := &Reserve{path: filepath.Join(dir, ".reserve"), size: size}
	r.Refill()
	return r
}

// Release removes the reserve; it reports whether there was one to free.
func (r *Reserve) Release() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return os.Remove(r.path) == nil
}

// Refill makes the reserve again when it is missing and the disk has room
// for it four times over; it says whether the reserve is in place.
func (r *Reserve) Refill() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fi, err := os.Stat(r.path); err == nil && fi.Size() == r.size {
		return true
	}
	var st syscall.Statfs_t
	if syscall.Statfs(filepath.Dir(r.path), &st) != nil || int64(st.Bavail)*int64(st.Bsize) < 4*r.size {
		return false
	}
	tmp := r.path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_, err = io.CopyN(f, zeros{}, r.size) // written, not sparse: the blocks are really taken
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return false
	}
	return os.Rename(tmp, r.path) == nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// DiskFull reports whether err says a disk is full: ENOSPC, or SQLite's
// "database or disk is full".
func DiskFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "no space left on device") || strings.Contains(msg, "database or disk is full")
}
