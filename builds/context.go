package builds

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ContextLimits bound an uploaded build context.
type ContextLimits struct {
	MaxBytes int64 // the archive and its unpacked content, each; 512 MiB by default
	MaxFiles int   // entries in the archive; 100,000 by default
}

// WithDefaults fills in the default bounds where l leaves them zero.
func (l ContextLimits) WithDefaults() ContextLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 512 << 20
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = 100_000
	}
	return l
}

// Source says where a build's context came from.
type Source struct {
	// Type is "none" (an inline Dockerfile alone), "upload" or "git".
	Type string `json:"type"`
	// Digest and Size name an uploaded context archive in the content store.
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Files  int    `json:"files,omitempty"`
}

// GitSource is a repository BuildKit fetches itself.
type GitSource struct {
	URL    string `json:"url"`
	Ref    string `json:"ref,omitempty"`
	Subdir string `json:"subdir,omitempty"`
}

// Upload is a context archive already written to the content store.
type Upload struct {
	Digest string
	Size   int64
	// Fresh is set when this upload wrote the blob (it did not exist before),
	// so a refused request can remove it again.
	Fresh bool
}

// ingestRef names in-progress uploads in the content store.
func ingestRef() string { return "upload-" + NewID(time.Now()) }

// IngestContext streams an uploaded context archive (tar or tar.gz) into the
// content store, refusing more than limit bytes. The store verifies the digest
// and renames the blob into place only when it is complete.
func IngestContext(ctx context.Context, store content.Store, r io.Reader, limit int64) (Upload, error) {
	w, err := store.Writer(ctx, content.WithRef(ingestRef()))
	if err != nil {
		return Upload{}, fmt.Errorf("open upload: %w", err)
	}
	defer w.Close()
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		abort(ctx, store, w)
		return Upload{}, CodeErrorf(EInvalid, "invalid_context", "the context upload was cut off: %v", err)
	}
	if n > limit {
		abort(ctx, store, w)
		return Upload{}, CodeErrorf(EInvalid, "context_too_large", "the context archive is over the %s limit; leave large files out with a .dockerignore", humanLimit(limit))
	}
	if n == 0 {
		abort(ctx, store, w)
		return Upload{}, CodeErrorf(EInvalid, "invalid_context", "the context archive is empty; send a tar or tar.gz of the build context")
	}
	dg := w.Digest()
	if err := w.Commit(ctx, n, dg); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return Upload{Digest: dg.String(), Size: n}, nil
		}
		return Upload{}, fmt.Errorf("store upload: %w", err)
	}
	return Upload{Digest: dg.String(), Size: n, Fresh: true}, nil
}

func abort(ctx context.Context, store content.Store, w content.Writer) {
	if st, err := w.Status(); err == nil {
		_ = store.Abort(ctx, st.Ref)
	}
}

func humanLimit(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// openArchive opens a stored context archive, gunzipping it when it is gzip.
func openArchive(ctx context.Context, store content.Provider, dg string) (*tar.Reader, func(), error) {
	d, err := digest.Parse(dg)
	if err != nil {
		return nil, nil, CodeErrorf(EInvalid, "invalid_context", "context digest %q is not a digest", dg)
	}
	ra, err := store.ReaderAt(ctx, ocispec.Descriptor{Digest: d})
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, nil, CodeErrorf(ENotFound, "context_not_found", "the context archive %s is no longer stored", dg)
		}
		return nil, nil, err
	}
	br := bufio.NewReader(content.NewReader(ra))
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			ra.Close()
			return nil, nil, CodeErrorf(EInvalid, "invalid_context", "the context is not a readable tar.gz archive: %v", err)
		}
		r = zr
	}
	return tar.NewReader(r), func() { ra.Close() }, nil
}

// contextEntry is one checked archive entry.
type contextEntry struct {
	name string // clean, relative, never "." or ".."
	hdr  *tar.Header
}

// archiveChecker applies the rules every uploaded context obeys.
type archiveChecker struct {
	limits   ContextLimits
	files    int
	bytes    int64
	links    map[string]bool // symlinks seen: nothing may be written through them
	regulars map[string]bool // regular files seen: hard links may point only at these
}

func newArchiveChecker(l ContextLimits) *archiveChecker {
	return &archiveChecker{limits: l.WithDefaults(), links: map[string]bool{}, regulars: map[string]bool{}}
}

