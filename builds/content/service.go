package content

import (
	"context"
	"log/slog"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
)

// Records is what the content service keeps about builds in the database:
// the blobs each references, the storage sums, retention and the downloads'
// checksums. The db package implements it.
type Records interface {
	// Unindexed lists up to limit builds whose blobs and pull names are not recorded yet.
	Unindexed(ctx context.Context, limit int) ([]UnindexedBuild, error)
	// IndexBuilds records builds' blobs and pull names (replacing any).
	IndexBuilds(ctx context.Context, list []BuildIndex) error
	// StorageTotals reads the store-wide sums.
	StorageTotals(ctx context.Context) (StorageTotals, error)
	// BuildUsages reads one page of builds' disk use and the next page's cursor.
	BuildUsages(ctx context.Context, p UsagePage) ([]BuildUsage, string, error)
	// BuildRoots lists every kept build with what it references in the store.
	BuildRoots(ctx context.Context) ([]BuildRoot, error)
	GetBuild(ctx context.Context, id string) (*builds.Build, error)
	SetPinned(ctx context.Context, id string, pinned bool) error
	// DeleteBuild removes a finished build; a queued or running one is refused.
	DeleteBuild(ctx context.Context, id string) error
	// RetentionCandidates lists unpinned finished builds older than cutoff or
	// beyond the newest perTag of every tag they carry.
	RetentionCandidates(ctx context.Context, cutoff time.Time, perTag int) ([]string, error)
	ArchiveSums(ctx context.Context, id string) (map[string]ArchiveSum, error)
	SaveArchiveSum(ctx context.Context, id string, a ArchiveSum) error
}

// BuildRoot is what one build references in the content store.
type BuildRoot struct {
	ID            string
	Status        builds.Status
	Pinned        bool
	IndexDigest   string
	ContextDigest string
}

// UnindexedBuild is a build from before blob and pull-name indexing, to index at start.
type UnindexedBuild struct {
	ID            string
	Status        builds.Status
	IndexDigest   string
	ContextDigest string
	ContextSize   int64
	Tags          []string
}

// BuildIndex is what IndexBuilds records for one build.
type BuildIndex struct {
	ID    string
	Tags  []builds.TagRef
	Blobs []builds.BlobRef
}

// StorageTotals are the store-wide sums over what builds reference.
type StorageTotals struct {
	ReferencedBytes int64
	SharedBytes     int64
	Blobs           int
	Builds          int
}

// UsagePage asks for one page of builds' disk use: Sort is "newest" (by id)
// or "size" (largest first); After is the previous page's Next cursor.
type UsagePage struct {
	Sort  string
	After string
	Limit int
}

// Builds reads one build, with the lifecycle's checks; *builds.Service implements it.
type Builds interface {
	Get(ctx context.Context, id string) (*builds.Build, error)
}

// Service is what the HTTP layer asks of the store: downloads and their
// checksums, disk use, pinning, deleting and collecting.
type Service struct {
	blobs   *Store
	records Records
	builds  Builds
	jobs    *builds.Jobs
	log     *slog.Logger
	reach   reachCache
	// walk is the storage view's last walk of the content store.
	walk storeWalk

	summing    sync.Mutex
	summingIDs map[string]bool
	sumSlots   chan struct{} // one checksum computation at a time

	// onCollect is told of every finished garbage collection (metrics).
	onCollect func(GCReport)
}

// OnCollect registers fn to be told of every finished garbage collection;
// call it before the service starts collecting.
func (s *Service) OnCollect(fn func(GCReport)) { s.onCollect = fn }

// NewService returns the content service over the blob store; jobs owns its
// background work (checksums, the periodic collection).
func NewService(blobs *Store, records Records, b Builds, jobs *builds.Jobs, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{blobs: blobs, records: records, builds: b, jobs: jobs, log: log, sumSlots: make(chan struct{}, 1)}
}

// Blobs is the blob store the service keeps.
func (s *Service) Blobs() *Store { return s.blobs }

// CollectEvery runs CollectGarbage with ret every interval, owned by the
// service's jobs, until they shut down.
func (s *Service) CollectEvery(interval time.Duration, ret Retention) {
	s.jobs.Every(interval, func(ctx context.Context) {
		if _, err := s.CollectGarbage(ctx, ret); err != nil && ctx.Err() == nil {
			s.log.Error("periodic garbage collection", "err", err)
		}
	})
}

// ImageBlobs turns a walk from an index into the build's image blobs.
func ImageBlobs(descs []ocispec.Descriptor) []builds.BlobRef {
	out := make([]builds.BlobRef, 0, len(descs))
	for _, d := range descs {
		out = append(out, builds.BlobRef{Digest: d.Digest.String(), Size: d.Size, Image: true})
	}
	return out
}

// IndexOld records, once, the blobs and pull names of builds made before
// Manifold kept them: the pull API serves only what a build reaches, and
// the storage view adds up from these rows. It runs at start-up.
func (s *Service) IndexOld(ctx context.Context) error {
	done := 0
	for {
		batch, err := s.records.Unindexed(ctx, 200)
		if err != nil || len(batch) == 0 {
			if done > 0 {
				s.log.Info("indexed builds from before blob records", "count", done)
			}
			return err
		}
		list := make([]BuildIndex, 0, len(batch))
		for _, u := range batch {
			var blobs []builds.BlobRef
			if u.ContextDigest != "" {
				blobs = append(blobs, builds.BlobRef{Digest: u.ContextDigest, Size: u.ContextSize})
			}
			if u.Status == builds.StatusSucceeded && u.IndexDigest != "" {
				// A result whose blobs are gone (collected) simply serves nothing.
				if descs, err := s.reach.get(ctx, s.blobs, u.IndexDigest); err == nil {
					blobs = append(blobs, ImageBlobs(descs)...)
				}
			}
			tags, err := builds.ParseTags(u.Tags)
			if err != nil {
				tags = nil // stored tags were checked when the build was made
			}
			list = append(list, BuildIndex{ID: u.ID, Tags: tags, Blobs: blobs})
		}
		if err := s.records.IndexBuilds(ctx, list); err != nil {
			return err
		}
		done += len(list)
	}
}
