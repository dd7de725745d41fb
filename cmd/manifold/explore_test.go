package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
	"manifold/builds/explore"
)

func getJSON(t *testing.T, a *app, path string, v any) int {
	t.Helper()
	code, body := a.do(t, "GET", path, "")
	if v != nil && code == 200 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return code
}

func TestExplorerOnRealBuilds(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}, "provenance": "max"}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s", b.Error)
	}
	// The index lists exactly the two platforms, attestations under them.
	var idx explore.IndexView
	if code := getJSON(t, a, "/api/v1/builds/"+b.ID+"/index", &idx); code != 200 || idx.Digest != b.IndexDigest {
		t.Fatalf("index = %d %+v", code, idx)
	}
	if len(idx.Platforms) != 2 {
		t.Fatalf("index shows %d platforms, want 2: %+v", len(idx.Platforms), idx.Platforms)
	}
	var arm explore.PlatformEntry
	for _, p := range idx.Platforms {
		if p.Platform == "unknown/unknown" {
			t.Fatal("an attestation shows as a platform")
		}
		found := false
		for _, m := range b.Manifests {
			found = found || (m.Platform == p.Platform && m.Digest == p.Digest)
		}
		if !found {
			t.Fatalf("index platform %s %s is not what BuildKit reported", p.Platform, p.Digest)
		}
		if len(p.Attestations) != 1 || !strings.Contains(strings.Join(p.Attestations[0].PredicateTypes, " "), "slsa.dev/provenance") {
			t.Fatalf("%s attestations %+v, want the provenance", p.Platform, p.Attestations)
		}
		if p.Platform == "linux/arm64" {
			arm = p
		}
	}
	// The provenance names the base image it used, by digest, and the build's args.
	var att explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+arm.Attestations[0].Digest, &att)
	if att.Kind != "manifest" || len(att.Manifest.Layers) == 0 {
		t.Fatalf("attestation manifest view %+v", att)
	}
	var stmt explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+att.Manifest.Layers[0].Digest, &stmt)
	if stmt.Kind != "attestation" || stmt.Provenance == nil || stmt.Provenance.Builder == "" && stmt.Provenance.BuildType == "" {
		t.Fatalf("statement view %+v", stmt)
	}
	base := false
	for _, m := range stmt.Provenance.Materials {
		base = base || (strings.Contains(m.URI, "busybox") && strings.HasPrefix(m.Digest, "sha256:"))
	}
	if !base || stmt.Provenance.Frontend != "dockerfile.v0" {
		t.Fatalf("provenance %+v: want busybox among the materials and the dockerfile frontend", stmt.Provenance)
	}
	if code, page := get(t, a.URL+"/blobs/"+att.Manifest.Layers[0].Digest); code != 200 || !strings.Contains(page, `data-testid="material"`) {
		t.Fatalf("attestation page = %d lacks the materials", code)
	}

	// The arm64 manifest: its layer and the instruction that made it.
	var mv explore.BlobView
	if code := getJSON(t, a, "/api/v1/blobs/"+arm.Digest, &mv); code != 200 || mv.Kind != "manifest" || mv.Manifest == nil || len(mv.Manifest.Layers) != 1 {
		t.Fatalf("manifest view = %d %+v", code, mv)
	}
	if got := mv.Manifest.Layers[0].CreatedBy; got != "COPY rootfs-arm64/ /" {
		t.Fatalf("the layer was made by %q, want COPY rootfs-arm64/ /", got)
	}
	// The arm64 config: architecture, Cmd, label, and the history as a Dockerfile.
	var cv explore.BlobView
	if code := getJSON(t, a, "/api/v1/blobs/"+arm.ConfigDigest, &cv); code != 200 || cv.Kind != "config" || cv.Config == nil {
		t.Fatalf("config view = %d %+v", code, cv)
	}
	img := cv.Config.Image
	if img.Architecture != "arm64" || img.Config.Labels["description"] != "Image for my Docker course" || strings.Join(img.Config.Cmd, " ") != "/bin/sh -c while date; do sleep 1; done;" {
		t.Fatalf("arm64 config %+v", img)
	}
	if !strings.Contains(cv.Config.Dockerfile, `LABEL description=Image for my Docker course`) {
		t.Fatalf("as a Dockerfile:\n%s", cv.Config.Dockerfile)
	}
	// The base layer's listing holds bin/busybox with its real size.
	layer := mv.Manifest.Layers[0].Digest
	var files struct {
		Files            []explore.FileEntry
		UncompressedSize int64 `json:"uncompressed_size"`
	}
	if code := getJSON(t, a, "/api/v1/blobs/"+layer+"/files", &files); code != 200 {
		t.Fatalf("files = %d", code)
	}
	st, err := os.Stat(filepath.Join(env.Bin, "seed", "rootfs-arm64", "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	var busybox *explore.FileEntry
	for i, f := range files.Files {
		if f.Path == "bin/busybox" {
			busybox = &files.Files[i]
		}
	}
	if busybox == nil || busybox.Size != st.Size() || busybox.Type != "file" || files.UncompressedSize < st.Size() {
		t.Fatalf("bin/busybox in the listing: %+v, real size %d", busybox, st.Size())
	}
	var bySize struct{ Files []explore.FileEntry }
	getJSON(t, a, "/api/v1/blobs/"+layer+"/files?sort=size", &bySize)
	if len(bySize.Files) == 0 || bySize.Files[0].Path != "bin/busybox" {
		t.Fatalf("largest first starts with %+v", bySize.Files[0])
	}
	// Raw bytes with their media type.
	req, _ := http.NewRequest("GET", a.URL+"/api/v1/blobs/"+b.IndexDigest+"/raw", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 1<<20)
	n, _ := resp.Body.Read(raw)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/vnd.oci.image.index.v1+json" || digest.FromBytes(raw[:n]).String() != b.IndexDigest {
		t.Fatalf("raw index: %s", resp.Header.Get("Content-Type"))
	}

	// A deleted file shows as a whiteout, and the merged view lacks it.
	del := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN rm /bin/vi\n", "platforms": []string{"linux/amd64"}}))
	if del.Status != builds.StatusSucceeded {
		t.Fatalf("delete build: %s", del.Error)
	}
	var dm explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+del.Manifests[0].Digest, &dm)
	top := dm.Manifest.Layers[len(dm.Manifest.Layers)-1]
	var topFiles struct{ Files []explore.FileEntry }
	getJSON(t, a, "/api/v1/blobs/"+top.Digest+"/files", &topFiles)
	white := false
	for _, f := range topFiles.Files {
		white = white || (f.Path == "bin/vi" && f.Type == "whiteout")
	}
	if !white || !strings.HasPrefix(top.CreatedBy, "RUN ") {
		t.Fatalf("top layer (%s) lacks the whiteout of bin/vi: %+v", top.CreatedBy, topFiles.Files)
	}
	var merged struct{ Files []explore.FileEntry }
	getJSON(t, a, "/api/v1/blobs/"+del.Manifests[0].Digest+"/files?merged=1", &merged)
	hasVi, hasSh := false, false
	for _, f := range merged.Files {
		hasVi = hasVi || f.Path == "bin/vi"
		hasSh = hasSh || f.Path == "bin/sh"
	}
	if hasVi || !hasSh {
		t.Fatalf("merged view: bin/vi present %v, bin/sh present %v", hasVi, hasSh)
	}

	// Comparisons: build vs build, and platform vs platform.
	relabel := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example + "LABEL v=2\n", "platforms": []string{"linux/amd64", "linux/arm64"}}))
	var cmp explore.Comparison
	if code := getJSON(t, a, "/api/v1/compare?a="+b.ID+"&b="+relabel.ID, &cmp); code != 200 || cmp.Kind != "builds" || len(cmp.Platforms) != 2 {
		t.Fatalf("compare builds = %d %+v", code, cmp)
	}
	for _, p := range cmp.Platforms {
		if p.BaseChanged || len(p.BaseA) != 1 || len(p.LayersAdded) != 0 || len(p.LayersSame) != 1 || p.Identical {
			t.Fatalf("%s: %+v", p.Platform, p)
		}
		if len(p.ConfigChanges) != 1 || p.ConfigChanges[0].Field != "Labels" || !strings.Contains(p.ConfigChanges[0].B, `"v":"2"`) {
			t.Fatalf("%s config changes %+v", p.Platform, p.ConfigChanges)
		}
	}
	var amd string
	for _, m := range b.Manifests {
		if m.Platform == "linux/amd64" {
			amd = m.Digest
		}
	}
	if code := getJSON(t, a, "/api/v1/compare?a="+amd+"&b="+arm.Digest, &cmp); code != 200 || cmp.Kind != "manifests" {
		t.Fatalf("compare manifests = %d", code)
	}
	pc := cmp.Platforms[0]
	changed := false
	for _, f := range pc.FilesChanged {
		changed = changed || (f.Path == "bin/busybox" && f.SizeA != f.SizeB)
	}
	if !changed || len(pc.LayersRemoved) != 1 || len(pc.LayersAdded) != 1 || pc.ConfigChanges[0].Field != "os/arch" {
		t.Fatalf("amd64 vs arm64: %+v", pc)
	}

	// The same, as pages, queried by data-testid.
	pages := []struct {
		path  string
		wants []string
	}{
		{"/builds/" + b.ID + "/index", []string{`data-testid="index-platform" data-platform="linux/arm64"`, `data-testid="index-platform" data-platform="linux/amd64"`, `data-testid="attestation"`, "docker buildx imagetools inspect", `data-copy="` + b.IndexDigest + `"`}},
		{"/blobs/" + arm.Digest, []string{`data-testid="layer-row"`, "COPY rootfs-arm64/ /", `data-testid="merged-link"`, "crane manifest"}},
		{"/blobs/" + arm.ConfigDigest, []string{`data-testid="config-label">Image for my Docker course`, `data-testid="as-dockerfile"`, `data-testid="raw-json"`, `<a href="/blobs/sha256:`}},
		{"/blobs/" + layer + "/files?sort=size", []string{`data-testid="file-row" data-path="bin/busybox"`}},
		{"/blobs/" + top.Digest + "/files", []string{`data-path="bin/vi" class="deleted"`}},
		{"/compare?a=" + b.ID + "&b=" + relabel.ID, []string{`data-testid="config-changes"`, `data-testid="base-changed">unchanged`}},
	}
	for _, p := range pages {
		code, page := get(t, a.URL+p.path)
		for _, w := range p.wants {
			if code != 200 || !strings.Contains(page, w) {
				t.Fatalf("%s (%d) lacks %s", p.path, code, w)
			}
		}
	}
	if _, page := get(t, a.URL+"/blobs/"+del.Manifests[0].Digest+"/files?merged=1"); strings.Contains(page, `data-path="bin/vi"`) || !strings.Contains(page, `data-path="bin/sh"`) {
		t.Fatal("the merged page shows the deleted bin/vi, or lacks bin/sh")
	}
	if code, page := get(t, a.URL+"/blobs/sha256:"+strings.Repeat("0", 64)); code != 404 || !strings.Contains(page, `data-testid="error-message"`) {
		t.Fatalf("unknown blob page = %d", code)
	}

	// Bad references get a sentence.
	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/blobs/sha256:" + strings.Repeat("0", 64), 404, "blob_not_found"},
		{"/api/v1/blobs/not-a-digest", 400, "invalid_digest"},
		{"/api/v1/blobs/" + arm.ConfigDigest + "/files", 400, "not_a_layer"},
		{"/api/v1/blobs/" + arm.ConfigDigest + "/files?merged=1", 400, "not_a_manifest"},
		{"/api/v1/compare?a=x&b=y", 400, "invalid_compare"},
		{"/api/v1/compare?a=" + b.ID, 400, "invalid_compare"},
		{"/api/v1/builds/01m8evrp2r0004ny3xknjd6vgd/index", 404, "build_not_found"},
	} {
		code, body := a.do(t, "GET", tt.path, "")
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code != tt.status || e.Code != tt.code || len(e.Error) < 15 {
			t.Errorf("GET %s = %d %s, want %d %s", tt.path, code, body, tt.status, tt.code)
		}
	}
}

