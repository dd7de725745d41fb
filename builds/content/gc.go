package content

import (
	"context"
	"manifold/builds"
	"sync"
	"time"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// gcGrace protects fresh blobs: an upload not yet attached to a build, or a
// result BuildKit is still exporting, is younger than this.
const gcGrace = 15 * time.Minute

// Retention says which finished builds Manifold removes on its own. Pinned
// builds are always kept.
type Retention struct {
	MaxAge time.Duration // 0 keeps builds forever
	PerTag int           // 0 keeps every build of a tag
	// MinBlobAge keeps younger blobs whatever references them: an upload not
	// yet attached to its build, an export in flight. 15 minutes when zero.
	MinBlobAge time.Duration
}

// GCReport says what a collection removed and kept.
type GCReport struct {
	RemovedBuilds  []string `json:"removed_builds"`
	RemovedBlobs   int      `json:"removed_blobs"`
	FreedBytes     int64    `json:"freed_bytes"`
	KeptBlobs      int      `json:"kept_blobs"`
	KeptBytes      int64    `json:"kept_bytes"`
	AbortedIngests int      `json:"aborted_ingests"`
	DurationMS     int64    `json:"duration_ms"`
}

// DigestCache remembers what was read from content-addressed blobs, by
// digest: never stale. It forgets everything past 10,000 entries.
type DigestCache[T any] struct {
	mu sync.Mutex
	m  map[string]T
}

// Load returns the cached value for key, or calls read and keeps its result.
func (c *DigestCache[T]) Load(key string, read func() (T, error)) (T, error) {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := read()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= 10_000 {
		c.m = map[string]T{}
	}
	c.m[key] = v
	c.mu.Unlock()
	return v, nil
}

// reachCache remembers each image's blobs.
type reachCache struct {
	DigestCache[[]ocispec.Descriptor]
}

func (c *reachCache) get(ctx context.Context, s *Store, index string) ([]ocispec.Descriptor, error) {
	return c.Load(index, func() ([]ocispec.Descriptor, error) {
		d, err := digest.Parse(index)
		if err != nil {
			return nil, err
		}
		info, err := s.Info(ctx, d)
		if err != nil {
			return nil, err
		}
		return Reachable(ctx, s, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: info.Size})
	})
}

