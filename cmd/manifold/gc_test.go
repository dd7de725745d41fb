package main

import (
	"context"
	"encoding/json"
	mcontent "manifold/builds/content"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"manifold/builds"
)

func storedDigests(t *testing.T, s content.Store) []string {
	t.Helper()
	var out []string
	if err := s.Walk(context.Background(), func(i content.Info) error { out = append(out, i.Digest.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func reachableFrom(t *testing.T, s *mcontent.Store, b *builds.Build) []string {
	t.Helper()
	info, err := s.Info(context.Background(), digest.Digest(b.IndexDigest))
	if err != nil {
		t.Fatalf("index of %s is gone: %v", b.ID, err)
	}
	descs, err := mcontent.Reachable(context.Background(), s, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: info.Digest, Size: info.Size})
	if err != nil {
		t.Fatalf("walk %s: %v", b.ID, err)
	}
	var out []string
	for _, d := range descs {
		out = append(out, d.Digest.String())
	}
	return out
}

func TestGarbageCollectionRemovesExactlyTheUnreachable(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr(), "--retain-per-tag", "1", "--gc-interval", "0", "--gc-min-age", "1ns")
	mk := func(label string, tags ...string) *builds.Build {
		b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example + "LABEL which=" + label + "\n", "platforms": []string{"linux/amd64", "linux/arm64"}, "tags": tags}))
		if b.Status != builds.StatusSucceeded {
			t.Fatalf("build %s: %s", label, b.Error)
		}
		return b
	}
	pinned := mk("pinned", "team/app:1")
	if code, body := a.do(t, "POST", "/api/v1/builds/"+pinned.ID+"/pin", ""); code != 200 || !strings.Contains(string(body), `"pinned": true`) {
		t.Fatalf("pin = %d %s", code, body)
	}
	old := mk("old", "team/app:1")
	kept := mk("new", "team/app:1")
	untagged := mk("untagged")
	deleted := mk("deleted")
	if code, body := a.do(t, "DELETE", "/api/v1/builds/"+deleted.ID, ""); code != 204 {
		t.Fatalf("delete = %d %s", code, body)
	}
	upload := a.postContextBuild(t)

	s := a.store(t)
	orphan := []byte("a blob nothing references")
	if err := content.WriteBlob(context.Background(), s, "orphan", strings.NewReader(string(orphan)), ocispec.Descriptor{Digest: digest.FromBytes(orphan), Size: int64(len(orphan))}); err != nil {
		t.Fatal(err)
	}
	// A build running while the collection starts keeps its blobs.
	running := a.startBuild(t, map[string]any{"dockerfile": example + "RUN sleep 2\n", "platforms": []string{"linux/amd64"}, "no_cache": true})
	waitStatus(t, a, running, builds.StatusRunning)
	var rep mcontent.GCReport
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, body := a.do(t, "POST", "/api/v1/gc", "")
		if code != 200 || json.Unmarshal(body, &rep) != nil {
			t.Errorf("gc = %d %s", code, body)
		}
	}()
	r := a.wait(t, running)
	wg.Wait()
	if r.Status != builds.StatusSucceeded {
		t.Fatalf("running build: %s %s", r.Status, r.Error)
	}
	if len(rep.RemovedBuilds) != 1 || rep.RemovedBuilds[0] != old.ID {
		t.Fatalf("retention removed %v, want only %s (per tag 1; %s pinned)", rep.RemovedBuilds, old.ID, pinned.ID)
	}
	want := map[string]bool{upload.Context.Digest: true}
	for _, b := range []*builds.Build{pinned, kept, untagged, r, upload} {
		for _, d := range reachableFrom(t, s, b) {
			want[d] = true
		}
	}
	var wantList []string
	for d := range want {
		wantList = append(wantList, d)
	}
	sort.Strings(wantList)
	got := storedDigests(t, s)
	if strings.Join(got, " ") != strings.Join(wantList, " ") {
		t.Fatalf("after gc the store holds\n%v\nwant exactly what kept builds reach\n%v", got, wantList)
	}
	if rep.RemovedBlobs < 3 { // the orphan, old's and deleted's configs, indexes and manifests
		t.Fatalf("removed %d blobs: %+v", rep.RemovedBlobs, rep)
	}
	if code, _ := a.do(t, "GET", "/api/v1/builds/"+old.ID, ""); code != 404 {
		t.Fatalf("the removed build still answers: %d", code)
	}
	// Disk use adds up.
	code, body := a.do(t, "GET", "/api/v1/storage", "")
	var u mcontent.Usage
	if err := json.Unmarshal(body, &u); err != nil || code != 200 {
		t.Fatalf("storage = %d %s", code, body)
	}
	var stored int64
	_ = s.Walk(context.Background(), func(i content.Info) error { stored += i.Size; return nil })
	if u.TotalBytes != stored || u.Unreachable != 0 || u.SharedBytes == 0 || len(u.Builds) != 5 {
		t.Fatalf("usage %+v, store holds %d bytes", u, stored)
	}
	for _, bu := range u.Builds {
		if bu.UniqueBytes+bu.SharedBytes != bu.TotalBytes || bu.TotalBytes == 0 {
			t.Fatalf("usage of %s does not add up: %+v", bu.ID, bu)
		}
	}
	code, page := get(t, a.URL+"/storage")
	if code != 200 || !strings.Contains(page, `data-testid="usage-row" data-build-id="`+pinned.ID+`"`) {
		t.Fatalf("storage page = %d", code)
	}
	if code, body := a.do(t, "DELETE", "/api/v1/builds/"+pinned.ID, ""); code != 409 || !strings.Contains(string(body), "pinned") {
		t.Fatalf("deleting a pinned build = %d %s", code, body)
	}
}

// postContextBuild builds from an uploaded context, so its archive is a GC root.
func (a *app) postContextBuild(t *testing.T) *builds.Build {
	t.Helper()
	archive := makeTar(t, true, tarEntry{name: "Dockerfile", body: "FROM busybox:1\nCOPY f /f\n"}, tarEntry{name: "f", body: time.Now().String()})
	code, body := a.postContext(t, map[string]any{"platforms": []string{"linux/amd64"}}, archive)
	if code != 201 {
		t.Fatalf("upload = %d %s", code, body)
	}
	b := a.wait(t, buildID(t, body))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("upload build: %s", b.Error)
	}
	return b
}
