package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

// waitStep polls a build until one of its steps whose name holds name has
// started (and, with running, not finished yet).
func waitStep(t *testing.T, a *app, id, name string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var b builds.Build
		_, body := a.do(t, "GET", "/api/v1/builds/"+id, "")
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		for _, s := range b.Steps {
			if strings.Contains(s.Name, name) && s.StartedAt != nil && s.FinishedAt == nil {
				return
			}
		}
		if b.Status.Final() || time.Now().After(deadline) {
			t.Fatalf("step %q never ran in build %s (%s %s)", name, id, b.Status, b.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getBuild(t *testing.T, a *app, id string) *builds.Build {
	t.Helper()
	code, body := a.do(t, "GET", "/api/v1/builds/"+id, "")
	var b builds.Build
	if err := json.Unmarshal(body, &b); code != 200 || err != nil {
		t.Fatalf("GET build %s = %d %s", id, code, body)
	}
	return &b
}

// TestManifoldKilled kills the Manifold process (SIGKILL) while a build
// runs, while BuildKit exports a result into the store, and while a
// download streams: each time the database opens again, the build is
// interrupted, no blob in the store is partial, collection keeps what kept
// builds need, and the download resumes with Range to the right bytes.
func TestManifoldKilled(t *testing.T) {
	data := t.TempDir()
	flags := []string{"--buildkit", env.Addr(), "--gc-min-age", "1ms", "--gc-interval", "0"}
	p := startProcess(t, data, flags...)
	big := func(tag string) map[string]any {
		return map[string]any{"dockerfile": "FROM busybox:1\nRUN head -c 40000000 /dev/urandom > /big # " + tag + "\n",
			"platforms": []string{"linux/amd64"}, "no_cache": true}
	}
	kept := p.wait(t, p.startBuild(t, big("kept")))
	if kept.Status != builds.StatusSucceeded {
		t.Fatalf("kept build: %s %s", kept.Status, kept.Error)
	}

	// Killed while a build runs.
	running := p.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 30\n", "platforms": []string{"linux/amd64"}, "no_cache": true})
	waitStep(t, &p.app, running, "sleep 30")
	p.kill()
	p = startProcess(t, data, flags...)
	if b := getBuild(t, &p.app, running); b.Status != builds.StatusInterrupted || !strings.Contains(b.Error, "Manifold stopped") {
		t.Fatalf("build running at the kill: %s %q", b.Status, b.Error)
	}
	verifyStore(t, data)

	// Killed while BuildKit writes a result into the store.
	exporting := p.startBuild(t, big("exported"))
	waitStep(t, &p.app, exporting, "exporting to oci image format")
	time.Sleep(150 * time.Millisecond) // into the layer's write
	p.kill()
	p = startProcess(t, data, flags...)
	if b := getBuild(t, &p.app, exporting); b.Status != builds.StatusInterrupted && b.Status != builds.StatusSucceeded {
		t.Fatalf("build exporting at the kill: %s %q", b.Status, b.Error)
	}
	verifyStore(t, data)
	code, body := p.do(t, "POST", "/api/v1/gc", "{}")
	if code != 200 {
		t.Fatalf("gc = %d %s", code, body)
	}
	if left, _ := os.ReadDir(filepath.Join(data, "content", "ingest")); len(left) != 0 {
		t.Fatalf("%d ingests left after collection: %s", len(left), body)
	}
	verifyStore(t, data)

	// The kept build's image is whole: every blob its archive needs is there.
	dir := t.TempDir()
	url := p.URL + "/api/v1/builds/" + kept.ID + "/export?format=oci"
	whole, resp := download(t, url, dir, "whole.oci.tar", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download after collection = %d", resp.StatusCode)
	}
	wantSum, etag := sumFile(t, whole), resp.Header.Get("ETag")
	if raw := sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+whole); !strings.Contains(raw, kept.Manifests[0].Digest) {
		t.Fatalf("the archive's index lacks the manifest: %s", raw)
	}

	// Killed during a download: the client resumes with Range and If-Range.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 8<<20)
	if _, err := io.ReadFull(resp.Body, part); err != nil {
		t.Fatal(err)
	}
	p.kill()
	resp.Body.Close()
	p = startProcess(t, data, flags...)
	req, _ := http.NewRequest("GET", p.URL+"/api/v1/builds/"+kept.ID+"/export?format=oci", nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(part)))
	req.Header.Set("If-Range", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("resume = %d, want 206", resp.StatusCode)
	}
	h := sha256.New()
	h.Write(part)
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
		t.Fatalf("resumed download hashes to %s, the whole one to %s", got, wantSum)
	}
}