// CollectGarbage applies the retention policy, then removes every blob that
// no kept build reaches (older than a grace period), and abandoned uploads.
// Running solves hold the runner's read lock; collection waits for them.
func (s *Service) CollectGarbage(ctx context.Context, ret Retention) (GCReport, error) {
	start := time.Now()
	rep := GCReport{RemovedBuilds: []string{}}
	var cutoff time.Time
	if ret.MaxAge > 0 {
		cutoff = time.Now().Add(-ret.MaxAge)
	}
	if !cutoff.IsZero() || ret.PerTag > 0 {
		ids, err := s.records.RetentionCandidates(ctx, cutoff, ret.PerTag)
		if err != nil {
			return rep, err
		}
		for _, id := range ids {
			if err := s.records.DeleteBuild(ctx, id); err != nil {
				if k := builds.ErrorKind(err); k != builds.EConflict && k != builds.ENotFound { // not "running again" or "gone already"
					s.log.Warn("gc: remove a build", "build_id", id, "err", err)
				}
				continue
			}
			rep.RemovedBuilds = append(rep.RemovedBuilds, id)
		}
	}

	s.blobs.gc.Lock()
	defer s.blobs.gc.Unlock()
	roots, err := s.records.BuildRoots(ctx)
	if err != nil {
		return rep, err
	}
	marked := map[digest.Digest]bool{}
	store := s.blobs
	for _, r := range roots {
		if r.ContextDigest != "" {
			marked[digest.Digest(r.ContextDigest)] = true
		}
		if r.IndexDigest == "" {
			continue
		}
		descs, err := s.reach.get(ctx, store, r.IndexDigest)
		if err != nil {
			// What cannot be read cannot be followed; keep what is named.
			s.log.Warn("gc: cannot walk a build's image", "build_id", r.ID, "err", err)
			marked[digest.Digest(r.IndexDigest)] = true
			continue
		}
		for _, d := range descs {
			marked[d.Digest] = true
		}
	}
	grace := ret.MinBlobAge
	if grace <= 0 {
		grace = gcGrace
	}
	fresh := time.Now().Add(-grace)
	var doomed []ccontent.Info
	err = store.Walk(ctx, func(info ccontent.Info) error {
		if marked[info.Digest] || info.CreatedAt.After(fresh) || info.UpdatedAt.After(fresh) {
			rep.KeptBlobs++
			rep.KeptBytes += info.Size
			return nil
		}
		doomed = append(doomed, info)
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, info := range doomed {
		if err := store.Delete(ctx, info.Digest); err != nil {
			s.log.Warn("gc: delete blob", "digest", info.Digest, "err", err)
			continue
		}
		rep.RemovedBlobs++
		rep.FreedBytes += info.Size
	}
	if statuses, err := store.ListStatuses(ctx); err == nil {
		for _, st := range statuses {
			if st.UpdatedAt.Before(fresh) && store.Abort(ctx, st.Ref) == nil {
				rep.AbortedIngests++
			}
		}
	}
	s.forgetStoreSize()
	rep.DurationMS = time.Since(start).Milliseconds()
	s.log.Info("garbage collected", "removed_builds", len(rep.RemovedBuilds), "removed_blobs", rep.RemovedBlobs,
		"freed_bytes", rep.FreedBytes, "kept_bytes", rep.KeptBytes)
	if s.onCollect != nil {
		s.onCollect(rep)
	}
	return rep, nil
}

// Usage is the store's disk use: the totals at once, and one page of builds.
type Usage struct {
	TotalBytes      int64 `json:"total_bytes"` // the whole store on disk
	Blobs           int   `json:"blobs"`
	ReferencedBytes int64 `json:"referenced_bytes"` // what kept builds reference
	SharedBytes     int64 `json:"shared_bytes"`     // blobs more than one build uses
	Unreachable     int64 `json:"unreachable_bytes"`
	// BuildCount counts the builds that use the store; Builds is one page of
	// them and Next the cursor (?after=) of the next page, "" on the last.
	BuildCount int          `json:"build_count"`
	Sort       string       `json:"sort"`
	Builds     []BuildUsage `json:"builds"`
	Next       string       `json:"next,omitempty"`
}

// BuildUsage is one build's share of the store.
type BuildUsage struct {
	ID     string        `json:"id"`
	Status builds.Status `json:"status"`
	Pinned bool          `json:"pinned"`
	// UniqueBytes are freed when this build goes; SharedBytes are used by others too.
	UniqueBytes int64 `json:"unique_bytes"`
	SharedBytes int64 `json:"shared_bytes"`
	TotalBytes  int64 `json:"total_bytes"`
}

// storeWalk is the last walk of the content store: its size changes with
// builds (caught by the referenced totals changing) or with explorer
// fetches and collections, so it is also redone after storeWalkTTL.
type storeWalk struct {
	mu         sync.Mutex
	at         time.Time
	referenced StorageTotals
	total      int64
	blobs      int
}

const storeWalkTTL = 10 * time.Second

// StorageUsage reports the store's totals and one page of builds' shares,
// newest first (sort "newest") or largest first ("size"). Per-build
// figures are kept as builds are recorded and collected, so the cost does
// not grow with the number of builds.
func (s *Service) StorageUsage(ctx context.Context, page UsagePage) (Usage, error) {
	switch page.Sort {
	case "":
		page.Sort = "newest"
	case "newest", "size":
	default:
		return Usage{}, builds.CodeErrorf(builds.EInvalid, "invalid_sort", "sort=%q is not newest or size", page.Sort)
	}
	if page.Limit <= 0 {
		page.Limit = 50
	}
	if page.Limit > 500 {
		return Usage{}, builds.CodeErrorf(builds.EInvalid, "invalid_limit", "limit %d is too large; ask for at most 500 builds a page", page.Limit)
	}
	t, err := s.records.StorageTotals(ctx)
	if err != nil {
		return Usage{}, err
	}
	total, blobs, err := s.storeSize(ctx, t)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{TotalBytes: total, Blobs: blobs, ReferencedBytes: t.ReferencedBytes, SharedBytes: t.SharedBytes,
		Unreachable: max(0, total-t.ReferencedBytes), BuildCount: t.Builds, Sort: page.Sort}
	u.Builds, u.Next, err = s.records.BuildUsages(ctx, page)
	return u, err
}

// storeSize is the content store's size and blob count, walked again only
// when builds changed what they reference or the last walk is old.
func (s *Service) storeSize(ctx context.Context, t StorageTotals) (int64, int, error) {
	w := &s.walk
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.at.IsZero() && w.referenced == t && time.Since(w.at) < storeWalkTTL {
		return w.total, w.blobs, nil
	}
	var total int64
	var blobs int
	if err := s.blobs.Walk(ctx, func(info ccontent.Info) error {
		total += info.Size
		blobs++
		return nil
	}); err != nil {
		return 0, 0, err
	}
	w.at, w.referenced, w.total, w.blobs = time.Now(), t, total, blobs
	return total, blobs, nil
}

// forgetStoreSize makes the next storage view walk the store again.
func (s *Service) forgetStoreSize() {
	s.walk.mu.Lock()
	s.walk.at = time.Time{}
	s.walk.mu.Unlock()
}

// Pin keeps a build from retention and collection; Unpin lets it go again.
func (s *Service) Pin(ctx context.Context, id string, pinned bool) (*builds.Build, error) {
	if _, err := s.builds.Get(ctx, id); err != nil {
		return nil, err
	}
	if err := s.records.SetPinned(ctx, id, pinned); err != nil {
		return nil, err
	}
	return s.records.GetBuild(ctx, id)
}

// Delete removes a finished build; its blobs go at the next collection.
func (s *Service) Delete(ctx context.Context, id string) error {
	b, err := s.builds.Get(ctx, id)
	if err != nil {
		return err
	}
	if b.Pinned {
		return builds.CodeErrorf(builds.EConflict, "build_pinned", "build %s is pinned; unpin it first", id)
	}
	return s.records.DeleteBuild(ctx, id)
}