func TestRemoteReferenceExploresLikeTheLocalBuild(t *testing.T) {
	// The test registry is loopback: it must be on the allow-list, and alone.
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", env.Registry)
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s", b.Error)
	}
	target := env.Registry + "/explore/clock:1"
	if code, body := a.do(t, "POST", "/api/v1/builds/"+b.ID+"/push", `{"tag":"`+target+`"}`); code != 200 {
		t.Fatalf("push = %d %s", code, body)
	}
	// A second Manifold with an empty store reads it from the registry.
	other := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", env.Registry)
	var got struct {
		Remote explore.RemoteRef
		Blob   explore.BlobView
	}
	if code := getJSON(t, other, "/api/v1/remote?ref="+target, &got); code != 200 {
		t.Fatalf("remote = %d", code)
	}
	if got.Remote.Digest != b.IndexDigest || got.Blob.Kind != "index" || len(got.Blob.Index.Platforms) != 2 {
		t.Fatalf("remote %+v, want the local index %s", got, b.IndexDigest)
	}
	var local explore.IndexView
	getJSON(t, a, "/api/v1/builds/"+b.ID+"/index", &local)
	for i, p := range got.Blob.Index.Platforms {
		if p.Digest != local.Platforms[i].Digest || p.ConfigDigest != local.Platforms[i].ConfigDigest || p.Layers != local.Platforms[i].Layers {
			t.Fatalf("remote platform %+v differs from local %+v", p, local.Platforms[i])
		}
	}
	// Its layer is fetched when opened, and lists the same files.
	var mv explore.BlobView
	getJSON(t, other, "/api/v1/blobs/"+got.Blob.Index.Platforms[1].Digest, &mv)
	layer := mv.Manifest.Layers[0].Digest
	var rf, lf struct{ Files []explore.FileEntry }
	if code := getJSON(t, other, "/api/v1/blobs/"+layer+"/files", &rf); code != 200 {
		t.Fatalf("remote layer files = %d", code)
	}
	getJSON(t, a, "/api/v1/blobs/"+layer+"/files", &lf)
	if len(rf.Files) == 0 || len(rf.Files) != len(lf.Files) {
		t.Fatalf("remote layer lists %d files, local %d", len(rf.Files), len(lf.Files))
	}
	// The page path redirects to the blob's page.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(other.URL + "/remote?ref=" + target)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/blobs/"+b.IndexDigest {
		t.Fatalf("remote page = %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, tt := range []struct {
		ref    string
		status int
		code   string
	}{
		{env.Registry + "/explore/clock:nope", 404, "remote_not_found"},
		{"Not A Ref!", 400, "invalid_reference"},
		{"127.0.0.1:1/down/app:1", 400, "address_not_allowed"},
	} {
		code, body := other.do(t, "GET", "/api/v1/remote?ref="+url.QueryEscape(tt.ref), "")
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code != tt.status || e.Code != tt.code {
			t.Errorf("remote %s = %d %s, want %d %s", tt.ref, code, body, tt.status, tt.code)
		}
	}
}

