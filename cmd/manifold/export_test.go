package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"manifold/builds"
)

// download saves an export and returns its path and the response.
func download(t *testing.T, url, dir, name string, hdr map[string]string) (string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p, resp
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestExportArchivesReadByRealTools(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build %s: %s", b.Status, b.Error)
	}
	dir := t.TempDir()
	base := a.URL + "/api/v1/builds/" + b.ID + "/export"

	// The whole index, as --output type=oci gives it.
	whole, resp := download(t, base+"?format=oci", dir, "whole.oci.tar", nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), b.ID+".oci.tar") || resp.Header.Get("ETag") == "" {
		t.Fatalf("oci export = %d %v", resp.StatusCode, resp.Header)
	}
	fi, _ := os.Stat(whole)
	if fmt.Sprint(fi.Size()) != resp.Header.Get("Content-Length") {
		t.Fatalf("Content-Length %s, got %d bytes", resp.Header.Get("Content-Length"), fi.Size())
	}
	raw := sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+whole)
	if got := digest.FromString(raw).String(); got != b.IndexDigest {
		t.Fatalf("skopeo reads index %s from the archive, the build says %s", got, b.IndexDigest)
	}
	for _, m := range b.Manifests {
		if !strings.Contains(raw, m.Digest) {
			t.Fatalf("the archive's index lacks %s %s", m.Platform, m.Digest)
		}
	}
	// umoci reads the layout and unpacks the arm64 image's files.
	layout := filepath.Join(dir, "layout")
	if err := os.MkdirAll(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "tar", "-xf", whole, "-C", layout)
	if out := sh(t, "umoci", "ls", "--layout", layout); !strings.Contains(out, b.ID) {
		t.Fatalf("umoci ls: %s", out)
	}

	// One platform: the archive's root is that platform's manifest.
	arm, resp := download(t, base+"?format=oci&platform=linux/arm64", dir, "arm.oci.tar", nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "linux-arm64") {
		t.Fatalf("arm64 export = %d %v", resp.StatusCode, resp.Header)
	}
	rawArm := sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+arm)
	armDigest := ""
	for _, m := range b.Manifests {
		if m.Platform == "linux/arm64" {
			armDigest = m.Digest
		}
	}
	if got := digest.FromString(rawArm).String(); got != armDigest {
		t.Fatalf("arm64 archive root %s, want %s", got, armDigest)
	}
	armLayout := filepath.Join(dir, "armlayout")
	os.MkdirAll(armLayout, 0o755)
	sh(t, "tar", "-xf", arm, "-C", armLayout)
	bundle := filepath.Join(dir, "bundle")
	sh(t, "umoci", "unpack", "--rootless", "--image", armLayout+":"+b.ID, bundle)
	if st, err := os.Stat(filepath.Join(bundle, "rootfs", "bin", "busybox")); err != nil || st.Size() < 100000 {
		t.Fatalf("umoci unpacked no busybox: %v", err)
	}
	var cfg struct{ Architecture string }
	if err := json.Unmarshal([]byte(sh(t, "skopeo", "inspect", "--config", "oci-archive:"+arm)), &cfg); err != nil || cfg.Architecture != "arm64" {
		t.Fatalf("arm64 archive config architecture %q (%v)", cfg.Architecture, err)
	}

	// docker load format, for one platform.
	dock, resp := download(t, base+"?format=docker&platform=linux/amd64", dir, "amd.docker.tar", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("docker export = %d", resp.StatusCode)
	}
	cfgRaw := sh(t, "skopeo", "inspect", "--config", "--raw", "docker-archive:"+dock)
	if got := digest.FromString(cfgRaw).String(); got != b.Manifests[0].ConfigDigest {
		t.Fatalf("docker archive config %s, want %s", got, b.Manifests[0].ConfigDigest)
	}
	files := sh(t, "tar", "-tf", dock)
	for _, want := range []string{"manifest.json", "repositories", "index.json", "oci-layout"} {
		if !strings.Contains(files, want) {
			t.Fatalf("docker archive lacks %s:\n%s", want, files)
		}
	}
	mj := sh(t, "tar", "-xOf", dock, "manifest.json")
	if !strings.Contains(mj, `"RepoTags":["builds:`+b.ID+`"]`) {
		t.Fatalf("manifest.json %s", mj)
	}

	// Range requests resume a download; the ETag answers If-None-Match.
	full, _ := os.ReadFile(whole)
	part, resp := download(t, base+"?format=oci", dir, "part", map[string]string{"Range": "bytes=1000-5999"})
	got, _ := os.ReadFile(part)
	if resp.StatusCode != 206 || string(got) != string(full[1000:6000]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-5999/%d", len(full)) {
		t.Fatalf("range = %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(got))
	}
	tail, resp := download(t, base+"?format=oci", dir, "tail", map[string]string{"Range": "bytes=-100"})
	if got, _ := os.ReadFile(tail); resp.StatusCode != 206 || string(got) != string(full[len(full)-100:]) {
		t.Fatalf("suffix range = %d", resp.StatusCode)
	}
	_, resp = download(t, base+"?format=oci", dir, "none", map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match = %d, want 304", resp.StatusCode)
	}
	_, resp = download(t, base+"?format=oci", dir, "none", map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(full)+10)})
	if resp.StatusCode != 416 {
		t.Fatalf("range past the end = %d, want 416", resp.StatusCode)
	}
	// Two downloads of the same export are the same bytes.
	again, _ := download(t, base+"?format=oci", dir, "again", nil)
	if sumFile(t, again) != sumFile(t, whole) {
		t.Fatal("the same export differs between downloads")
	}

	failed := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN exit 1\n", "platforms": []string{"linux/amd64"}}))
	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/builds/01m8evrp2r0004ny3xknjd6vgd/export", 404, "build_not_found"},
		{"/api/v1/builds/" + b.ID + "/export?format=zip", 400, "invalid_format"},
		{"/api/v1/builds/" + b.ID + "/export?platform=linux/s390x", 404, "platform_not_found"},
		{"/api/v1/builds/" + b.ID + "/export?platform=linux", 400, "invalid_platform"},
		{"/api/v1/builds/" + b.ID + "/export?format=docker", 400, "platform_required"},
		{"/api/v1/builds/" + failed.ID + "/export", 404, "no_result"},
	} {
		code, body := a.do(t, "GET", tt.path, "")
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code != tt.status || e.Code != tt.code || len(e.Error) < 15 {
			t.Errorf("GET %s = %d %s, want %d %s", tt.path, code, body, tt.status, tt.code)
		}
	}
}

func sumFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}
