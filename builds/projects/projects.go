// Package projects keeps projects: a git repository that Manifold builds
// on every push its webhook announces (GitHub, Gitea, GitLab), or on "Build now".
package projects

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"manifold/builds"
)

// Project is a repository built on push.
type Project struct {
	Name string `json:"name"`
	// GitURL is the repository BuildKit fetches (at the pushed commit).
	GitURL string `json:"git_url"`
	// Branches is a glob (path.Match) over branch names; git tags always build.
	Branches       string            `json:"branches"`
	DockerfilePath string            `json:"dockerfile_path"`
	ContextDir     string            `json:"context_dir"`
	Platforms      []string          `json:"platforms"`
	BuildArgs      map[string]string `json:"build_args"`
	// Tags are templates: {{branch}}, {{short_sha}}, {{tag}}.
	Tags []string `json:"tags"`
	Push bool     `json:"push"`
	// Secret is the webhook secret, in clear only in memory; stored sealed.
	Secret    string    `json:"-"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Trigger is one reason to build: a push of a branch or a tag, or "Build now".
type Trigger struct {
	Event    string // push, tag, manual
	Ref      string // refs/heads/main, refs/tags/v1, or a branch name for manual
	SHA      string // the commit; empty for manual (the branch's head)
	Delivery string // the webhook delivery id; empty for manual
}

// Store keeps projects; the db package implements it.
type Store interface {
	CreateProject(ctx context.Context, p Project, sealed []byte) error
	UpdateProject(ctx context.Context, p Project, sealed []byte) error
	GetProject(ctx context.Context, name string) (Project, []byte, error)
	ListProjects(ctx context.Context) ([]Project, error)
	// ProjectBuilds are the ids of a project's builds, newest first.
	ProjectBuilds(ctx context.Context, name string, limit int) ([]string, error)
	// DeliveryBuild is the build a delivery already started, if any.
	DeliveryBuild(ctx context.Context, project, delivery string) (string, bool, error)
	RecordProjectBuild(ctx context.Context, project, buildID string, t Trigger) error
}

// Sealer seals webhook secrets (builds.Registries does, with the key file's key).
type Sealer interface {
	Seal(plain, ad string) ([]byte, error)
	Open(sealed []byte, ad string) (string, error)
}

// Starter starts builds (builds.Service).
type Starter interface {
	Start(ctx context.Context, req builds.Request) (*builds.Build, error)
}

// Service manages projects and turns pushes into builds.
type Service struct {
	store   Store
	sealer  Sealer
	starter Starter
	// deliver makes "seen this delivery?" and "start and record it" one
	// step, so a delivery sent twice at once still starts one build.
	deliver sync.Mutex
}

// NewService is the projects service.
func NewService(store Store, sealer Sealer, starter Starter) *Service {
	return &Service{store: store, sealer: sealer, starter: starter}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func ad(name string) string { return "project:" + name }

// Validate checks and normalises a project; secret may be empty on update (kept).
func Validate(p *Project) error {
	p.Name = strings.TrimSpace(p.Name)
	if !nameRE.MatchString(p.Name) {
		return builds.CodeErrorf(builds.EInvalid, "invalid_project", "project name %q: use 1 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", clip(p.Name))
	}
	p.GitURL = strings.TrimSpace(p.GitURL)
	if p.GitURL == "" {
		return builds.CodeErrorf(builds.EInvalid, "invalid_project", "a project needs a git URL")
	}
	g, err := builds.GitSource{URL: p.GitURL, Subdir: p.ContextDir}.Validate()
	if err != nil {
		return err
	}
	p.GitURL, p.ContextDir = g.URL, g.Subdir
	if p.Branches = strings.TrimSpace(p.Branches); p.Branches == "" {
		p.Branches = "*"
	}
	if _, err := path.Match(p.Branches, "main"); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_branch_filter", "branch filter %q is not a glob: %v", clip(p.Branches), err)
	}
	if p.DockerfilePath = strings.TrimSpace(p.DockerfilePath); p.DockerfilePath == "" {
		p.DockerfilePath = "Dockerfile"
	}
	if strings.HasPrefix(p.DockerfilePath, "/") || strings.Contains("/"+p.DockerfilePath+"/", "/../") {
		return builds.CodeErrorf(builds.EInvalid, "invalid_dockerfile_path", "Dockerfile path %q must stay inside the repository", clip(p.DockerfilePath))
	}
	plats, err := builds.ParsePlatforms(p.Platforms)
	if err != nil {
		return err
	}
	p.Platforms = plats
	if p.BuildArgs == nil {
		p.BuildArgs = map[string]string{}
	}
	var tags []string
	for _, t := range p.Tags {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	p.Tags = tags
	// The templates must give valid tags for a typical push.
	if _, err := builds.ParseTags(Expand(p.Tags, "main", "", "0123456789abcdef0123456789abcdef01234567")); err != nil {
		return err
	}
	if _, err := builds.ParseTags(Expand(p.Tags, "", "v1.0.0", "0123456789abcdef0123456789abcdef01234567")); err != nil {
		return err
	}
	if p.Push && len(p.Tags) == 0 {
		return builds.CodeErrorf(builds.EInvalid, "invalid_project", "push is on but the project has no tags to push")
	}
	return nil
}

// NewSecret is a random webhook secret.
func NewSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create records a new project; an empty secret gets a random one.
func (s *Service) Create(ctx context.Context, p Project) (Project, error) {
	if err := Validate(&p); err != nil {
		return p, err
	}
	if p.Secret == "" {
		p.Secret = NewSecret()
	}
	sealed, err := s.sealer.Seal(p.Secret, ad(p.Name))
	if err != nil {
		return p, err
	}
	p.CreatedAt = time.Now().UTC()
	p.UpdatedAt = p.CreatedAt
	return p, s.store.CreateProject(ctx, p, sealed)
}

// Update changes a project; an empty secret keeps the old one.
func (s *Service) Update(ctx context.Context, p Project) (Project, error) {
	old, sealed, err := s.store.GetProject(ctx, p.Name)
	if err != nil {
		return p, err
	}
	if err := Validate(&p); err != nil {
		return p, err
	}
	if p.Secret != "" {
		if sealed, err = s.sealer.Seal(p.Secret, ad(p.Name)); err != nil {
			return p, err
		}
	}
	p.CreatedBy, p.CreatedAt, p.UpdatedAt = old.CreatedBy, old.CreatedAt, time.Now().UTC()
	return p, s.store.UpdateProject(ctx, p, sealed)
}

// Get is a project with its secret opened.
func (s *Service) Get(ctx context.Context, name string) (Project, error) {
	p, sealed, err := s.store.GetProject(ctx, name)
	if err != nil {
		return p, err
	}
	if p.Secret, err = s.sealer.Open(sealed, ad(p.Name)); err != nil {
		return p, fmt.Errorf("open project %s's webhook secret: %w", p.Name, err)
	}
	return p, nil
}

// List is every project (secrets left sealed).
func (s *Service) List(ctx context.Context) ([]Project, error) { return s.store.ListProjects(ctx) }

// Builds are a project's build ids, newest first.
func (s *Service) Builds(ctx context.Context, name string, limit int) ([]string, error) {
	return s.store.ProjectBuilds(ctx, name, limit)
}

// VerifyHMAC checks a hex HMAC-SHA256 of body under secret (GitHub's
// X-Hub-Signature-256 after "sha256=", Gitea's X-Gitea-Signature), in constant time.
func VerifyHMAC(secret string, body []byte, sigHex string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(sigHex))
	if err != nil || len(got) != sha256.Size || secret == "" {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(m.Sum(nil), got)
}

// VerifyToken checks GitLab's X-Gitlab-Token in constant time.
func VerifyToken(secret, token string) bool {
	if secret == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Expand fills the tag templates for a branch or a git tag at sha; a
// template naming what this push lacks ({{tag}} on a branch push) is left out.
func Expand(templates []string, branch, gitTag, sha string) []string {
	short := sha
	if len(short) > 7 {
		short = short[:7]
	}
	clean := func(s string) string {
		s = strings.Trim(tagUnsafe.ReplaceAllString(s, "-"), "-.")
		if len(s) > 100 {
			s = s[:100]
		}
		return s
	}
	var out []string
	for _, t := range templates {
		if (strings.Contains(t, "{{branch}}") && branch == "") || (strings.Contains(t, "{{tag}}") && gitTag == "") ||
			(strings.Contains(t, "{{short_sha}}") && short == "") {
			continue
		}
		t = strings.NewReplacer("{{branch}}", clean(branch), "{{tag}}", clean(gitTag), "{{short_sha}}", short).Replace(t)
		out = append(out, t)
	}
	return out
}

// Result is what a trigger did.
type Result struct {
	Build *builds.Build
	// Ignored says why nothing started ("" when a build started or was found).
	Ignored string
	// Replayed is true when the delivery had started a build already.
	Replayed bool
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// Trigger starts the project's build for t, unless the branch filter
// excludes it or the delivery was acted on before.
func (s *Service) Trigger(ctx context.Context, p Project, t Trigger) (Result, error) {
	var branch, gitTag string
	switch {
	case strings.HasPrefix(t.Ref, "refs/heads/"):
		branch = strings.TrimPrefix(t.Ref, "refs/heads/")
	case strings.HasPrefix(t.Ref, "refs/tags/"):
		gitTag = strings.TrimPrefix(t.Ref, "refs/tags/")
	case t.Event == "manual" && t.Ref != "" && !strings.HasPrefix(t.Ref, "refs/"):
		branch = t.Ref
	default:
		return Result{Ignored: fmt.Sprintf("ref %q is neither a branch nor a tag", clip(t.Ref))}, nil
	}
	if t.SHA != "" && !shaRE.MatchString(t.SHA) {
		return Result{}, builds.CodeErrorf(builds.EInvalid, "invalid_payload", "commit %q is not a full hexadecimal SHA", clip(t.SHA))
	}
	if t.SHA != "" && strings.Trim(t.SHA, "0") == "" {
		return Result{Ignored: "the ref was deleted"}, nil
	}
	if branch != "" && t.Event != "manual" {
		if ok, _ := path.Match(p.Branches, branch); !ok {
			return Result{Ignored: fmt.Sprintf("branch %q does not match the project's filter %q", clip(branch), p.Branches)}, nil
		}
	}
	ref := t.SHA
	if ref == "" {
		ref = t.Ref
	}
	req := builds.Request{
		Platforms: p.Platforms,
		Tags:      Expand(p.Tags, branch, gitTag, t.SHA),
		Push:      p.Push,
		CreatedBy: "project:" + p.Name,
	}
	req.Git = &builds.GitSource{URL: p.GitURL, Ref: ref, Subdir: p.ContextDir}
	req.DockerfilePath = p.DockerfilePath
	req.BuildArgs = p.BuildArgs
	if len(req.Tags) == 0 {
		req.Push = false
	}
	s.deliver.Lock()
	defer s.deliver.Unlock()
	if t.Delivery != "" {
		id, seen, err := s.store.DeliveryBuild(ctx, p.Name, t.Delivery)
		if err != nil {
			return Result{}, err
		}
		if seen {
			return Result{Build: &builds.Build{ID: id}, Replayed: true}, nil
		}
	}
	b, err := s.starter.Start(ctx, req)
	if err != nil {
		return Result{}, err
	}
	t.Ref = strings.TrimPrefix(strings.TrimPrefix(t.Ref, "refs/heads/"), "refs/tags/")
	if err := s.store.RecordProjectBuild(ctx, p.Name, b.ID, t); err != nil {
		return Result{Build: b}, err
	}
	return Result{Build: b}, nil
}

// clip shortens input quoted in an error to 100 characters.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
