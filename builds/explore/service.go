// Package explore reads stored images for people: views of indexes,
// manifests, configs and attestations (provenance, SBOM), layer listings and
// merged filesystems, comparisons of two builds or manifests, and remote
// references fetched into the store for exploring.
package explore

import (
	"context"
	"log/slog"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/content"
	"manifold/builds/registry"
)

// Records is what the explorer keeps in the database: layer listings
// computed once, and where remote blobs came from. The db package implements it.
type Records interface {
	// LayerListing reads a cached listing (with its files when files is set), or nil.
	LayerListing(ctx context.Context, digest string, files bool) (*LayerListing, error)
	SaveLayerListing(ctx context.Context, l *LayerListing) error
	SaveOrigins(ctx context.Context, name string, descs []ocispec.Descriptor) error
	Origin(ctx context.Context, digest string) (name string, desc ocispec.Descriptor, found bool, err error)
}

// Results finds a succeeded build and its image; *content.Service implements it.
type Results interface {
	Result(ctx context.Context, id string) (*builds.Build, ocispec.Descriptor, error)
}

// Service answers the explorer's questions from the blob store.
type Service struct {
	blobs   *content.Store
	records Records
	results Results
	client  *registry.Client
	listing ListingLimits
	log     *slog.Logger
}

// Config wires a Service.
type Config struct {
	Blobs   *content.Store
	Records Records
	Results Results
	// Client fetches remote references; nil refuses them.
	Client  *registry.Client
	Listing ListingLimits
	Log     *slog.Logger
}

// NewService returns the explorer.
func NewService(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Service{blobs: cfg.Blobs, records: cfg.Records, results: cfg.Results, client: cfg.Client, listing: cfg.Listing, log: cfg.Log}
}
