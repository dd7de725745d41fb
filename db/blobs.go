package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"manifold/builds"
	"manifold/builds/content"
	"manifold/builds/registry"
)

// execer is a transaction or the database: what writeIndex needs.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// writeIndex replaces a build's blobs and pull names and marks it indexed.
// The triggers of migration 009 keep blob_usage and storage_totals in step.
func writeIndex(ctx context.Context, tx execer, id string, tags []builds.TagRef, blobs []builds.BlobRef) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM build_blobs WHERE build_id = ?`, id); err != nil {
		return fmt.Errorf("db: index build %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM build_tags WHERE build_id = ?`, id); err != nil {
		return fmt.Errorf("db: index build %s: %w", id, err)
	}
	if err := addBlobs(ctx, tx, id, blobs); err != nil {
		return err
	}
	for _, t := range tags {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO build_tags (build_id, repo, tag) VALUES (?, ?, ?)`, id, t.PullName(), t.Tag); err != nil {
			return fmt.Errorf("db: insert build tag: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE builds SET indexed = 1 WHERE id = ?`, id); err != nil {
		return fmt.Errorf("db: index build %s: %w", id, err)
	}
	return nil
}

// addBlobs records blobs a build references and adds them to its total_bytes.
func addBlobs(ctx context.Context, tx execer, id string, blobs []builds.BlobRef) error {
	var total int64
	for _, b := range blobs {
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO build_blobs (build_id, digest, size, image) VALUES (?, ?, ?, ?)`, id, b.Digest, b.Size, b.Image)
		if err != nil {
			return fmt.Errorf("db: record blob of %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			total += b.Size
		}
	}
	if total > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET total_bytes = total_bytes + ? WHERE id = ?`, total, id); err != nil {
			return fmt.Errorf("db: record blobs of %s: %w", id, err)
		}
	}
	return nil
}

// contextBlob is the uploaded context a build references, if any.
func contextBlob(b *builds.Build) []builds.BlobRef {
	if b.Options.Context.Type == "upload" && b.Options.Context.Digest != "" {
		return []builds.BlobRef{{Digest: b.Options.Context.Digest, Size: b.Options.Context.Size}}
	}
	return nil
}

