package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"manifold/builds"
	"manifold/builds/buildkittest"
)

// dockerEngine is a dockerd of the test's own: its own socket, data root,
// exec root and pid file, no iptables, no default bridge, the vfs driver.
type dockerEngine struct {
	dir, host string
	cmd       *exec.Cmd
}

// startDocker starts the engine, or skips the test when this machine cannot run one.
func startDocker(t *testing.T) *dockerEngine {
	t.Helper()
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatal("dockerd is not installed: scripts/setup.sh installs Debian's docker.io")
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatal("docker-compose is not installed: scripts/setup.sh installs Debian's docker-compose")
	}
	dir, err := os.MkdirTemp("", "mfdocker") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	e := &dockerEngine{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock")}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(dockerd, "--iptables=false", "--bridge=none", "--storage-driver=vfs",
		"--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "-H", e.host)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		t.Skipf("the Docker engine cannot start on this machine: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- e.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			e.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Logf("dockerd log (tail):\n%s", tail(string(b), 3000))
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if exec.Command("docker", "-H", e.host, "info").Run() == nil {
			return e
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Skipf("the Docker engine cannot start on this machine (dockerd exited: %v):\n%s", err, tail(string(b), 2000))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Skipf("the Docker engine did not answer in 60 s on this machine:\n%s", tail(string(b), 2000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// run runs a command against the engine, with extra environment, and returns its output.
func (e *dockerEngine) run(t *testing.T, env []string, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = "../.."
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST="+e.host), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, tail(out.String(), 3000), tail(errb.String(), 3000))
	}
	return out.String()
}

// TestComposeDeployment runs the repository's docker-compose.yml, unchanged, on
// a real Docker engine with the images Manifold built of itself (make image),
// and uses it as the README says: the first admin made with `compose exec`,
// the example built for both platforms through the published port, the
// result pulled with `docker pull`, and everything still there after
// `down` and `up`.
func TestComposeDeployment(t *testing.T) {
	e := startDocker(t)

	// make image, on this engine.
	start := time.Now()
	out := e.run(t, nil, "", "bash", "scripts/image.sh")
	t.Logf("scripts/image.sh in %s:\n%s", time.Since(start).Round(time.Second), out)
	m := regexp.MustCompile(`(?m)^image manifold:latest build \S+ index (sha256:[0-9a-f]{64}) platforms (\S+)$`).FindStringSubmatch(out)
	if m == nil || m[2] != "linux/amd64,linux/arm64" {
		t.Fatalf("the dogfood build's index does not hold linux/amd64 and linux/arm64: %q", m)
	}
	if !regexp.MustCompile(`(?m)^arm64 manifold version: manifold .*buildkit client`).MatchString(out) {
		t.Fatal("the arm64 manifold image did not answer `manifold version` under QEMU")
	}
	for _, img := range []string{"manifold:latest", "manifold-buildkitd:latest", "manifold-registry:latest"} {
		e.run(t, nil, "", "docker", "image", "inspect", img)
	}

	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	project := fmt.Sprintf("mftest%d", time.Now().UnixNano()%1_000_000)
	cenv := []string{"MANIFOLD_PORT=" + port, "COMPOSE_PROJECT_NAME=" + project}
	compose := func(args ...string) string {
		return e.run(t, cenv, "", "docker-compose", append([]string{"-f", "docker-compose.yml"}, args...)...)
	}
	t.Cleanup(func() {
		cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "down", "-v", "--remove-orphans")
		cmd.Dir, cmd.Env = "../..", append(append(os.Environ(), "DOCKER_HOST="+e.host), cenv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	url := "http://127.0.0.1:" + port
	up := func() {
		start := time.Now()
		compose("up", "-d")
		id := strings.TrimSpace(compose("ps", "-q", "manifold"))
		for {
			st := strings.TrimSpace(e.run(t, nil, "", "docker", "inspect", "-f", "{{.State.Health.Status}}", id))
			if st == "healthy" {
				break
			}
			if time.Since(start) > 2*time.Minute {
				t.Fatalf("manifold is %s after 2 minutes:\n%s", st, compose("logs", "--tail", "40"))
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("compose up → manifold healthy in %s", time.Since(start).Round(100*time.Millisecond))
	}
	up()

	// Setup mode does not answer through the published port; the documented way makes the admin.
	if resp, err := http.Get(url + "/api/v1/builds"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("before the first user, the published port answered %v %v", resp, err)
	}
	if out := compose("exec", "-T", "manifold", "manifold", "user", "create", "--admin", "admin"); !strings.Contains(out, "password:") {
		t.Fatalf("user create said %q", out)
	}
	token := regexp.MustCompile(`mf_\S+`).FindString(compose("exec", "-T", "manifold", "manifold", "token", "create", "--user", "admin", "--scope", "admin"))
	if token == "" {
		t.Fatal("token create printed no token")
	}
	api := func(method, path, body string) (int, []byte) {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	getBuild := func(id string) builds.Build {
		code, body := api("GET", "/api/v1/builds/"+id, "")
		var b builds.Build
		if code != 200 || json.Unmarshal(body, &b) != nil {
			t.Fatalf("GET build %s = %d %s", id, code, body)
		}
		return b
	}
	code, body := api("POST", "/api/v1/builds", mustJSON(map[string]any{"dockerfile": example, "platforms": []string{"linux/amd64", "linux/arm64"}}))
	if code != http.StatusCreated {
		t.Fatalf("POST build = %d %s", code, body)
	}
	id := buildID(t, body)
	var b builds.Build
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if b = getBuild(id); b.Status.Final() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("build still %s", b.Status)
		}
	}
	if b.Status != builds.StatusSucceeded || len(b.Manifests) != 2 {
		t.Fatalf("the example through compose: %s %q, %d manifests", b.Status, b.Error, len(b.Manifests))
	}
	export := func() string {
		code, body := api("GET", "/api/v1/builds/"+id+"/export?format=oci", "")
		if code != 200 {
			t.Fatalf("export = %d %s", code, body)
		}
		s := sha256.Sum256(body)
		return hex.EncodeToString(s[:])
	}
	archive := export()

	// docker pull from the published port, logged in with the token.
	denv := []string{"DOCKER_CONFIG=" + t.TempDir()}
	ref := "127.0.0.1:" + port + "/builds:" + id
	e.run(t, denv, token+"\n", "docker", "login", "127.0.0.1:"+port, "-u", "admin", "--password-stdin")
	pull := func() {
		e.run(t, denv, "", "docker", "pull", "-q", ref)
		labels := e.run(t, nil, "", "docker", "image", "inspect", "-f", "{{.Id}} {{index .Config.Labels \"description\"}}", ref)
		if !strings.Contains(labels, "Image for my Docker course") {
			t.Fatalf("the pulled image's labels: %q", labels)
		}
		e.run(t, nil, "", "docker", "rmi", ref)
	}
	pull()

	// down (volumes kept) and up: the build, its blobs and the accounts are still there.
	compose("down")
	up()
	again := getBuild(id)
	if again.Status != builds.StatusSucceeded || again.IndexDigest != b.IndexDigest || len(again.Manifests) != 2 {
		t.Fatalf("after down and up: %s %s (was %s)", again.Status, again.IndexDigest, b.IndexDigest)
	}
	if got := export(); got != archive {
		t.Fatalf("the OCI archive after down and up hashes to %s, before %s", got, archive)
	}
	pull()
}
