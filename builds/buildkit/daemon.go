// Package buildkit is Manifold's BuildKit side: the nodes builds run on and
// their health, the Engine that solves a build on a node (builds.Solver:
// inputs, sessions, the outbound source policy, progress into steps and log
// lines, the stored result, pushes), the supervised embedded buildkitd, and
// the bridge network (CNI and firewall rules) its RUN steps get.
package buildkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"manifold/builds"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DaemonConfig describes an embedded buildkitd child process.
type DaemonConfig struct {
	Binary string // path of buildkitd
	Root   string // its state folder; the socket and config live here too
	// Mirror is a registry host:port used as the docker.io mirror (plain HTTP), or "".
	Mirror string
	Log    *slog.Logger
	// Network is where RUN steps get their network: builds.NetworkBridge (also
	// when empty), builds.NetworkHost or builds.NetworkNone.
	Network string
	// Frontends limits the `# syntax=` frontend images buildkitd itself
	// runs: none when empty.
	Frontends builds.FrontendPolicy
	// CNIBinDir holds the CNI plugins; /usr/lib/cni or /opt/cni/bin when empty.
	CNIBinDir string
	// Args are more buildkitd flags, such as --oci-worker-platform linux/arm64.
	Args []string
}

// Daemon supervises a buildkitd child: it writes its config, starts it,
// restarts it with back-off when it dies, and stops it on Stop.
type Daemon struct {
	cfg  DaemonConfig
	addr string

	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool
	// stopping is set once Manifold asked buildkitd to stop.
	stopping atomic.Bool
	cancel   context.CancelFunc
	done     chan struct{}

	net      *bridgeNet // the bridge network's set-up, or nil
	teardown sync.Once
}

// Addr is the daemon's unix:// address.
func (d *Daemon) Addr() string { return d.addr }

// Pid is the running child's process id, or 0.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// FindBuildkitd looks for the buildkitd binary: next to the running
// executable, in ./bin, then on PATH.
func FindBuildkitd() (string, error) {
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "buildkitd"))
	}
	candidates = append(candidates, filepath.Join("bin", "buildkitd"))
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return filepath.Abs(c)
		}
	}
	if p, err := exec.LookPath("buildkitd"); err == nil {
		return p, nil
	}
	return "", errors.New("buildkitd not found next to manifold, in ./bin or on PATH; run `make run` once, or pass --buildkitd-bin")
}

