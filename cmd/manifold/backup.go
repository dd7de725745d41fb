package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"manifold/db"
)

// backupInfo is DEST/backup.json, written last: a folder without it is not a finished backup.
type backupInfo struct {
	CreatedAt     time.Time `json:"created_at"`
	Version       string    `json:"version"`
	Blobs         int       `json:"blobs"`
	BlobBytes     int64     `json:"blob_bytes"`
	DatabaseBytes int64     `json:"database_bytes"`
	Key           bool      `json:"key"`
}

// backupCommand is `manifold backup [--data DIR] [--key-file F] DEST`: a
// consistent copy of a data folder, also while `manifold serve` runs builds.
// The database is copied first, in one moment (SQLite's online backup API);
// then the content store, whose blobs never change once written, so every
// blob that moment references is there already. Each copied blob is checked
// against its digest, and the copy against the snapshot's references.
func backupCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("manifold backup", flag.ContinueOnError)
	flags.SetOutput(stdout)
	data := flags.String("data", envOr(getenv, "MANIFOLD_DATA", "data"), "data folder to back up (MANIFOLD_DATA)")
	keyFile := flags.String("key-file", getenv("MANIFOLD_KEY_FILE"), "key that seals registry credentials (MANIFOLD_KEY_FILE; default <data>/secret.key)")
	if err := flags.Parse(reorder(args)); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return errors.New("usage: manifold backup [--data DIR] DEST (DEST is a new or empty folder)")
	}
	dest := flags.Arg(0)
	src := filepath.Join(*data, "manifold.db")
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no database to back up in %s: %w", *data, err)
	}
	if err := emptyDir(dest); err != nil {
		return err
	}
	start := time.Now()
	if err := db.Snapshot(ctx, src, filepath.Join(dest, "manifold.db")); err != nil {
		return err
	}
	n, size, err := copyBlobs(ctx, filepath.Join(*data, "content"), filepath.Join(dest, "content"))
	if err != nil {
		return err
	}
	if err := checkReferenced(ctx, dest); err != nil {
		return fmt.Errorf("%w (a collection removed them while the backup ran: run it again)", err)
	}
	info := backupInfo{CreatedAt: start.UTC(), Version: versionString(), Blobs: n, BlobBytes: size}
	if fi, err := os.Stat(filepath.Join(dest, "manifold.db")); err == nil {
		info.DatabaseBytes = fi.Size()
	}
	if *keyFile == "" {
		*keyFile = filepath.Join(*data, "secret.key")
	}
	if err := copyFile(*keyFile, filepath.Join(dest, "secret.key"), 0o600); err == nil {
		info.Key = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("copy the key %s: %w", *keyFile, err)
	}
	if err := writeJSON(filepath.Join(dest, "backup.json"), info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s: database %d bytes, %d blobs (%d bytes), key %v, in %s\n",
		*data, dest, info.DatabaseBytes, n, size, info.Key, time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreCommand is `manifold restore [--data DIR] SRC`: a backup into a
// data folder that holds no database yet; `manifold serve --data DIR` then
// serves the same builds and downloads.
func restoreCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("manifold restore", flag.ContinueOnError)
	flags.SetOutput(stdout)
	data := flags.String("data", envOr(getenv, "MANIFOLD_DATA", "data"), "data folder to restore into; must hold no database (MANIFOLD_DATA)")
	if err := flags.Parse(reorder(args)); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return errors.New("usage: manifold restore [--data DIR] SRC (SRC is a folder manifold backup wrote)")
	}
	src := flags.Arg(0)
	var info backupInfo
	if b, err := os.ReadFile(filepath.Join(src, "backup.json")); err != nil {
		return fmt.Errorf("%s is not a finished backup (no backup.json): %w", src, err)
	} else if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("%s/backup.json: %w", src, err)
	}
	if _, err := os.Stat(filepath.Join(*data, "manifold.db")); err == nil {
		return fmt.Errorf("%s already holds a database; restore into a new data folder or move it away first", *data)
	}
	dir, err := privateDataDir(*data, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	start := time.Now()
	if err := db.Snapshot(ctx, filepath.Join(src, "manifold.db"), filepath.Join(dir, "manifold.db")); err != nil {
		return err
	}
	n, size, err := copyBlobs(ctx, filepath.Join(src, "content"), filepath.Join(dir, "content"))
	if err != nil {
		return err
	}
	if err := checkReferenced(ctx, dir); err != nil {
		return err
	}
	if info.Key {
		if err := copyFile(filepath.Join(src, "secret.key"), filepath.Join(dir, "secret.key"), 0o600); err != nil {
			return fmt.Errorf("restore the key: %w", err)
		}
	}
	// Opening it applies the migrations a newer manifold has, now rather than at serve.
	d, err := db.Open(ctx, filepath.Join(dir, "manifold.db"))
	if err != nil {
		return err
	}
	d.Close()
	fmt.Fprintf(stdout, "restored %s (made %s) into %s: %d blobs (%d bytes), key %v, in %s\n",
		src, info.CreatedAt.Format(time.RFC3339), dir, n, size, info.Key, time.Since(start).Round(time.Millisecond))
	return nil
}

// emptyDir makes dir (mode 0700) or checks that it is empty.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty; give a new or empty folder", dir)
	}
	return os.Chmod(dir, 0o700)
}

// copyBlobs copies every finished blob of a containerd local store
// (<root>/blobs/<algorithm>/<hex>; ingests in progress are not blobs yet),
// checking each against its digest. A blob that went away while the copy
// ran (collected) is skipped; checkReferenced finds one that was needed.
func copyBlobs(ctx context.Context, from, to string) (n int, size int64, err error) {
	root := filepath.Join(from, "blobs")
	err = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if de.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		alg, hex := filepath.Dir(rel), filepath.Base(rel)
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() != nil {
			return nil // not a blob
		}
		w, err := copyVerified(p, filepath.Join(to, "blobs", rel), d)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n++
		size += w
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // an empty store
	}
	if err != nil {
		return n, size, fmt.Errorf("copy the content store %s: %w", from, err)
	}
	return n, size, nil
}

// copyVerified copies one blob to dst (through a temporary name) and checks its digest.
func copyVerified(src, dst string, want digest.Digest) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return 0, err
	}
	tmp := dst + ".part"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	v := want.Verifier()
	n, err := io.Copy(io.MultiWriter(out, v), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && !v.Verified() {
		err = fmt.Errorf("blob %s does not match its digest: the store is damaged", want)
	}
	if err == nil {
		err = os.Chmod(tmp, 0o444)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return n, nil
}

// checkReferenced says which blobs the folder's database references that its store lacks.
func checkReferenced(ctx context.Context, dir string) error {
	refs, err := db.ReferencedDigests(ctx, filepath.Join(dir, "manifold.db"))
	if err != nil {
		return err
	}
	var missing []string
	for _, r := range refs {
		d, err := digest.Parse(r)
		if err != nil {
			return fmt.Errorf("the database references %q, which is not a digest", r)
		}
		if _, err := os.Stat(filepath.Join(dir, "content", "blobs", d.Algorithm().String(), d.Encoded())); err != nil {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d blobs the database references are missing from %s, e.g. %s", len(missing), dir, missing[0])
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

func writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(p, append(b, '\n'), 0o600)
}
