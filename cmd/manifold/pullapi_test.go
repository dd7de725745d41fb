package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/explore"
)

func (a *app) status(t *testing.T, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(a.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, []byte(b.String())
}

// TestPullAPIKeepsRepositoriesApart: a blob or manifest is served under a
// name only when a build the name resolves to reaches it; what the remote
// explorer fetched is never served; tags of different registries keep
// different names; _catalog lists the names, paged.
func TestPullAPIKeepsRepositoriesApart(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", env.Registry)
	one := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN echo one > /one\n", "platforms": []string{"linux/amd64"},
		"tags": []string{"docker.io/demo/app:v1"}}))
	two := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN echo two > /two\n", "platforms": []string{"linux/amd64"},
		"tags": []string{"127.0.0.1:5000/demo/app:v1"}}))
	if one.Status != builds.StatusSucceeded || two.Status != builds.StatusSucceeded {
		t.Fatalf("builds: %s %s", one.Error, two.Error)
	}
	var m1 explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+one.Manifests[0].Digest, &m1)
	layerOne := m1.Manifest.Layers[len(m1.Manifest.Layers)-1].Digest // RUN echo one: only build one has it
	tests := []struct {
		name, path string
		status     int
		digest     string
	}{
		{"a tag of docker.io", "/v2/docker.io/demo/app/manifests/v1", 200, one.IndexDigest},
		{"the same tag of another registry", "/v2/127.0.0.1_5000/demo/app/manifests/v1", 200, two.IndexDigest},
		{"the old collapsed name", "/v2/demo/app/manifests/v1", 404, ""},
		{"a layer under its own build's name", "/v2/docker.io/demo/app/blobs/" + layerOne, 200, layerOne},
		{"a layer under another build's name", "/v2/127.0.0.1_5000/demo/app/blobs/" + layerOne, 404, ""},
		{"an index by digest under another build's name", "/v2/127.0.0.1_5000/demo/app/manifests/" + one.IndexDigest, 404, ""},
		{"an index by digest under its own name", "/v2/docker.io/demo/app/manifests/" + one.IndexDigest, 200, one.IndexDigest},
		{"a layer under builds", "/v2/builds/blobs/" + layerOne, 200, layerOne},
		{"the shared base layer under both", "/v2/127.0.0.1_5000/demo/app/blobs/" + m1.Manifest.Layers[0].Digest, 200, m1.Manifest.Layers[0].Digest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := a.status(t, tt.path)
			if code != tt.status {
				t.Fatalf("GET %s = %d, want %d: %s", tt.path, code, tt.status, body)
			}
			if tt.digest != "" && (hdr.Get("Docker-Content-Digest") != tt.digest || digest.FromBytes(body).String() != tt.digest) {
				t.Fatalf("GET %s served %s (%s), want %s", tt.path, digest.FromBytes(body), hdr.Get("Docker-Content-Digest"), tt.digest)
			}
		})
	}
	// skopeo, a client nobody here wrote, agrees.
	host := strings.TrimPrefix(a.URL, "http://")
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+host+"/127.0.0.1_5000/demo/app:v1").CombinedOutput()
	if err != nil || digest.FromBytes(raw).String() != two.IndexDigest {
		t.Fatalf("skopeo inspect: %v %s", err, raw)
	}

	// An image only the remote explorer fetched is never served. skopeo
	// rewrites the seed as Docker schema 2, so its manifests are new digests.
	if out, err := exec.Command("skopeo", "copy", "-q", "--dest-tls-verify=false", "--override-arch", "amd64", "--format", "v2s2",
		"oci:"+env.Bin+"/seed/busybox:1", "docker://"+env.Registry+"/private/only:1").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v %s", err, out)
	}
	var rr struct{ Remote explore.RemoteRef }
	if code := getJSON(t, a, "/api/v1/remote?ref="+url.QueryEscape(env.Registry+"/private/only:1"), &rr); code != 200 || rr.Remote.Digest == "" {
		t.Fatalf("remote = %d %+v", code, rr)
	}
	if _, err := a.store(t).Info(t.Context(), digest.Digest(rr.Remote.Digest)); err != nil {
		t.Fatalf("the explored manifest is not in the store: %v", err)
	}
	for _, name := range []string{"builds", "docker.io/demo/app", "127.0.0.1_5000/demo/app"} {
		if code, _, body := a.status(t, "/v2/"+name+"/manifests/"+rr.Remote.Digest); code != 404 {
			t.Fatalf("the explored manifest under %s = %d %s", name, code, body)
		}
		if code, _, _ := a.status(t, "/v2/"+name+"/blobs/"+rr.Remote.Digest); code != 404 {
			t.Fatalf("the explored manifest as a blob under %s = %d", name, code)
		}
	}

	// _catalog: every name, in order, paged with n and last.
	var cat struct{ Repositories []string }
	code, _, body := a.status(t, "/v2/_catalog")
	if code != 200 || json.Unmarshal(body, &cat) != nil || strings.Join(cat.Repositories, ",") != "127.0.0.1_5000/demo/app,builds,docker.io/demo/app" {
		t.Fatalf("_catalog = %d %s", code, body)
	}
	code, hdr, body := a.status(t, "/v2/_catalog?n=1")
	if code != 200 || !strings.Contains(string(body), "127.0.0.1_5000/demo/app") || !strings.Contains(hdr.Get("Link"), `rel="next"`) {
		t.Fatalf("_catalog?n=1 = %d %s %v", code, body, hdr)
	}
	code, _, body = a.status(t, "/v2/_catalog?n=5&last=builds")
	if code != 200 || json.Unmarshal(body, &cat) != nil || strings.Join(cat.Repositories, ",") != "docker.io/demo/app" {
		t.Fatalf("_catalog?last=builds = %d %s", code, body)
	}
}

