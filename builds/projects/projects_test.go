package projects

import (
	"context"
	"slices"
	"strings"
	"testing"

	"manifold/builds"
)

// GitHub's documented example: secret, payload and the X-Hub-Signature-256 it gives.
func TestVerifyHMACGitHubExample(t *testing.T) {
	const sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if !VerifyHMAC("It's a Secret to Everybody", []byte("Hello, World!"), sig) {
		t.Fatal("GitHub's example signature does not verify")
	}
	for name, c := range map[string]struct{ secret, body, sig string }{
		"other secret": {"It's a secret to everybody", "Hello, World!", sig},
		"other body":   {"It's a Secret to Everybody", "Hello, World", sig},
		"short":        {"It's a Secret to Everybody", "Hello, World!", sig[:10]},
		"not hex":      {"It's a Secret to Everybody", "Hello, World!", strings.Repeat("z", 64)},
		"empty secret": {"", "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
	} {
		if VerifyHMAC(c.secret, []byte(c.body), c.sig) {
			t.Errorf("%s: verified", name)
		}
	}
	if !VerifyToken("tok", "tok") || VerifyToken("tok", "tok ") || VerifyToken("", "") {
		t.Error("VerifyToken")
	}
}

func TestExpand(t *testing.T) {
	tpl := []string{"r/app:{{branch}}", "r/app:{{branch}}-{{short_sha}}", "r/app:{{tag}}", "r/app:latest"}
	sha := "0123456789abcdef0123456789abcdef01234567"
	if got := Expand(tpl, "feature/Login", "", sha); !slices.Equal(got, []string{"r/app:feature-Login", "r/app:feature-Login-0123456", "r/app:latest"}) {
		t.Errorf("branch push: %v", got)
	}
	if got := Expand(tpl, "", "v1.2.0", sha); !slices.Equal(got, []string{"r/app:v1.2.0", "r/app:latest"}) {
		t.Errorf("tag push: %v", got)
	}
}

type fakeStore struct {
	recorded map[string]string // delivery → build
}

func (f *fakeStore) CreateProject(context.Context, Project, []byte) error { return nil }
func (f *fakeStore) UpdateProject(context.Context, Project, []byte) error { return nil }
func (f *fakeStore) GetProject(context.Context, string) (Project, []byte, error) {
	return Project{}, nil, nil
}
func (f *fakeStore) ListProjects(context.Context) ([]Project, error)              { return nil, nil }
func (f *fakeStore) ProjectBuilds(context.Context, string, int) ([]string, error) { return nil, nil }
func (f *fakeStore) DeliveryBuild(_ context.Context, _, d string) (string, bool, error) {
	id, ok := f.recorded[d]
	return id, ok, nil
}
func (f *fakeStore) RecordProjectBuild(_ context.Context, _, id string, t Trigger) error {
	if t.Delivery != "" {
		f.recorded[t.Delivery] = id
	}
	return nil
}

type fakeStarter struct{ reqs []builds.Request }

func (f *fakeStarter) Start(_ context.Context, r builds.Request) (*builds.Build, error) {
	f.reqs = append(f.reqs, r)
	return &builds.Build{ID: "b" + string(rune('0'+len(f.reqs)))}, nil
}

func TestTrigger(t *testing.T) {
	st, starter := &fakeStore{recorded: map[string]string{}}, &fakeStarter{}
	s := NewService(st, nil, starter)
	p := Project{Name: "app", GitURL: "https://git.example/app.git", Branches: "release/*", DockerfilePath: "Dockerfile", ContextDir: "svc",
		Platforms: []string{"linux/amd64"}, Tags: []string{"r/app:{{branch}}", "r/app:{{tag}}"}, Push: true}
	sha := "0123456789abcdef0123456789abcdef01234567"
	ctx := context.Background()
	res, err := s.Trigger(ctx, p, Trigger{Event: "push", Ref: "refs/heads/main", SHA: sha, Delivery: "d0"})
	if err != nil || res.Ignored == "" || len(starter.reqs) != 0 {
		t.Fatalf("excluded branch: %+v %v", res, err)
	}
	res, err = s.Trigger(ctx, p, Trigger{Event: "push", Ref: "refs/heads/release/1", SHA: strings.Repeat("0", 40), Delivery: "d1"})
	if err != nil || res.Ignored == "" || len(starter.reqs) != 0 {
		t.Fatalf("deleted branch: %+v %v", res, err)
	}
	if _, err := s.Trigger(ctx, p, Trigger{Event: "push", Ref: "refs/heads/release/1", SHA: "--upload-pack=x", Delivery: "d2"}); builds.ErrorKind(err) != builds.EInvalid {
		t.Fatalf("a SHA that is not one: %v", err)
	}
	for range 2 {
		res, err = s.Trigger(ctx, p, Trigger{Event: "push", Ref: "refs/heads/release/1", SHA: sha, Delivery: "d3"})
		if err != nil || res.Build == nil {
			t.Fatalf("release push: %+v %v", res, err)
		}
	}
	if len(starter.reqs) != 1 || !res.Replayed || res.Build.ID != "b1" {
		t.Fatalf("the same delivery twice started %d builds (%+v)", len(starter.reqs), res)
	}
	r := starter.reqs[0]
	if r.Git == nil || r.Git.Ref != sha || r.Git.Subdir != "svc" || !slices.Equal(r.Tags, []string{"r/app:release-1"}) || !r.Push || r.CreatedBy != "project:app" {
		t.Errorf("request %+v git %+v", r, r.Git)
	}
	// Tags always build, whatever the branch filter.
	if res, err := s.Trigger(ctx, p, Trigger{Event: "tag", Ref: "refs/tags/v1", SHA: sha, Delivery: "d4"}); err != nil || res.Build == nil {
		t.Fatalf("tag: %+v %v", res, err)
	}
	if got := starter.reqs[1].Tags; !slices.Equal(got, []string{"r/app:v1"}) {
		t.Errorf("tag push tags %v", got)
	}
}

func TestValidate(t *testing.T) {
	for name, p := range map[string]Project{
		"name":       {Name: "Bad Name", GitURL: "https://g/x.git"},
		"git":        {Name: "a", GitURL: "file:///etc"},
		"glob":       {Name: "a", GitURL: "https://g/x.git", Branches: "["},
		"dockerfile": {Name: "a", GitURL: "https://g/x.git", DockerfilePath: "../../etc/passwd"},
		"platform":   {Name: "a", GitURL: "https://g/x.git", Platforms: []string{"linux/nope"}},
		"tag":        {Name: "a", GitURL: "https://g/x.git", Tags: []string{"r/app:{{branch}}:x y"}},
		"push":       {Name: "a", GitURL: "https://g/x.git", Push: true},
	} {
		if err := Validate(&p); builds.ErrorKind(err) != builds.EInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := Project{Name: "a", GitURL: "https://g/x.git"}
	if err := Validate(&p); err != nil || p.Branches != "*" || p.DockerfilePath != "Dockerfile" {
		t.Errorf("defaults: %+v %v", p, err)
	}
}