func (c *archiveChecker) check(hdr *tar.Header) (contextEntry, bool, error) {
	bad := func(format string, args ...any) (contextEntry, bool, error) {
		return contextEntry{}, false, CodeErrorf(EInvalid, "invalid_context", "the context archive "+format, args...)
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return contextEntry{}, false, nil // metadata the reader already applied
	}
	c.files++
	if c.files > c.limits.MaxFiles {
		return bad("has more than %d entries; leave files out with a .dockerignore", c.limits.MaxFiles)
	}
	raw := hdr.Name
	if raw == "" || strings.ContainsRune(raw, 0) {
		return bad("has an entry with an empty or invalid name")
	}
	if strings.HasPrefix(raw, "/") {
		return bad("has an absolute path %q; paths must be relative to the context", raw)
	}
	for _, part := range strings.Split(strings.TrimSuffix(raw, "/"), "/") {
		if part == ".." {
			return bad("has a path with \"..\": %q; paths must stay inside the context", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return contextEntry{}, false, nil
		}
		return bad("has an entry named %q that is not a folder", raw)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if c.links[dir] {
			return bad("writes %q through the link %q", raw, dir)
		}
	}
	delete(c.links, name)
	delete(c.regulars, name)
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 {
			return bad("has a file %q with a negative size", raw)
		}
		c.bytes += hdr.Size
		if c.bytes > c.limits.MaxBytes {
			return bad("unpacks to more than %s; leave large files out with a .dockerignore", humanLimit(c.limits.MaxBytes))
		}
		c.regulars[name] = true
	case tar.TypeDir:
	case tar.TypeSymlink:
		target := hdr.Linkname
		if target == "" || strings.HasPrefix(target, "/") {
			return bad("has a link %q to %q, outside the context; links must be relative and stay inside it", raw, target)
		}
		resolved := path.Join(path.Dir(name), target)
		if resolved == ".." || strings.HasPrefix(resolved, "../") {
			return bad("has a link %q to %q, outside the context; links must stay inside it", raw, target)
		}
		c.links[name] = true
	case tar.TypeLink:
		target := path.Clean(hdr.Linkname)
		if !c.regulars[target] {
			return bad("has a hard link %q to %q, which is not a file earlier in the archive", raw, hdr.Linkname)
		}
	case tar.TypeChar, tar.TypeBlock:
		return bad("has a device %q; contexts hold files, folders and links only", raw)
	case tar.TypeFifo:
		return bad("has a named pipe %q; contexts hold files, folders and links only", raw)
	default:
		return bad("has an entry %q of unsupported type %q", raw, string(hdr.Typeflag))
	}
	return contextEntry{name: name, hdr: hdr}, true, nil
}

func tarError(err error) error {
	return CodeErrorf(EInvalid, "invalid_context", "the context is not a readable tar or tar.gz archive: %v", err)
}

// ScanContext reads an uploaded archive once, applying every rule, and
// reports how many entries it has and whether it holds the named files.
func ScanContext(ctx context.Context, store content.Provider, dg string, limits ContextLimits, want ...string) (files int, found map[string]bool, err error) {
	tr, closeFn, err := openArchive(ctx, store, dg)
	if err != nil {
		return 0, nil, err
	}
	defer closeFn()
	c := newArchiveChecker(limits)
	found = map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, tarError(err)
		}
		e, ok, err := c.check(hdr)
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			continue
		}
		for _, w := range want {
			if e.name == w && hdr.Typeflag != tar.TypeDir {
				found[w] = true
			}
		}
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
	}
	if c.files == 0 {
		return 0, nil, CodeErrorf(EInvalid, "invalid_context", "the context archive has no entries")
	}
	return c.files, found, nil
}

// ExtractContext unpacks an uploaded archive into dir (which must exist and
// be empty) under the same rules, never following a link while writing.
func ExtractContext(ctx context.Context, store content.Provider, dg, dir string, limits ContextLimits) error {
	tr, closeFn, err := openArchive(ctx, store, dg)
	if err != nil {
		return err
	}
	defer closeFn()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	c := newArchiveChecker(limits)
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirTimes []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return tarError(err)
		}
		e, ok, err := c.check(hdr)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := mkdirAllIn(root, path.Dir(e.name)); err != nil {
			return err
		}
		mode := os.FileMode(hdr.Mode) & 0o777
		if fi, err := root.Lstat(e.name); err == nil && (!fi.IsDir() || hdr.Typeflag != tar.TypeDir) {
			_ = root.RemoveAll(e.name) // a later entry replaces an earlier one
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(e.name, mode|0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("unpack %s: %w", e.name, err)
			}
			dirTimes = append(dirTimes, dirTime{e.name, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA:
			f, err := root.OpenFile(e.name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return fmt.Errorf("unpack %s: %w", e.name, err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return tarError(err)
			}
			_ = root.Chtimes(e.name, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, e.name); err != nil {
				return fmt.Errorf("unpack %s: %w", e.name, err)
			}
		case tar.TypeLink:
			if err := root.Link(path.Clean(hdr.Linkname), e.name); err != nil {
				return fmt.Errorf("unpack %s: %w", e.name, err)
			}
		}
	}
	for i := len(dirTimes) - 1; i >= 0; i-- {
		_ = root.Chtimes(dirTimes[i].name, dirTimes[i].t, dirTimes[i].t)
	}
	return nil
}

func mkdirAllIn(root *os.Root, dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	if fi, err := root.Lstat(dir); err == nil {
		if fi.IsDir() {
			return nil
		}
		return CodeErrorf(EInvalid, "invalid_context", "the context archive puts files under %q, which is not a folder", dir)
	}
	if err := mkdirAllIn(root, path.Dir(dir)); err != nil {
		return err
	}
	if err := root.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("unpack %s: %w", dir, err)
	}
	return nil
}

// CleanContextPath checks a path inside the context (such as dockerfile_path)
// and returns it cleaned; it must stay inside the context.
func CleanContextPath(field, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if strings.ContainsRune(p, 0) || strings.HasPrefix(p, "/") || filepath.IsAbs(p) {
		return "", CodeErrorf(EInvalid, "invalid_path", "%s %q must be a path relative to the context, like docker/Dockerfile", field, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", CodeErrorf(EInvalid, "invalid_path", "%s %q leaves the context; use a path inside it", field, p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", CodeErrorf(EInvalid, "invalid_path", "%s %q names the context itself, not a file", field, p)
	}
	return c, nil
}
