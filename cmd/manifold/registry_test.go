package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

func TestPullAPIServesBuildsToRealClients(t *testing.T) {
	// BuildKit pulls FROM this server's own /v2/, on a loopback address: the allow-list must name it.
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, "", "--buildkit", env.Addr(), "--addr", addr, "--allow-hosts", addr)
	host := strings.TrimPrefix(a.URL, "http://")
	first := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"},
		"tags": []string{"127.0.0.1:5999/team/clock:1.0", "clock"}}))
	second := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example + "LABEL v=2\n", "platforms": []string{"linux/amd64", "linux/arm64"},
		"tags": []string{"127.0.0.1:5999/team/clock:1.0"}}))
	if first.Status != builds.StatusSucceeded || second.Status != builds.StatusSucceeded {
		t.Fatalf("builds: %s %s", first.Error, second.Error)
	}
	if len(first.Tags) != 2 || first.Tags[1] != "docker.io/library/clock:latest" {
		t.Fatalf("tags stored as %v", first.Tags)
	}
	// skopeo reads the index by build id and by tag; the newest build wins the tag.
	for _, tt := range []struct{ ref, want string }{
		{"builds:" + first.ID, first.IndexDigest},
		{"127.0.0.1_5999/team/clock:1.0", second.IndexDigest},
		{"docker.io/library/clock:latest", first.IndexDigest},
	} {
		raw, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+host+"/"+tt.ref).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", tt.ref, err, raw)
		}
		if got := digest.FromBytes(raw).String(); got != tt.want {
			t.Fatalf("%s resolves to %s, want %s", tt.ref, got, tt.want)
		}
	}
	// skopeo copies every platform out of it, into a real registry.
	out, err := exec.Command("skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+host+"/builds:"+first.ID, "docker://"+env.Registry+"/copied/clock:1").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+env.Registry+"/copied/clock:1").CombinedOutput()
	if err != nil || digest.FromBytes(raw).String() != first.IndexDigest {
		t.Fatalf("the copy in the registry: %s (%v)", raw, err)
	}
	// BuildKit itself builds FROM another build's result.
	from := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM " + host + "/builds:" + first.ID + "\nRUN echo derived > /derived\n", "platforms": []string{"linux/arm64"}}))
	if from.Status != builds.StatusSucceeded {
		t.Fatalf("FROM the pull API: %s", from.Error)
	}
	if got, _ := fileInLayers(t, a.store(t), from.Manifests[0].Digest, "derived"); got != "derived\n" {
		t.Fatalf("/derived = %q", got)
	}

	// Tags, HEAD, blobs with Range, and the spec's errors.
	code, body := a.do(t, "GET", "/v2/builds/tags/list", "")
	if code != 200 || !strings.Contains(string(body), first.ID) || !strings.Contains(string(body), second.ID) {
		t.Fatalf("tags/list = %d %s", code, body)
	}
	code, body = a.do(t, "GET", "/v2/127.0.0.1_5999/team/clock/tags/list", "")
	if code != 200 || !strings.Contains(string(body), `"1.0"`) {
		t.Fatalf("team/clock tags = %d %s", code, body)
	}
	req, _ := http.NewRequest("HEAD", a.URL+"/v2/127.0.0.1_5999/team/clock/manifests/1.0", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != second.IndexDigest || resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("HEAD manifest = %d %v", resp.StatusCode, resp.Header)
	}
	cfg := first.Manifests[0].ConfigDigest
	req, _ = http.NewRequest("GET", a.URL+"/v2/builds/blobs/"+cfg, nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 206 || resp.Header.Get("Content-Length") != "10" {
		t.Fatalf("ranged blob = %d %v", resp.StatusCode, resp.Header)
	}
	code, body = a.do(t, "GET", "/v2/builds/referrers/"+first.IndexDigest, "")
	if code != 200 || !strings.Contains(string(body), `"manifests":[]`) {
		t.Fatalf("referrers = %d %s", code, body)
	}
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/nobody/here/manifests/1", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/builds/referrers/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/127.0.0.1_5999/team/clock/manifests/9.9", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/team/clock/manifests/1.0", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/builds/manifests/01m8evrp2r0004ny3xknjd6vgd", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/builds/manifests/sha256:" + strings.Repeat("0", 64), 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/builds/manifests/" + cfg, 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/builds/blobs/sha256:" + strings.Repeat("1", 64), 404, "BLOB_UNKNOWN"},
		{"GET", "/v2/builds/blobs/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/Bad_Name/manifests/1", 400, "NAME_INVALID"},
		{"PUT", "/v2/builds/manifests/x", 405, "UNSUPPORTED"},
		{"POST", "/v2/builds/blobs/uploads/", 405, "UNSUPPORTED"},
	} {
		code, body := a.do(t, tt.method, tt.path, "")
		var e struct {
			Errors []struct{ Code, Message string }
		}
		if err := json.Unmarshal(body, &e); err != nil || code != tt.status || len(e.Errors) != 1 || e.Errors[0].Code != tt.code || e.Errors[0].Message == "" {
			t.Errorf("%s %s = %d %s, want %d %s", tt.method, tt.path, code, body, tt.status, tt.code)
		}
	}
}