func TestLayerListingLimits(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr(), "--layer-max-entries", "50", "--layer-max-bytes", "33554432")
	// A decompression bomb: 256 MiB of zeros in a few hundred KiB.
	bomb, _ := storeLayer(t, a, func(tw *tar.Writer) {
		tw.WriteHeader(&tar.Header{Name: "zeros", Size: 256 << 20, Mode: 0o644, Typeflag: tar.TypeReg})
		io.Copy(tw, io.LimitReader(zeroReader{}, 256<<20))
	})
	var l struct {
		Files     []explore.FileEntry
		Truncated bool
		Reason    string `json:"truncated_reason"`
	}
	if code := getJSON(t, a, "/api/v1/blobs/"+bomb+"/files", &l); code != 200 || !l.Truncated || !strings.Contains(l.Reason, "unpacks to more than") {
		t.Fatalf("bomb listing = %d %v %q", code, l.Truncated, l.Reason)
	}
	// Too many entries, and hostile names shown as text, never followed.
	many, _ := storeLayer(t, a, func(tw *tar.Writer) {
		tw.WriteHeader(&tar.Header{Name: "../../etc/<script>x</script>", Mode: 0o644, Typeflag: tar.TypeReg})
		for i := range 80 {
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%03d", i), Mode: 0o644, Typeflag: tar.TypeReg})
		}
	})
	if code := getJSON(t, a, "/api/v1/blobs/"+many+"/files", &l); code != 200 || !l.Truncated || !strings.Contains(l.Reason, "more than 50 entries") || len(l.Files) != 50 {
		t.Fatalf("many listing = %d, %d files, %q", code, len(l.Files), l.Reason)
	}
	if l.Files[0].Path != "etc/<script>x</script>" {
		t.Fatalf("hostile name listed as %q", l.Files[0].Path)
	}
	code, page := get(t, a.URL+"/blobs/"+many+"/files")
	if code != 200 || strings.Contains(page, "<script>x") || !strings.Contains(page, `data-testid="truncated"`) {
		t.Fatalf("files page = %d: renders the name raw or lacks the truncation note", code)
	}
	// A JSON blob that is no manifest says what it is.
	junk := []byte(`{"hello": "world"}`)
	jd := digest.FromBytes(junk)
	content.WriteBlob(context.Background(), a.store(t), "j", bytes.NewReader(junk), ocispec.Descriptor{Digest: jd, Size: int64(len(junk))})
	var bv explore.BlobView
	if code := getJSON(t, a, "/api/v1/blobs/"+jd.String(), &bv); code != 200 || bv.Kind != "unknown" || bv.Note == "" {
		t.Fatalf("junk blob = %d %+v", code, bv)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