// TestReferrersListBuildKitAttestations: BuildKit's provenance attestation
// manifests name their platform manifest as subject; the referrers API
// lists them, with artifactType and filtering.
func TestReferrersListBuildKitAttestations(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}, "provenance": "max",
		"tags": []string{"registry.example.com/team/att:1"}}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s", b.Error)
	}
	var idx ocispec.Index
	_, _, raw := a.status(t, "/v2/builds/manifests/"+b.IndexDigest)
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // platform manifest → its attestation manifest
	for _, m := range idx.Manifests {
		if ref := m.Annotations["vnd.docker.reference.digest"]; ref != "" {
			want[ref] = m.Digest.String()
		}
	}
	if len(want) != 2 {
		t.Fatalf("the index has %d attestation manifests, want 2", len(want))
	}
	for _, name := range []string{"builds", "registry.example.com/team/att"} {
		for subject, att := range want {
			code, hdr, body := a.status(t, "/v2/"+name+"/referrers/"+subject)
			var got ocispec.Index
			if code != 200 || hdr.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || json.Unmarshal(body, &got) != nil {
				t.Fatalf("referrers of %s = %d %s", subject, code, body)
			}
			if len(got.Manifests) != 1 || got.Manifests[0].Digest.String() != att || got.Manifests[0].ArtifactType == "" || got.Manifests[0].Size == 0 {
				t.Fatalf("referrers of %s under %s: %s, want %s", subject, name, body, att)
			}
			at := got.Manifests[0].ArtifactType
			code, hdr, body = a.status(t, "/v2/"+name+"/referrers/"+subject+"?artifactType="+url.QueryEscape(at))
			if code != 200 || hdr.Get("OCI-Filters-Applied") != "artifactType" || !strings.Contains(string(body), att) {
				t.Fatalf("filtered by its own type = %d %v %s", code, hdr, body)
			}
			code, hdr, body = a.status(t, "/v2/"+name+"/referrers/"+subject+"?artifactType=application%2Fvnd.example.none")
			if code != 200 || hdr.Get("OCI-Filters-Applied") != "artifactType" || strings.Contains(string(body), att) {
				t.Fatalf("filtered by another type = %d %s", code, body)
			}
		}
	}
	// The index itself is nobody's subject.
	if _, _, body := a.status(t, "/v2/builds/referrers/"+b.IndexDigest); !strings.Contains(string(body), `"manifests":[]`) {
		t.Fatalf("referrers of the index: %s", body)
	}
}

// TestBuildPageShowsPullLines: the build page gives the exact docker pull
// lines, and each of them resolves through the pull API.
func TestBuildPageShowsPullLines(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\n", "platforms": []string{"linux/amd64"},
		"tags": []string{"127.0.0.1:5000/demo/app:v1", "demo/app:v1"}}))
	_, page := get(t, a.URL+"/builds/"+b.ID)
	host := strings.TrimPrefix(a.URL, "http://")
	for _, want := range []string{
		"docker pull " + host + "/builds:" + b.ID,
		"docker pull " + host + "/127.0.0.1_5000/demo/app:v1",
		"docker pull " + host + "/docker.io/demo/app:v1",
	} {
		if !strings.Contains(page, ">"+want+"<") {
			t.Fatalf("the build page lacks %q", want)
		}
		ref := strings.TrimPrefix(want, "docker pull "+host+"/")
		name, tag, _ := strings.Cut(ref, ":")
		if i := strings.LastIndex(ref, ":"); i > 0 {
			name, tag = ref[:i], ref[i+1:]
		}
		if code, hdr, _ := a.status(t, "/v2/"+name+"/manifests/"+tag); code != 200 || hdr.Get("Docker-Content-Digest") != b.IndexDigest {
			t.Fatalf("%s resolves to %d %s", want, code, hdr.Get("Docker-Content-Digest"))
		}
	}
}
