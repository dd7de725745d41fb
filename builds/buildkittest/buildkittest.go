// Package buildkittest starts the real stack for tests: a distribution
// registry on a free loopback port seeded with busybox:1 (amd64 + arm64), and a
// buildkitd on a temporary socket that uses it as its docker.io mirror. The
// binaries come from the project's bin/, which `make test` fills.
package buildkittest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"manifold/builds/buildkit"
)

// Env is a running registry and buildkitd pair.
type Env struct {
	Dir      string // temporary folder holding both daemons' state
	Registry string // host:port of the seeded registry
	Daemon   *buildkit.Daemon
	Bin      string // the project's bin/ folder

	registry *exec.Cmd
}

// Addr is buildkitd's unix:// address.
func (e *Env) Addr() string { return e.Daemon.Addr() }

// RepoRoot finds the project's root by walking up to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "builds")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("project root not found above the working folder")
		}
		dir = parent
	}
}

// Start brings up the registry and buildkitd. Close stops both and removes their state.
func Start(log *slog.Logger) (*Env, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "bin")
	for _, f := range []string{"buildkitd", "registry", "seed/busybox/index.json"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			return nil, fmt.Errorf("bin/%s is missing: run `make test` (or scripts/setup.sh) first", f)
		}
	}
	dir, err := os.MkdirTemp("", "mf-test-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Bin: bin}
	if err := e.startRegistry(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.Seed(filepath.Join(bin, "seed", "busybox")+":1", "library/busybox:1"); err != nil {
		e.Close()
		return nil, err
	}
	d, err := buildkit.StartDaemon(context.Background(), buildkit.DaemonConfig{
		Binary: filepath.Join(bin, "buildkitd"),
		Root:   filepath.Join(dir, "bk"),
		Mirror: e.Registry,
		Log:    log,
	}, 60*time.Second)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.Daemon = d
	return e, nil
}

// FreePort returns a loopback host:port that was free a moment ago.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (e *Env) startRegistry() error {
	r, err := StartRegistry(e.Bin, filepath.Join(e.Dir, "registry"), "")
	if err != nil {
		return err
	}
	e.registry, e.Registry = r.cmd, r.Addr
	return nil
}

// Registry is a distribution registry process on a free loopback port.
type Registry struct {
	Addr string
	cmd  *exec.Cmd
}

// StartRegistry runs bin/registry with its storage in dir; with htpasswd (a
// file in htpasswd format) it asks for basic auth.
func StartRegistry(bin, dir, htpasswd string) (*Registry, error) {
	addr, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n  secret: manifold-test\n",
		filepath.Join(dir, "data"), addr)
	if htpasswd != "" {
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: manifold-test\n    path: %s\n", htpasswd)
	}
	cfgPath := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "registry"), "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	r := &Registry{Addr: addr, cmd: cmd}
	for range 100 {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Close()
	return nil, fmt.Errorf("registry on %s did not answer", addr)
}

// Close stops the registry.
func (r *Registry) Close() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// Seed copies an OCI layout reference (path:tag) into the registry as repo:tag, all platforms.
func (e *Env) Seed(layoutRef, repoTag string) error {
	out, err := exec.Command("skopeo", "copy", "-q", "--all", "--dest-tls-verify=false",
		"oci:"+layoutRef, "docker://"+e.Registry+"/"+repoTag).CombinedOutput()
	if err != nil {
		return fmt.Errorf("skopeo copy %s: %v: %s", layoutRef, err, out)
	}
	return nil
}

// Close stops buildkitd and the registry and removes their state.
func (e *Env) Close() {
	if e.Daemon != nil {
		e.Daemon.Stop()
	}
	if e.registry != nil && e.registry.Process != nil {
		_ = e.registry.Process.Kill()
		_ = e.registry.Wait()
	}
	if e.Dir != "" {
		_ = os.RemoveAll(e.Dir)
	}
}

// StartDaemon starts another buildkitd beside the Env's, with its own state
// folder, the same registry as mirror and the extra flags given (such as
// --oci-worker-platform linux/arm64): a second node for tests. Stop it with
// its Stop.
func (e *Env) StartDaemon(name string, log *slog.Logger, args ...string) (*buildkit.Daemon, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return buildkit.StartDaemon(context.Background(), buildkit.DaemonConfig{
		Binary: filepath.Join(e.Bin, "buildkitd"),
		Root:   filepath.Join(e.Dir, "bk-"+name),
		Mirror: e.Registry,
		Log:    log,
		Args:   args,
	}, 60*time.Second)
}
