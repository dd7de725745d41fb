package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"manifold/builds"
)

// delivery is one webhook request as a forge sends it.
type delivery struct {
	forge, project, body, contentType string
	headers                           map[string]string
}

func (d delivery) send(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/hooks/"+d.forge+"/"+d.project, strings.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	ct := d.contentType
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	for k, v := range d.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func hmacHex(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// githubPush is a push event shaped as GitHub documents it (trimmed to
// the fields a receiver reads, plus a few it ignores).
func githubPush(ref, before, after, cloneURL string) string {
	return mustJSON(map[string]any{
		"ref": ref, "before": before, "after": after, "created": false, "deleted": false, "forced": false,
		"repository":  map[string]any{"name": "repo", "full_name": "team/repo", "clone_url": cloneURL},
		"pusher":      map[string]any{"name": "t", "email": "t@t"},
		"head_commit": map[string]any{"id": after, "message": "v1", "timestamp": "2026-11-28T15:00:00Z"},
		"commits":     []any{map[string]any{"id": after, "message": "v1"}},
	})
}

// TestWebhooksBuildThePushedCommit delivers GitHub, Gitea and GitLab push
// events, signed with the project's secret, and checks each builds from a
// real git daemon at the pushed commit (not the branch's newest one); a bad
// or missing signature is 401 and starts nothing, an excluded branch is
// ignored, the same delivery twice starts one build.
func TestWebhooksBuildThePushedCommit(t *testing.T) {
	url := gitServer(t)
	gitAddr := strings.TrimSuffix(strings.TrimPrefix(url, "git://"), "/repo.git")
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", gitAddr)
	refs, err := exec.Command("git", "ls-remote", url).Output()
	if err != nil {
		t.Fatal(err)
	}
	shas := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(refs)), "\n") {
		sha, ref, _ := strings.Cut(l, "\t")
		shas[ref] = sha
	}
	v1, head := shas["refs/tags/v1"], shas["refs/heads/main"]
	if v1 == "" || head == "" || v1 == head {
		t.Fatalf("git refs: %v", shas)
	}

	const secret = "hook-s3cret"
	code, body := a.do(t, "POST", "/api/v1/projects", mustJSON(map[string]any{
		"name": "svc", "git_url": url, "branches": "main", "context_dir": "svc", "platforms": []string{"linux/amd64"},
		"tags": []string{"hooks/svc:{{branch}}-{{short_sha}}", "hooks/svc:{{tag}}"}, "secret": secret,
	}))
	if code != http.StatusCreated {
		t.Fatalf("create project = %d %s", code, body)
	}
	if strings.Contains(string(body), secret) {
		t.Fatalf("the API showed back a secret it was given: %s", body)
	}
	if code, body := a.do(t, "POST", "/api/v1/projects", `{"name":"Bad Name!","git_url":"`+url+`"}`); code != http.StatusBadRequest || !strings.Contains(string(body), "project name") {
		t.Errorf("a bad project name = %d %s", code, body)
	}
	projectBuilds := func() []string {
		t.Helper()
		code, body := a.do(t, "GET", "/api/v1/projects/svc", "")
		var v struct{ Builds []string }
		if code != http.StatusOK || json.Unmarshal(body, &v) != nil {
			t.Fatalf("GET project = %d %s", code, body)
		}
		return v.Builds
	}

	push := githubPush("refs/heads/main", "0000000000000000000000000000000000000000", v1, url)
	gh := func(sig, id string) delivery {
		h := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": id}
		if sig != "" {
			h["X-Hub-Signature-256"] = sig
		}
		return delivery{forge: "github", project: "svc", body: push, headers: h}
	}
	// Refused: no signature, a wrong one, the right one for another body, an unknown project.
	for name, d := range map[string]delivery{
		"missing":         gh("", "d-1"),
		"wrong secret":    gh("sha256="+hmacHex("other", push), "d-1"),
		"no prefix":       gh(hmacHex(secret, push), "d-1"),
		"other body":      gh("sha256="+hmacHex(secret, push+" "), "d-1"),
		"unknown project": {forge: "github", project: "nope", body: push, headers: map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hmacHex(secret, push)}},
		"gitlab token":    {forge: "gitlab", project: "svc", body: push, headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}},
	} {
		if code, out := d.send(t, a.URL); code != http.StatusUnauthorized || out["code"] != "bad_signature" {
			t.Errorf("%s: %d %v; want 401 bad_signature", name, code, out)
		}
	}
	if n := len(projectBuilds()); n != 0 {
		t.Fatalf("refused deliveries started %d builds", n)
	}
	// ping answers; a non-JSON payload with a good signature is 415.
	ping := delivery{forge: "github", project: "svc", body: `{"zen":"Keep it logically awesome.","hook_id":1}`,
		headers: map[string]string{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p-1"}}
	ping.headers["X-Hub-Signature-256"] = "sha256=" + hmacHex(secret, ping.body)
	if code, out := ping.send(t, a.URL); code != http.StatusOK || out["status"] != "pong" {
		t.Errorf("ping: %d %v", code, out)
	}
	form := gh("sha256="+hmacHex(secret, push), "d-form")
	form.contentType = "application/x-www-form-urlencoded"
	if code, _ := form.send(t, a.URL); code != http.StatusUnsupportedMediaType {
		t.Errorf("form-encoded delivery = %d; want 415", code)
	}
	// An excluded branch is 202 "ignored" and starts nothing.
	feature := githubPush("refs/heads/feature/x", v1, head, url)
	d := delivery{forge: "github", project: "svc", body: feature, headers: map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-feature", "X-Hub-Signature-256": "sha256=" + hmacHex(secret, feature)}}
	if code, out := d.send(t, a.URL); code != http.StatusAccepted || out["status"] != "ignored" || !strings.Contains(out["reason"].(string), "feature/x") {
		t.Errorf("excluded branch: %d %v", code, out)
	}
	if n := len(projectBuilds()); n != 0 {
		t.Fatalf("an excluded branch started %d builds", n)
	}
	// Setup mode answers only loopback names, but a forge delivers from elsewhere:
	// hooks pass that guard (they act for nobody) and still need the signature.
	for sig, want := range map[string]int{"sha256=" + hmacHex(secret, feature): http.StatusAccepted, "sha256=" + hmacHex("x", feature): http.StatusUnauthorized} {
		req, _ := http.NewRequest("POST", a.URL+"/hooks/github/svc", strings.NewReader(feature))
		req.Host = "ci.example.com"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("a delivery to Host ci.example.com in setup mode = %d; want %d", resp.StatusCode, want)
		}
		if code, _ := call(t, "GET", a.URL+"/api/v1/builds", "", "", ""); code != http.StatusOK {
			t.Fatal("setup mode ended")
		}
	}

	// GitHub: main pushed at v1's commit builds v1, not main's head.
	code, out := gh("sha256="+hmacHex(secret, push), "d-1").send(t, a.URL)
	if code != http.StatusAccepted || out["status"] != "queued" || !strings.HasPrefix(out["url"].(string), a.URL+"/builds/") {
		t.Fatalf("github push: %d %v", code, out)
	}
	ghID := out["build_id"].(string)
	// The same delivery again: the same build, no second one.
	code, out = gh("sha256="+hmacHex(secret, push), "d-1").send(t, a.URL)
	if code != http.StatusAccepted || out["status"] != "duplicate" || out["build_id"] != ghID {
		t.Errorf("replayed delivery: %d %v", code, out)
	}
	if ids := projectBuilds(); len(ids) != 1 {
		t.Errorf("after a replay the project has builds %v", ids)
	}

	// Gitea: a tag push, signed with X-Gitea-Signature.
	tagPush := githubPush("refs/tags/v1", "0000000000000000000000000000000000000000", v1, url)
	code, out = delivery{forge: "gitea", project: "svc", body: tagPush, headers: map[string]string{
		"X-Gitea-Event": "push", "X-Gitea-Delivery": "g-1", "X-Gitea-Signature": hmacHex(secret, tagPush)}}.send(t, a.URL)
	if code != http.StatusAccepted || out["status"] != "queued" {
		t.Fatalf("gitea tag push: %d %v", code, out)
	}
	giteaID := out["build_id"].(string)

	// GitLab: main at its head, the secret as X-Gitlab-Token.
	glPush := mustJSON(map[string]any{"object_kind": "push", "event_name": "push", "before": v1, "after": head, "ref": "refs/heads/main",
		"checkout_sha": head, "project": map[string]any{"git_http_url": url}, "total_commits_count": 1})
	code, out = delivery{forge: "gitlab", project: "svc", body: glPush, headers: map[string]string{
		"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": "l-1"}}.send(t, a.URL)
	if code != http.StatusAccepted || out["status"] != "queued" {
		t.Fatalf("gitlab push: %d %v", code, out)
	}
	gitlabID := out["build_id"].(string)

	for _, tt := range []struct {
		id, version, tag string
	}{
		{ghID, "v1\n", "docker.io/hooks/svc:main-" + v1[:7]},
		{giteaID, "v1\n", "docker.io/hooks/svc:v1"},
		{gitlabID, "v2 on main\n", "docker.io/hooks/svc:main-" + head[:7]},
	} {
		b := a.wait(t, tt.id)
		if b.Status != builds.StatusSucceeded {
			t.Fatalf("build %s: %s %s", tt.id, b.Status, b.Error)
		}
		if b.Git == nil || b.Git.URL != url || b.Git.Subdir != "svc" || len(b.Git.Ref) != 40 {
			t.Errorf("build %s git %+v; want the repository at a full SHA", tt.id, b.Git)
		}
		if got, _ := fileInLayers(t, a.store(t), b.Manifests[0].Digest, "version.txt"); got != tt.version {
			t.Errorf("build %s: /version.txt = %q, want %q", tt.id, got, tt.version)
		}
		if len(b.Tags) != 1 || b.Tags[0] != tt.tag {
			t.Errorf("build %s tags %v; want [%s]", tt.id, b.Tags, tt.tag)
		}
	}
	if ids := projectBuilds(); len(ids) != 3 || !slices.Contains(ids, gitlabID) {
		t.Errorf("project builds %v", ids)
	}
}

// TestWebhooksNeedNoLogin: with accounts, an anonymous delivery reaches the
// hook (its 401 is the signature's, not the login's); pages stay behind login.
func TestWebhooksNeedNoLogin(t *testing.T) {
	data := t.TempDir()
	cli(t, "user", "create", "--role", "builder", "--data", data, "hooks")
	a := startApp(t, data, "--buildkit", env.Addr())
	d := delivery{forge: "gitlab", project: "any", body: `{}`, headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "t"}}
	if code, out := d.send(t, a.URL); code != http.StatusUnauthorized || out["code"] != "bad_signature" {
		t.Errorf("anonymous delivery: %d %v", code, out)
	}
	if code, _ := call(t, "GET", a.URL+"/api/v1/projects", "", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/projects without login = %d", code)
	}
	if code, _ := call(t, "GET", a.URL+"/readyz", "", "", ""); code != http.StatusOK {
		t.Errorf("/readyz without login = %d", code)
	}
}
