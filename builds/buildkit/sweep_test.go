package buildkit

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSweepStaleBridges leaves what a killed Manifold leaves — a bridge,
// its raw-table chain, a CNI masquerading rule and chain, and an owner
// file naming a dead process — beside a bridge whose owner lives; the
// sweep removes the first and keeps the second.
func TestSweepStaleBridges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make bridges and firewall rules")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables is not installed")
	}
	old := ownersDir
	ownersDir = t.TempDir()
	t.Cleanup(func() { ownersDir = old })
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	stale, live := "mfbkswept1", "mfbkkept01"
	for _, b := range []string{stale, live} {
		_ = exec.Command("ip", "link", "delete", b).Run()
		run("ip", "link", "add", b, "type", "bridge")
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "delete", live).Run()
		_ = exec.Command("ip", "link", "delete", stale).Run()
	})
	n := &bridgeNet{Name: stale}
	run("iptables", "-w", "-t", "raw", "-N", n.chain())
	run("iptables", "-w", "-t", "raw", "-I", "PREROUTING", "-i", stale, "-j", n.chain())
	run("iptables", "-w", "-t", "nat", "-N", "CNI-sweeptest01")
	run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.199.250.2/32", "-m", "comment", "--comment", `name: "`+stale+`" id: "abc"`, "-j", "CNI-sweeptest01")
	os.WriteFile(filepath.Join(ownersDir, stale), []byte(strconv.Itoa(dead.Process.Pid)+"\n"), 0o600)
	os.WriteFile(filepath.Join(ownersDir, live), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)

	swept := sweepStaleBridges()
	if strings.Join(swept, ",") != stale {
		t.Fatalf("swept %v, want only %s", swept, stale)
	}
	if _, err := net.InterfaceByName(stale); err == nil {
		t.Error("the stale bridge is still there")
	}
	if _, err := net.InterfaceByName(live); err != nil {
		t.Error("the live bridge was removed")
	}
	raw, _ := exec.Command("iptables", "-w", "-t", "raw", "-S").Output()
	nat, _ := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	if strings.Contains(string(raw), n.chain()) || strings.Contains(string(nat), "CNI-sweeptest01") || strings.Contains(string(nat), stale) {
		t.Errorf("rules left:\n%s\n%s", raw, nat)
	}
	if _, err := os.Stat(filepath.Join(ownersDir, stale)); err == nil {
		t.Error("the stale owner file is still there")
	}
	if _, err := os.Stat(filepath.Join(ownersDir, live)); err != nil {
		t.Error("the live owner file is gone")
	}
}
