package buildkit_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"manifold/builds/buildkit"
	"manifold/builds/buildkittest"
)

func TestDaemonRestartsAfterCrash(t *testing.T) {
	env, err := buildkittest.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	node, err := buildkit.NewNode("t", env.Addr(), buildkit.TLSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	first := env.Daemon.Pid()
	if first == 0 {
		t.Fatal("no buildkitd pid")
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pid := env.Daemon.Pid()
		if pid != 0 && pid != first {
			if st := node.Status(context.Background(), time.Second); st.OK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("buildkitd was not restarted (pid %d, first %d)", pid, first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Stop ends the child for good.
	pid := env.Daemon.Pid()
	env.Daemon.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("buildkitd %d still runs after Stop", pid)
	}
}