// dropProxy forwards TCP connections to upstream; while drop is set, it cuts
// each connection once the client has sent more than 256 KiB.
type dropProxy struct {
	l    net.Listener
	drop atomic.Bool
}

func startDropProxy(t *testing.T, upstream string) *dropProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c, upstream)
		}
	}()
	return p
}

func (p *dropProxy) serve(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	go func() { _, _ = io.Copy(c, u); c.Close() }()
	var sent int64
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			sent += int64(n)
			if p.drop.Load() && sent > 256<<10 {
				return // the connection drops in the middle of the upload
			}
			if _, werr := u.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestRegistryDropsMidPush pushes through a proxy that cuts the connection
// in the middle of the upload: the push fails with a sentence, the stored
// result stays whole, and once the registry is reachable again a promote works.
func TestRegistryDropsMidPush(t *testing.T) {
	reg, err := buildkittest.StartRegistry(env.Bin, filepath.Join(t.TempDir(), "reg"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	proxy := startDropProxy(t, reg.Addr)
	target := proxy.l.Addr().String()
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", target)
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN head -c 8000000 /dev/urandom > /big\n",
		"platforms": []string{"linux/amd64"}, "no_cache": true}))
	if b.Status != builds.StatusSucceeded {
		t.Fatalf("build: %s %s", b.Status, b.Error)
	}
	proxy.drop.Store(true)
	code, body := a.do(t, "POST", "/api/v1/builds/"+b.ID+"/push", `{"tag":"`+target+`/team/app:1"}`)
	var e struct{ Error, Code string }
	if err := json.Unmarshal(body, &e); err != nil || code != http.StatusBadGateway || e.Code != "push_failed" || !strings.HasPrefix(e.Error, "the push to "+target+"/team/app:1 failed: ") {
		t.Fatalf("push through a dropping connection = %d %s", code, body)
	}
	// The result is intact, and the failure is in the build's history.
	after := getBuild(t, a, b.ID)
	if after.Status != builds.StatusSucceeded || after.IndexDigest != b.IndexDigest || len(after.Pushes) != 1 || after.Pushes[0].OK {
		t.Fatalf("after the failed push: %s %s pushes %+v", after.Status, after.IndexDigest, after.Pushes)
	}
	whole, resp := download(t, a.URL+"/api/v1/builds/"+b.ID+"/export?format=oci", t.TempDir(), "w.oci.tar", nil)
	if resp.StatusCode != 200 || !strings.Contains(sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+whole), b.Manifests[0].Digest) {
		t.Fatalf("export after the failed push = %d", resp.StatusCode)
	}
	// The registry is reachable again: promote works and the digest matches.
	proxy.drop.Store(false)
	code, body = a.do(t, "POST", "/api/v1/builds/"+b.ID+"/push", `{"tag":"`+target+`/team/app:1"}`)
	if code != 200 {
		t.Fatalf("promote once the registry is back = %d %s", code, body)
	}
	if raw := sh(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+reg.Addr+"/team/app:1"); !strings.Contains(raw, b.Manifests[0].Digest) {
		t.Fatalf("the registry holds %s", raw)
	}
}