// StartDaemon starts buildkitd and waits until it answers, at most ready.
func StartDaemon(ctx context.Context, cfg DaemonConfig, ready time.Duration) (*Daemon, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create buildkit folder: %w", err)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, err
	}
	cfg.Root = root
	sock := filepath.Join(root, "buildkitd.sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("the buildkitd socket path %s is too long for a unix socket; use a shorter data folder", sock)
	}
	mode, err := builds.ParseBuildNetwork(cfg.Network)
	if err != nil {
		return nil, err
	}
	cfg.Network = mode
	var bn *bridgeNet
	switch mode {
	case builds.NetworkBridge:
		if bn, err = prepareBridge(root, cfg.CNIBinDir); err != nil {
			return nil, err
		}
		cfg.Log.Info("build network: RUN steps get their own network namespace; this machine's addresses and link-local addresses are dropped",
			"bridge", bn.Name, "subnet", bn.Subnet.String())
	case builds.NetworkHost:
		cfg.Log.Warn("build network host: RUN steps share this machine's network and reach Manifold, the registry mirror and every local service; use it only for trusted Dockerfiles")
	case builds.NetworkNone:
		cfg.Log.Info("build network none: RUN steps get no network")
	}
	if err := os.WriteFile(filepath.Join(root, "buildkitd.toml"), []byte(daemonConfigTOML(cfg, sock, bn)), 0o600); err != nil {
		if bn != nil {
			bn.uninstall()
		}
		return nil, fmt.Errorf("write buildkitd.toml: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &Daemon{cfg: cfg, addr: "unix://" + sock, cancel: cancel, done: make(chan struct{}), net: bn}
	go d.supervise(runCtx)

	node, err := NewNode("embedded", d.addr, TLSConfig{})
	if err != nil {
		d.Stop()
		return nil, err
	}
	defer node.Close()
	deadline := time.Now().Add(ready)
	for {
		st := node.Status(ctx, time.Second)
		if st.OK {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.Stop()
			return nil, fmt.Errorf("buildkitd did not become ready in %s: %s", ready, st.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// prepareBridge checks the machine can run the bridge network, writes its
// CNI configuration under root and installs its firewall rules.
func prepareBridge(root, cniDir string) (*bridgeNet, error) {
	dirs := cniBinDirs
	if cniDir != "" {
		dirs = []string{cniDir}
	}
	bin, err := checkBridgeNeeds(dirs)
	if err != nil {
		return nil, err
	}
	// Bridges a killed Manifold left behind go first.
	sweepStaleBridges()
	bn, err := newBridgeNet(root, bin)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(bn.IPAMDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the CNI folder: %w", err)
	}
	if err := os.WriteFile(bn.Conflist, []byte(bn.conflist()), 0o600); err != nil {
		return nil, fmt.Errorf("write the CNI configuration: %w", err)
	}
	if err := bn.install(); err != nil {
		return nil, err
	}
	if err := bn.claim(); err != nil {
		return nil, fmt.Errorf("record the build network's owner: %w", err)
	}
	return bn, nil
}

// daemonConfigTOML is buildkitd's configuration; bn is the bridge network
// in bridge mode, nil otherwise.
func daemonConfigTOML(cfg DaemonConfig, sock string, bn *bridgeNet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by Manifold at every start; edits are overwritten.\nroot = %q\n\n", cfg.Root)
	fmt.Fprintf(&b, "[grpc]\n  address = [%q]\n\n", "unix://"+sock)
	b.WriteString("[worker.oci]\n  enabled = true\n  gc = true\n")
	if bn != nil {
		fmt.Fprintf(&b, "  networkMode = \"cni\"\n  cniConfigPath = %q\n  cniBinaryPath = %q\n", bn.Conflist, bn.BinDir)
	} else {
		// Explicit: "auto" would fall back to the host network with a warning.
		// In none mode every solve asks for no network instead.
		b.WriteString("  networkMode = \"host\"\n")
	}
	b.WriteString("\n[worker.containerd]\n  enabled = false\n")
	// buildkitd's own check of `# syntax=` images; it compares repositories
	// only, so Manifold checks exact references before each solve too.
	if repos := cfg.Frontends.Repositories(); len(repos) > 0 {
		fmt.Fprintf(&b, "\n[frontend.\"gateway.v0\"]\n  enabled = true\n  allowedRepositories = [")
		for i, r := range repos {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", r)
		}
		b.WriteString("]\n")
	} else {
		b.WriteString("\n[frontend.\"gateway.v0\"]\n  enabled = false\n")
	}
	mirror := cfg.Mirror
	if mirror != "" {
		fmt.Fprintf(&b, "\n[registry.\"docker.io\"]\n  mirrors = [%q]\n\n[registry.%q]\n  http = true\n", mirror, mirror)
	}
	return b.String()
}

func (d *Daemon) supervise(ctx context.Context) {
	defer close(d.done)
	backoff := time.Second
	for {
		began := time.Now()
		err := d.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 30*time.Second {
			backoff = time.Second
		}
		d.cfg.Log.Error("buildkitd exited; restarting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (d *Daemon) runOnce(ctx context.Context) error {
	_ = os.Remove(strings.TrimPrefix(d.addr, "unix://")) // a stale socket from a crash
	args := append([]string{"--config", filepath.Join(d.cfg.Root, "buildkitd.toml"),
		"--oci-worker=true", "--containerd-worker=false"}, d.cfg.Args...)
	cmd := exec.Command(d.cfg.Binary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("start %s: %w", d.cfg.Binary, err)
	}
	d.cmd = cmd
	d.mu.Unlock()
	d.cfg.Log.Info("buildkitd started", "pid", cmd.Process.Pid, "addr", d.addr)

	copied := make(chan struct{})
	go func() { defer close(copied); d.copyLog(out) }()
	exited := make(chan error, 1)
	go func() { <-copied; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		d.mu.Lock()
		d.cmd = nil
		d.mu.Unlock()
		return err
	case <-ctx.Done():
		// One SIGTERM: buildkitd's first signal is its graceful stop (a
		// second would skip the shutdown). What it prints while stopping
		// ("got SIGTERM/SIGINT, forcing shutdown" and the cause's stack) is
		// its normal goodbye, logged at debug.
		began := time.Now()
		d.stopping.Store(true)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			d.cfg.Log.Info("buildkitd stopped", "pid", cmd.Process.Pid, "took_ms", time.Since(began).Milliseconds())
			return err
		case <-time.After(stopTimeout):
			d.cfg.Log.Warn("buildkitd did not stop in time; killing it", "pid", cmd.Process.Pid, "timeout", stopTimeout)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return <-exited
		}
	}
}

// stopTimeout is how long buildkitd gets to stop before it is killed.
const stopTimeout = 10 * time.Second

// copyLog forwards buildkitd's output into Manifold's log, one record a line.
func (d *Daemon) copyLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		level := slog.LevelInfo
		switch {
		case strings.Contains(line, "level=error"), strings.Contains(line, "level=fatal"):
			level = slog.LevelError
		case strings.Contains(line, "level=warn"):
			level = slog.LevelWarn
		case strings.Contains(line, "level=debug"):
			level = slog.LevelDebug
		}
		if d.stopping.Load() && level < slog.LevelError {
			level = slog.LevelDebug
		}
		d.cfg.Log.Log(context.Background(), level, logfmtMessage(line))
	}
}

// Stop ends the child (SIGTERM, then SIGKILL after 10 s) and the supervision.
func (d *Daemon) Stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.cancel()
	<-d.done
	d.teardown.Do(func() {
		if d.net == nil {
			return
		}
		d.net.uninstall()
		if err := d.net.removeBridge(); err != nil {
			d.cfg.Log.Warn("remove the build network's bridge", "err", err)
		} else {
			d.net.release()
		}
	})
}

// logfmtMessage pulls msg="…" out of a logrus logfmt line; other lines pass unchanged.
func logfmtMessage(line string) string {
	i := strings.Index(line, ` msg="`)
	if i < 0 {
		return line
	}
	rest := line[i+len(` msg=`):]
	// Find the closing quote, honouring backslash escapes.
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			if msg, err := strconv.Unquote(rest[:j+1]); err == nil {
				return msg
			}
			return line
		}
	}
	return line
}
