package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

func TestPushToARegistryWithAuth(t *testing.T) {
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("pusher:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := buildkittest.StartRegistry(env.Bin, filepath.Join(dir, "reg"), htpasswd)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	_, port, _ := strings.Cut(reg.Addr, ":")
	down, err := buildkittest.FreePort() // allow-listed, but nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	// Exactly this registry (under both its names) and the down one may be reached.
	a := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", reg.Addr+",localhost:"+port+","+down)

	// Credentials go in sealed and never come back.
	code, body := a.do(t, "PUT", "/api/v1/registries/"+reg.Addr, `{"username":"pusher","password":"s3cret-pass","insecure":true}`)
	if code != 200 || strings.Contains(string(body), "s3cret") {
		t.Fatalf("PUT registry = %d %s", code, body)
	}
	// The same registry under another name, with a wrong password.
	code, body = a.do(t, "PUT", "/api/v1/registries/localhost:"+port, `{"username":"pusher","password":"wrong","insecure":true}`)
	if code != 200 {
		t.Fatalf("PUT registry = %d %s", code, body)
	}
	code, body = a.do(t, "GET", "/api/v1/registries", "")
	if code != 200 || !strings.Contains(string(body), reg.Addr) || strings.Contains(string(body), "s3cret") || strings.Contains(string(body), "wrong") {
		t.Fatalf("GET registries = %d %s", code, body)
	}
	if fi, err := os.Stat(filepath.Join(a.Data, "secret.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}

	// A build that pushes in the same Solve: the registry holds the stored digest.
	target := reg.Addr + "/team/clock:1.0"
	b := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}, "tags": []string{target}, "push": true}))
	if b.Status != builds.StatusSucceeded || !b.Pushed || len(b.Pushes) != 1 || !b.Pushes[0].OK || b.Pushes[0].Digest != b.IndexDigest {
		t.Fatalf("push build: %s %q pushed=%v %+v", b.Status, b.Error, b.Pushed, b.Pushes)
	}
	inspect := func(ref string) string {
		t.Helper()
		out, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "pusher:s3cret-pass", "docker://"+ref).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
		}
		return digest.FromBytes(out).String()
	}
	if got := inspect(target); got != b.IndexDigest {
		t.Fatalf("registry has %s for %s, the build stored %s", got, target, b.IndexDigest)
	}
	// Manifold pushed it from its store after the build, and the log says so.
	code, logText := a.do(t, "GET", "/api/v1/builds/"+b.ID+"/log", "")
	if code != 200 || !strings.Contains(string(logText), "pushing "+target) || !strings.Contains(string(logText), "pushing manifest list "+b.IndexDigest) {
		t.Fatalf("log (%d) does not show the push:\n%s", code, logText)
	}

	// Promote later, from the store, to another tag.
	promoted := reg.Addr + "/team/clock:stable"
	code, body = a.do(t, "POST", "/api/v1/builds/"+b.ID+"/push", `{"tag":"`+promoted+`"}`)
	if code != 200 || !strings.Contains(string(body), `"ok": true`) {
		t.Fatalf("promote = %d %s", code, body)
	}
	if got := inspect(promoted); got != b.IndexDigest {
		t.Fatalf("promoted tag has %s, want %s", got, b.IndexDigest)
	}

	// Refused by the registry: the build keeps its result, the push says why.
	bad := a.wait(t, a.startBuild(t, map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64"}, "tags": []string{"localhost:" + port + "/team/clock:bad"}, "push": true}))
	if bad.Status != builds.StatusSucceeded || bad.Pushed || len(bad.Pushes) != 1 || bad.Pushes[0].OK || bad.IndexDigest == "" {
		t.Fatalf("refused push: %s %q pushed=%v %+v", bad.Status, bad.Error, bad.Pushed, bad.Pushes)
	}
	if e := strings.ToLower(bad.Pushes[0].Error); !strings.Contains(e, "401") && !strings.Contains(e, "unauthorized") {
		t.Fatalf("push error %q does not carry the registry's words", bad.Pushes[0].Error)
	}
	if code, _ := a.do(t, "GET", "/api/v1/builds/"+bad.ID+"/export", ""); code != 200 {
		t.Fatalf("the result of a build whose push failed is not kept: export = %d", code)
	}
	// A registry that is down: the registry's host is named, the network's errno is not.
	code, body = a.do(t, "POST", "/api/v1/builds/"+b.ID+"/push", `{"tag":"`+down+`/team/clock:x"}`)
	var e struct{ Error, Code string }
	_ = json.Unmarshal(body, &e)
	if code != 502 || e.Code != "push_failed" || !strings.Contains(e.Error, "could not reach registry host "+down) || strings.Contains(e.Error, "refused") {
		t.Fatalf("push to a down registry = %d %s", code, body)
	}
	// A loopback registry off the allow-list is refused before anything happens, and not recorded.
	code, body = a.do(t, "POST", "/api/v1/builds/"+b.ID+"/push", `{"tag":"127.0.0.1:1/team/clock:x"}`)
	if code != 400 || !strings.Contains(string(body), "address_not_allowed") || !strings.Contains(string(body), "127.0.0.1:1 is a loopback address") {
		t.Fatalf("push to a loopback registry off the allow-list = %d %s", code, body)
	}
	code, body = a.do(t, "GET", "/api/v1/builds/"+b.ID, "")
	var got builds.Build
	_ = json.Unmarshal(body, &got)
	if len(got.Pushes) != 3 || !got.Pushes[1].OK || got.Pushes[2].OK {
		t.Fatalf("push history %+v", got.Pushes)
	}
	// The password is nowhere in the database files in clear.
	for _, f := range []string{"manifold.db", "manifold.db-wal"} {
		raw, _ := os.ReadFile(filepath.Join(a.Data, f))
		if bytes.Contains(raw, []byte("s3cret-pass")) {
			t.Fatalf("%s holds the password in clear", f)
		}
	}
	for _, tt := range []struct{ method, path, body, code string }{
		{"PUT", "/api/v1/registries/bad host", `{"username":"u","password":"p"}`, "invalid_registry"},
		{"PUT", "/api/v1/registries/r.example.com", `{"username":"u"}`, "invalid_credential"},
		{"DELETE", "/api/v1/registries/nothing.example.com", ``, "registry_not_found"},
		{"POST", "/api/v1/builds/" + b.ID + "/push", `{"tag":"Not A Ref"}`, "invalid_tag"},
		{"POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","push":true}`, "invalid_tag"},
		{"POST", "/api/v1/builds", `{"dockerfile":"FROM busybox:1","tags":["team/App:1"]}`, "invalid_tag"},
	} {
		code, body := a.do(t, tt.method, strings.ReplaceAll(tt.path, " ", "%20"), tt.body)
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code/100 != 4 || e.Code != tt.code {
			t.Errorf("%s %s = %d %s, want 4xx %s", tt.method, tt.path, code, body, tt.code)
		}
	}
}
