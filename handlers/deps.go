package handlers

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/builds/content"
	"manifold/builds/explore"
	"manifold/builds/projects"
	"manifold/builds/registry"
)

// What the handlers call, declared here so each handler can be tested with
// a fake; the services in builds and its sub-packages implement them.

// Builds is a build's lifecycle (*builds.Service).
type Builds interface {
	Start(ctx context.Context, req builds.Request) (*builds.Build, error)
	Get(ctx context.Context, id string) (*builds.Build, error)
	List(ctx context.Context, opt builds.ListOptions) ([]*builds.Build, error)
	Cancel(ctx context.Context, id string) (*builds.Build, error)
	QueuePosition(id string) int
	Watch(ctx context.Context, id string, after int64, keepAlive time.Duration, fn func(builds.Event) error) error
	WriteLog(ctx context.Context, id string, w io.Writer) error
	LogSummary(ctx context.Context, b *builds.Build) (builds.LogSummary, error)
	StepLog(ctx context.Context, id string, step int, after int64, limit int) ([]builds.LogLine, error)
	SmallLog(ctx context.Context, id string, limit int) (map[int][]builds.LogLine, bool, error)
	SearchLog(ctx context.Context, id, q string) ([]builds.LogHit, int, error)
	Nodes(ctx context.Context) []builds.NodeStatus
	NodeDetails(ctx context.Context) []builds.NodeStatus
	Retry(ctx context.Context, id, platform, placement string, req builds.Request) (*builds.Build, error)
	Platforms(ctx context.Context) (avail []string, down string)
	ContextLimits() builds.ContextLimits
	IngestContext(ctx context.Context, r io.Reader) (builds.Upload, error)
	NewFolderUpload() (*builds.FolderUpload, error)
	DiscardUpload(u *builds.Upload)
}

// Storage is the blob store's side of builds (*content.Service): downloads,
// disk use, pinning, deleting and collecting.
type Storage interface {
	Export(ctx context.Context, id, format, platform string) (*content.Archive, error)
	Downloads(ctx context.Context, id string) ([]content.ArchiveSum, error)
	StorageUsage(ctx context.Context, page content.UsagePage) (content.Usage, error)
	CollectGarbage(ctx context.Context, ret content.Retention) (content.GCReport, error)
	Pin(ctx context.Context, id string, pinned bool) (*builds.Build, error)
	Delete(ctx context.Context, id string) error
}

// Blobs streams stored blobs by digest (*content.Store).
type Blobs interface {
	CopyBlob(w io.Writer, d digest.Digest, off, n int64) error
}

// Explorer reads stored images for people (*explore.Service).
type Explorer interface {
	BuildIndex(ctx context.Context, id string) (*explore.IndexView, error)
	Blob(ctx context.Context, ref string) (*explore.BlobView, error)
	RawBlob(ctx context.Context, ref string) (ocispec.Descriptor, error)
	MergedFiles(ctx context.Context, manifestRef string) ([]explore.FileEntry, explore.LayerListing, error)
	ListLayer(ctx context.Context, ref string) (*explore.LayerListing, error)
	Compare(ctx context.Context, a, b string) (*explore.Comparison, error)
	ExploreRemote(ctx context.Context, ref string) (explore.RemoteRef, error)
}

// Registry promotes images and resolves the pull API's names (*registry.Service).
type Registry interface {
	Push(ctx context.Context, id, target string) (builds.Push, error)
	ResolveManifest(ctx context.Context, repo, ref string) (ocispec.Descriptor, []byte, error)
	StatBlob(ctx context.Context, repo, ref string) (ocispec.Descriptor, error)
	Catalog(ctx context.Context, last string, n int) ([]string, error)
	RepoTags(ctx context.Context, repo, last string, n int) ([]string, error)
	Referrers(ctx context.Context, repo, ref, artifactType string) ([]ocispec.Descriptor, error)
}

// Credentials keeps registry logins (*registry.Credentials).
type Credentials interface {
	Set(ctx context.Context, host, username, password string, insecure bool) (registry.Credential, error)
	List(ctx context.Context) ([]registry.Credential, error)
	Delete(ctx context.Context, host string) error
}

// Accounts is users, sessions, tokens, build secrets and the audit log (*accounts.Service).
type Accounts interface {
	SetupMode(ctx context.Context) (bool, error)
	CreateUser(ctx context.Context, name, password string, role accounts.Role) (accounts.User, error)
	UpdateUser(ctx context.Context, name string, role accounts.Role, password string) error
	DeleteUser(ctx context.Context, name string) error
	Users(ctx context.Context) ([]accounts.User, error)
	Login(ctx context.Context, name, password, ip string) (string, accounts.Session, error)
	Logout(ctx context.Context, secret string) error
	CreateToken(ctx context.Context, user, name, scope string) (string, accounts.Token, error)
	Tokens(ctx context.Context, user string) ([]accounts.Token, error)
	RevokeToken(ctx context.Context, id int64, user string) error
	Audit(ctx context.Context, actor, action, target, ip, detail string) error
	AuditLog(ctx context.Context, before int64, limit int) ([]accounts.AuditEntry, error)
	SetSecret(ctx context.Context, userID int64, name, value string) error
	SecretNames(ctx context.Context, userID int64) ([]string, error)
	DeleteSecret(ctx context.Context, userID int64, name string) error
}

// Projects keeps projects and turns webhook deliveries into builds (*projects.Service).
type Projects interface {
	Create(ctx context.Context, p projects.Project) (projects.Project, error)
	Update(ctx context.Context, p projects.Project) (projects.Project, error)
	Get(ctx context.Context, name string) (projects.Project, error)
	List(ctx context.Context) ([]projects.Project, error)
	Builds(ctx context.Context, name string, limit int) ([]string, error)
	Trigger(ctx context.Context, p projects.Project, t projects.Trigger) (projects.Result, error)
}
