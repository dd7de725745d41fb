package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"manifold/builds/buildkittest"
)

// main2 runs `manifold` with the JSON-encoded arguments, as main does, in a
// child process of the test binary.
func main2(args string) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		fmt.Fprintln(os.Stderr, "MANIFOLD_TEST_PROCESS:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, argv, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "manifold:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// process is `manifold serve` running as a process of its own.
type process struct {
	app
	cmd  *exec.Cmd
	kill func() // SIGKILL, and wait for it to be gone
}

// startProcess starts `manifold serve --data data flags…` as a child
// process on a free port and waits until it answers.
func startProcess(t *testing.T, data string, flags ...string) *process {
	t.Helper()
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	argv, _ := json.Marshal(append([]string{"serve", "--data", data, "--addr", addr}, flags...))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MANIFOLD_TEST_PROCESS="+string(argv))
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{app: app{Data: data, URL: "http://" + addr, logs: logs}, cmd: cmd}
	// exited is closed once the process is gone; waitErr says how it ended.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	p.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if resp, err := http.Get(p.URL + "/healthz"); err == nil {
				resp.Body.Close()
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("manifold exited before listening: %v\n%s", waitErr, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("manifold did not start listening on %s\n%s", addr, logs)
		}
	}
	p.kill = func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("manifold process log:\n%s", logs)
		}
	})
	return p
}

// verifyStore re-hashes every blob in a data folder's content store: a
// killed write must never leave a blob whose bytes are not its name.
func verifyStore(t *testing.T, data string) int {
	t.Helper()
	dir := filepath.Join(data, "content", "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got := sumFile(t, filepath.Join(dir, e.Name()))
		if got != e.Name() {
			t.Fatalf("blob %s holds bytes hashing to %s", e.Name(), got)
		}
	}
	return len(entries)
}
