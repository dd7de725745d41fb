package builds

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"strings"
	"time"
)

// FolderUpload turns the files of a folder chosen in a browser (each part
// named by its path inside the folder) into a context archive in the store.
// Files pass through one scratch file so each tar header knows its size; the
// archive itself is written to a temporary file and removed once stored.
type FolderUpload struct {
	svc     *Service
	archive *os.File
	scratch *os.File
	tw      *tar.Writer
	bytes   int64
	files   int
}

// NewFolderUpload starts an archive for a folder upload.
func (s *Service) NewFolderUpload() (*FolderUpload, error) {
	a, err := os.CreateTemp(s.workDir, "folder-*.tar")
	if err != nil {
		return nil, err
	}
	sc, err := os.CreateTemp(s.workDir, "folder-file-*")
	if err != nil {
		a.Close()
		os.Remove(a.Name())
		return nil, err
	}
	return &FolderUpload{svc: s, archive: a, scratch: sc, tw: tar.NewWriter(a)}, nil
}

// Add appends one file. The browser names it "chosen-folder/sub/file"; the
// chosen folder's own name is dropped, so the folder is the context's root.
func (u *FolderUpload) Add(name string, r io.Reader) error {
	name = strings.ReplaceAll(name, "\\", "/")
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	clean, err := CleanContextPath("uploaded file", name)
	if err != nil {
		return err
	}
	if clean == "" {
		return CodeErrorf(EInvalid, "invalid_context", "an uploaded file has no name")
	}
	limits := u.svc.limits
	u.files++
	if u.files > limits.MaxFiles {
		return CodeErrorf(EInvalid, "context_too_large", "the folder has more than %d files; leave files out with a .dockerignore", limits.MaxFiles)
	}
	if err := u.scratch.Truncate(0); err != nil {
		return err
	}
	if _, err := u.scratch.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(u.scratch, io.LimitReader(r, limits.MaxBytes-u.bytes+1))
	if err != nil {
		return CodeErrorf(EInvalid, "invalid_context", "the upload of %s was cut off: %v", clean, err)
	}
	u.bytes += n
	if u.bytes > limits.MaxBytes {
		return CodeErrorf(EInvalid, "context_too_large", "the folder is over the %s limit; leave large files out with a .dockerignore", humanLimit(limits.MaxBytes))
	}
	if _, err := u.scratch.Seek(0, io.SeekStart); err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: clean, Size: n, Mode: 0o644, ModTime: time.Now().UTC().Truncate(time.Second)}
	if err := u.tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(u.tw, io.LimitReader(u.scratch, n))
	return err
}

// Finish stores the archive and removes the temporary files.
func (u *FolderUpload) Finish(ctx context.Context) (Upload, error) {
	defer u.Abort()
	if u.files == 0 {
		return Upload{}, CodeErrorf(EInvalid, "invalid_context", "the chosen folder has no files")
	}
	if err := u.tw.Close(); err != nil {
		return Upload{}, err
	}
	if _, err := u.archive.Seek(0, io.SeekStart); err != nil {
		return Upload{}, err
	}
	return u.svc.IngestContext(ctx, u.archive)
}

// Abort removes the temporary files; it is safe after Finish.
func (u *FolderUpload) Abort() {
	for _, f := range []*os.File{u.archive, u.scratch} {
		f.Close()
		os.Remove(f.Name())
	}
}
