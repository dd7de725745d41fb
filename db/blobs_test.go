package db

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"manifold/builds"
	"manifold/builds/content"
)

// TestUsageTriggersMatchARecount: whatever builds come and go, the sums the
// triggers keep equal a recount from build_blobs, and per-build shares
// follow how many builds use each blob.
func TestUsageTriggersMatchARecount(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var ids []string
	check := func(step string) {
		t.Helper()
		got, err := s.StorageTotals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var want content.StorageTotals
		err = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0), COALESCE(SUM(CASE WHEN n > 1 THEN size END), 0), count(*),
			(SELECT count(*) FROM builds WHERE total_bytes > 0)
			FROM (SELECT digest, max(size) AS size, count(*) AS n FROM build_blobs GROUP BY digest)`).
			Scan(&want.ReferencedBytes, &want.SharedBytes, &want.Blobs, &want.Builds)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: the triggers keep %+v, a recount gives %+v", step, got, want)
		}
	}
	for i := range 60 {
		b := newBuild(t, s, time.Now().Add(time.Duration(i)*time.Millisecond))
		var blobs []builds.BlobRef
		for range 1 + rng.IntN(4) {
			n := rng.IntN(20) // a small pool, so blobs are shared
			blobs = append(blobs, builds.BlobRef{Digest: fmt.Sprintf("sha256:%064d", n), Size: int64(100 + n), Image: true})
		}
		res := builds.Result{Status: builds.StatusSucceeded, IndexDigest: blobs[0].Digest, Blobs: blobs}
		if _, err := s.FinishBuild(ctx, b.ID, time.Now(), res, builds.FinishEvents(res, nil, time.Now())); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
		check(fmt.Sprintf("after build %d", i))
		if i%3 == 2 { // delete a random earlier one
			k := rng.IntN(len(ids))
			if err := s.DeleteBuild(ctx, ids[k]); err != nil {
				t.Fatal(err)
			}
			ids = append(ids[:k], ids[k+1:]...)
			check(fmt.Sprintf("after a delete at %d", i))
		}
	}
	// Per-build shares: unique + shared = total, and unique is what only it uses.
	page, _, err := s.BuildUsages(ctx, content.UsagePage{Sort: "size", Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != len(ids) {
		t.Fatalf("%d builds listed, %d kept", len(page), len(ids))
	}
	for _, u := range page {
		var unique int64
		_ = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM build_blobs bb WHERE build_id = ?
			AND (SELECT count(*) FROM build_blobs o WHERE o.digest = bb.digest) = 1`, u.ID).Scan(&unique)
		if u.UniqueBytes != unique || u.UniqueBytes+u.SharedBytes != u.TotalBytes {
			t.Fatalf("%s: %+v, unique by recount %d", u.ID, u, unique)
		}
	}
}
