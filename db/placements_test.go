package db

import (
	"context"
	"testing"
	"time"

	"manifold/builds"
)

func TestPlacementsWarmNodesAndRoots(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old := newBuild(t, s, now.Add(-time.Minute))
	key := old.CacheKey()
	if n, err := s.WarmNode(ctx, key, "linux/arm64"); err != nil || n != "" {
		t.Fatalf("warm node before any build: %q %v", n, err)
	}
	kept := "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	if err := s.SavePlacements(ctx, old.ID, key, []builds.Placement{
		{Platform: "linux/amd64", Node: "amd64-1", Reason: "native, least busy", Status: builds.StatusSucceeded, IndexDigest: kept},
		{Platform: "linux/arm64", Node: "arm64-1", Reason: "native, the only node", Status: builds.StatusFailed, Error: "lost"},
	}); err != nil {
		t.Fatal(err)
	}
	// Only a success warms a node's cache.
	if n, _ := s.WarmNode(ctx, key, "linux/amd64"); n != "amd64-1" {
		t.Errorf("warm amd64 node %q, want amd64-1", n)
	}
	if n, _ := s.WarmNode(ctx, key, "linux/arm64"); n != "" {
		t.Errorf("warm arm64 node %q after a failure, want none", n)
	}
	// A later build replaces a platform's row, and wins the warm lookup.
	next := newBuild(t, s, now)
	if err := s.SavePlacements(ctx, next.ID, key, []builds.Placement{{Platform: "linux/amd64", Node: "amd64-2", Status: builds.StatusRunning}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePlacements(ctx, next.ID, key, []builds.Placement{{Platform: "linux/amd64", Node: "amd64-2", Status: builds.StatusSucceeded}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.WarmNode(ctx, key, "linux/amd64"); n != "amd64-2" {
		t.Errorf("warm amd64 node %q, want the newest, amd64-2", n)
	}
	got, err := s.GetBuild(ctx, old.ID)
	if err != nil || len(got.Placements) != 2 || got.Placements[1].Error != "lost" || got.Placements[0].IndexDigest != kept {
		t.Fatalf("placements read back %+v %v", got, err)
	}
	// A kept platform's own index is a garbage-collection root.
	roots, err := s.BuildRoots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range roots {
		found = found || (r.ID == old.ID && r.IndexDigest == kept)
	}
	if !found {
		t.Fatalf("roots %+v lack the kept index", roots)
	}
}
