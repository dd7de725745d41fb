package main

import (
	"encoding/json"
	"strings"
	"testing"

	"manifold/builds"
	"manifold/builds/explore"
)

// TestExplorerJSONExact: an empty layer lists "files": [], the merged
// listing has the real unpacked size and a boolean truncated, the config
// rebuilt as a Dockerfile uses valid exec form, and the index view's
// compressed_size equals the build object's image_size (both: config and layers).
func TestExplorerJSONExact(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN true\nRUN echo a > /a\nCMD [\"cat\", \"/a\"]\n", "platforms": []string{"linux/amd64"}}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s", b.Error)
	}
	var mv explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+b.Manifests[0].Digest, &mv)
	var sum int64
	empty := false
	for _, l := range mv.Manifest.Layers {
		code, body := a.do(t, "GET", "/api/v1/blobs/"+l.Digest+"/files", "")
		if code != 200 {
			t.Fatalf("files of %s = %d", l.Digest, code)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if string(raw["files"]) == "null" {
			t.Fatalf("layer %s lists \"files\": null", l.Digest)
		}
		if string(raw["truncated"]) != "false" {
			t.Fatalf("truncated = %s, want a boolean false", raw["truncated"])
		}
		var n struct {
			Files            []explore.FileEntry
			UncompressedSize int64 `json:"uncompressed_size"`
		}
		_ = json.Unmarshal(body, &n)
		empty = empty || len(n.Files) == 0
		sum += n.UncompressedSize
	}
	t.Logf("%d layers, an empty one: %v", len(mv.Manifest.Layers), empty)
	// An empty folder's contents copied: a layer with no entries at all.
	e := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1 AS b\nRUN mkdir /e\nFROM scratch\nCOPY --from=b /e/ /\n", "platforms": []string{"linux/amd64"}}))
	var ev explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+e.Manifests[0].Digest, &ev)
	for _, l := range ev.Manifest.Layers {
		code, body := a.do(t, "GET", "/api/v1/blobs/"+l.Digest+"/files", "")
		var raw map[string]json.RawMessage
		if code != 200 || json.Unmarshal(body, &raw) != nil {
			t.Fatalf("layer %s: %d %s", l.Digest, code, body)
		}
		if string(raw["files"]) == "null" {
			t.Fatalf("an empty layer lists files: null")
		}
		empty = empty || string(raw["files"]) == "[]"
	}
	if !empty {
		t.Fatal("no empty layer was listed; the test needs one")
	}
	code, body := a.do(t, "GET", "/api/v1/blobs/"+b.Manifests[0].Digest+"/files?merged=1", "")
	var merged map[string]json.RawMessage
	if code != 200 || json.Unmarshal(body, &merged) != nil {
		t.Fatalf("merged = %d %s", code, body)
	}
	var size int64
	_ = json.Unmarshal(merged["uncompressed_size"], &size)
	if size != sum || size == 0 || string(merged["truncated"]) != "false" {
		t.Fatalf("merged: uncompressed_size %d (layers add up to %d), truncated %s", size, sum, merged["truncated"])
	}
	var cv explore.BlobView
	getJSON(t, a, "/api/v1/blobs/"+mv.Manifest.Config.Digest.String(), &cv)
	if !strings.Contains(cv.Config.Dockerfile, `CMD ["cat", "/a"]`) {
		t.Fatalf("config as a Dockerfile:\n%s", cv.Config.Dockerfile)
	}
	var idx explore.IndexView
	getJSON(t, a, "/api/v1/builds/"+b.ID+"/index", &idx)
	if len(idx.Platforms) != 1 || idx.Platforms[0].CompressedSize != b.Manifests[0].ImageSize || b.Manifests[0].ImageSize == 0 {
		t.Fatalf("index compressed_size %d, build image_size %d", idx.Platforms[0].CompressedSize, b.Manifests[0].ImageSize)
	}
}