// Unindexed lists builds whose blobs and pull names are not recorded yet.
func (s *Builds) Unindexed(ctx context.Context, limit int) ([]content.UnindexedBuild, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, status, index_digest, tags,
		COALESCE(CASE WHEN json_extract(options, '$.context.type') = 'upload' THEN json_extract(options, '$.context.digest') END, ''),
		COALESCE(CASE WHEN json_extract(options, '$.context.type') = 'upload' THEN json_extract(options, '$.context.size') END, 0)
		FROM builds WHERE indexed = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("db: list builds to index: %w", err)
	}
	defer rows.Close()
	var out []content.UnindexedBuild
	for rows.Next() {
		var u content.UnindexedBuild
		var tags string
		if err := rows.Scan(&u.ID, &u.Status, &u.IndexDigest, &tags, &u.ContextDigest, &u.ContextSize); err != nil {
			return nil, fmt.Errorf("db: list builds to index: %w", err)
		}
		if err := json.Unmarshal([]byte(tags), &u.Tags); err != nil {
			return nil, fmt.Errorf("tags of %s: %w", u.ID, err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// IndexBuilds records builds' blobs and pull names, replacing any, in one transaction.
func (s *Builds) IndexBuilds(ctx context.Context, list []content.BuildIndex) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: index builds: %w", err)
	}
	defer tx.Rollback()
	for _, b := range list {
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET total_bytes = 0 WHERE id = ?`, b.ID); err != nil {
			return fmt.Errorf("db: index build %s: %w", b.ID, err)
		}
		if err := writeIndex(ctx, tx, b.ID, b.Tags, b.Blobs); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("db: index builds: %w", err)
	}
	return nil
}

// Servable reports whether a succeeded build under the pull name reaches digest in its image.
func (s *Builds) Servable(ctx context.Context, name, digest string) (bool, error) {
	var n int
	var err error
	if name == registry.BuildsRepo {
		err = s.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM build_blobs bb JOIN builds b ON b.id = bb.build_id
			WHERE bb.digest = ? AND bb.image = 1 AND b.status = 'succeeded' LIMIT 1)`, digest).Scan(&n)
	} else {
		err = s.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM build_blobs bb JOIN builds b ON b.id = bb.build_id
			JOIN build_tags t ON t.build_id = bb.build_id
			WHERE bb.digest = ? AND bb.image = 1 AND b.status = 'succeeded' AND t.repo = ? LIMIT 1)`, digest, name).Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("db: may %s serve %s: %w", name, digest, err)
	}
	return n > 0, nil
}

// ReferringIndexes lists index digests of succeeded builds under name that reach digest.
func (s *Builds) ReferringIndexes(ctx context.Context, name, digest string, limit int) ([]string, error) {
	if name == registry.BuildsRepo {
		return s.strings(ctx, `SELECT DISTINCT b.index_digest FROM build_blobs bb JOIN builds b ON b.id = bb.build_id
			WHERE bb.digest = ? AND bb.image = 1 AND b.status = 'succeeded' AND b.index_digest != '' ORDER BY b.id DESC LIMIT ?`, digest, limit)
	}
	return s.strings(ctx, `SELECT DISTINCT b.index_digest FROM build_blobs bb JOIN builds b ON b.id = bb.build_id
		JOIN build_tags t ON t.build_id = bb.build_id
		WHERE bb.digest = ? AND bb.image = 1 AND b.status = 'succeeded' AND t.repo = ? AND b.index_digest != '' ORDER BY b.id DESC LIMIT ?`, digest, name, limit)
}

// PullNames lists "builds" and every name a succeeded build's tag gives, after last.
func (s *Builds) PullNames(ctx context.Context, last string, n int) ([]string, error) {
	return s.strings(ctx, `SELECT name FROM (
			SELECT ? AS name WHERE EXISTS (SELECT 1 FROM builds WHERE status = 'succeeded')
			UNION SELECT DISTINCT t.repo FROM build_tags t JOIN builds b ON b.id = t.build_id WHERE b.status = 'succeeded')
		WHERE name > ? ORDER BY name LIMIT ?`, registry.BuildsRepo, last, n)
}

// StorageTotals reads the sums the triggers keep.
func (s *Builds) StorageTotals(ctx context.Context) (content.StorageTotals, error) {
	var t content.StorageTotals
	err := s.db.QueryRowContext(ctx, `SELECT referenced_bytes, shared_bytes, blobs,
		(SELECT count(*) FROM builds WHERE total_bytes > 0) FROM storage_totals WHERE id = 1`).
		Scan(&t.ReferencedBytes, &t.SharedBytes, &t.Blobs, &t.Builds)
	if err != nil {
		return t, fmt.Errorf("db: read storage totals: %w", err)
	}
	return t, nil
}

// BuildUsages reads a page of builds that use the store, newest or largest first.
func (s *Builds) BuildUsages(ctx context.Context, p content.UsagePage) ([]content.BuildUsage, string, error) {
	const cols = `b.id, b.status, b.pinned, b.total_bytes,
		COALESCE((SELECT SUM(bb.size) FROM build_blobs bb JOIN blob_usage u ON u.digest = bb.digest WHERE bb.build_id = b.id AND u.builds = 1), 0)
		FROM builds b`
	var rows *sql.Rows
	var err error
	switch p.Sort {
	case "size":
		size, id := int64(1<<62), "~"
		if p.After != "" {
			sz, rest, ok := strings.Cut(p.After, ".")
			n, perr := strconv.ParseInt(sz, 10, 64)
			if !ok || perr != nil || !builds.ValidID(rest) {
				return nil, "", builds.CodeErrorf(builds.EInvalid, "invalid_cursor", "after=%q is not a cursor this list gave", p.After)
			}
			size, id = n, rest
		}
		rows, err = s.db.QueryContext(ctx, `SELECT `+cols+` WHERE b.total_bytes > 0 AND (b.total_bytes, b.id) < (?, ?)
			ORDER BY b.total_bytes DESC, b.id DESC LIMIT ?`, size, id, p.Limit)
	default:
		id := "~"
		if p.After != "" {
			if !builds.ValidID(p.After) {
				return nil, "", builds.CodeErrorf(builds.EInvalid, "invalid_cursor", "after=%q is not a build id", p.After)
			}
			id = p.After
		}
		rows, err = s.db.QueryContext(ctx, `SELECT `+cols+` WHERE b.total_bytes > 0 AND b.id < ? ORDER BY b.id DESC LIMIT ?`, id, p.Limit)
	}
	if err != nil {
		return nil, "", fmt.Errorf("db: read storage per build: %w", err)
	}
	defer rows.Close()
	out := []content.BuildUsage{}
	for rows.Next() {
		var u content.BuildUsage
		if err := rows.Scan(&u.ID, &u.Status, &u.Pinned, &u.TotalBytes, &u.UniqueBytes); err != nil {
			return nil, "", fmt.Errorf("db: read storage per build: %w", err)
		}
		u.SharedBytes = u.TotalBytes - u.UniqueBytes
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) == p.Limit && p.Limit > 0 {
		last := out[len(out)-1]
		next = last.ID
		if p.Sort == "size" {
			next = strconv.FormatInt(last.TotalBytes, 10) + "." + last.ID
		}
	}
	return out, next, nil
}
