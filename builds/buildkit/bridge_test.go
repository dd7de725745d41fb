package buildkit

import (
	"context"
	"encoding/json"
	"manifold/builds"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestBridgeNameAndSubnet(t *testing.T) {
	roots := []string{"/var/lib/manifold/buildkit", "/tmp/mf-test-1/bk", "/tmp/mf-test-2/bk", "/tmp/TestNetwork123/001/buildkit"}
	names := map[string]string{}
	subnets := map[netip.Prefix]string{}
	valid := regexp.MustCompile(`^mfbk[0-9a-f]{8}$`)
	for _, r := range roots {
		name := BridgeName(r)
		if !valid.MatchString(name) || len(name) > 15 {
			t.Errorf("BridgeName(%q) = %q: want mfbk and 8 hex digits, at most 15 characters (IFNAMSIZ)", r, name)
		}
		if BridgeName(r) != name || BridgeName(r+"/") != name {
			t.Errorf("BridgeName(%q) is not stable", r)
		}
		if other, ok := names[name]; ok {
			t.Errorf("roots %q and %q share bridge %s", r, other, name)
		}
		names[name] = r
		p, err := bridgeSubnet(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Bits() != 24 || !bridgeBlock.Contains(p.Addr()) || p != p.Masked() {
			t.Errorf("subnet of %q = %s: want a /24 inside %s", r, p, bridgeBlock)
		}
		if again, _ := bridgeSubnet(r, nil); again != p {
			t.Errorf("subnet of %q changed: %s then %s", r, p, again)
		}
		subnets[p] = r
	}
	if len(subnets) < 3 {
		t.Errorf("four roots got only %d different subnets: %v", len(subnets), subnets)
	}

	// A subnet some interface already uses is skipped, deterministically.
	r := roots[0]
	first, _ := bridgeSubnet(r, nil)
	next, err := bridgeSubnet(r, []netip.Prefix{first, netip.MustParsePrefix("192.0.2.0/24")})
	if err != nil || next == first || !bridgeBlock.Contains(next.Addr()) {
		t.Fatalf("with %s taken: %s, %v", first, next, err)
	}
	// A wider route covering the whole block leaves nothing.
	if p, err := bridgeSubnet(r, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); err == nil {
		t.Fatalf("with 10.0.0.0/8 taken got %s, want an error", p)
	}
}

func TestBridgeConflist(t *testing.T) {
	n := &bridgeNet{Name: "mfbk01234567", Subnet: netip.MustParsePrefix("10.199.7.0/24"),
		Conflist: "/data/buildkit/cni/manifold.conflist", IPAMDir: "/data/buildkit/cni/ipam", BinDir: "/usr/lib/cni"}
	var v struct {
		CNIVersion string `json:"cniVersion"`
		Name       string
		Plugins    []struct {
			Type, Bridge  string
			IPMasq        bool `json:"ipMasq"`
			IngressPolicy string
			IPAM          struct {
				Type    string
				DataDir string `json:"dataDir"`
				Ranges  [][]struct{ Subnet string }
			}
		}
	}
	if err := json.Unmarshal([]byte(n.conflist()), &v); err != nil {
		t.Fatalf("conflist is not JSON: %v\n%s", err, n.conflist())
	}
	if v.Name != n.Name || len(v.Plugins) != 2 {
		t.Fatalf("conflist: %+v", v)
	}
	br, fw := v.Plugins[0], v.Plugins[1]
	if br.Type != "bridge" || br.Bridge != n.Name || !br.IPMasq || br.IPAM.Type != "host-local" ||
		br.IPAM.DataDir != n.IPAMDir || br.IPAM.Ranges[0][0].Subnet != "10.199.7.0/24" {
		t.Errorf("bridge plugin: %+v", br)
	}
	if fw.Type != "firewall" || fw.IngressPolicy != "same-bridge" {
		t.Errorf("firewall plugin: %+v", fw)
	}

	// Every rule is in Manifold's own chain, reached from raw PREROUTING for this bridge only.
	chain := "MANIFOLD-mfbk01234567"
	if len(chain) > 28 {
		t.Fatalf("chain name %s is longer than iptables allows", chain)
	}
	var all []string
	for _, r := range n.iptablesRules() {
		all = append(all, strings.Join(r, " "))
	}
	for _, want := range []string{
		"iptables -t raw -N " + chain,
		"iptables -t raw -A " + chain + " -m addrtype ! --dst-type UNICAST -j DROP",
		"iptables -t raw -A " + chain + " -d 169.254.0.0/16 -j DROP",
		"iptables -t raw -I PREROUTING -i mfbk01234567 -j " + chain,
		"ip6tables -t raw -A " + chain + " -j DROP",
		"ip6tables -t raw -I PREROUTING -i mfbk01234567 -j " + chain,
	} {
		found := false
		for _, a := range all {
			found = found || a == want
		}
		if !found {
			t.Errorf("rules lack %q:\n%s", want, strings.Join(all, "\n"))
		}
	}
	// Cleanup deletes the jump before the chain it jumps to.
	var clean []string
	for _, c := range n.cleanupCommands() {
		clean = append(clean, strings.Join(c, " "))
	}
	if !strings.Contains(strings.Join(clean, "\n"), "iptables -t raw -D PREROUTING -i mfbk01234567 -j "+chain+"\niptables -t raw -F "+chain+"\niptables -t raw -X "+chain) {
		t.Errorf("cleanup order:\n%s", strings.Join(clean, "\n"))
	}
}

func TestDaemonConfigTOML(t *testing.T) {
	allow, err := builds.ParseFrontendAllowList("docker/dockerfile:1.7, registry.example.com/fe/df@sha256:" + strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	n := &bridgeNet{Name: "mfbk01234567", Subnet: netip.MustParsePrefix("10.199.7.0/24"),
		Conflist: "/data/buildkit/cni/manifold.conflist", IPAMDir: "/data/buildkit/cni/ipam", BinDir: "/usr/lib/cni"}
	cases := []struct {
		name      string
		cfg       DaemonConfig
		bn        *bridgeNet
		want, not []string
	}{
		{"bridge", DaemonConfig{Root: "/data/buildkit", Mirror: "127.0.0.1:5000"}, n,
			[]string{`root = "/data/buildkit"`, `address = ["unix:///data/buildkit/buildkitd.sock"]`,
				`networkMode = "cni"`, `cniConfigPath = "/data/buildkit/cni/manifold.conflist"`, `cniBinaryPath = "/usr/lib/cni"`,
				"[frontend.\"gateway.v0\"]\n  enabled = false\n", `mirrors = ["127.0.0.1:5000"]`},
			[]string{`networkMode = "host"`, "allowedRepositories"}},
		{"host with frontends", DaemonConfig{Root: "/data/buildkit", Frontends: allow}, nil,
			[]string{`networkMode = "host"`, "enabled = true\n  allowedRepositories = [\"docker.io/docker/dockerfile\", \"registry.example.com/fe/df\"]"},
			[]string{"cni", "enabled = false\n  allowed", "mirrors"}},
	}
	for _, c := range cases {
		got := daemonConfigTOML(c.cfg, "/data/buildkit/buildkitd.sock", c.bn)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: TOML lacks %q:\n%s", c.name, w, got)
			}
		}
		for _, w := range c.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: TOML has %q:\n%s", c.name, w, got)
			}
		}
		// The network settings are under [worker.oci], before the next table.
		oci := got[strings.Index(got, "[worker.oci]"):]
		oci = oci[:strings.Index(oci, "[worker.containerd]")]
		if !strings.Contains(oci, "networkMode") {
			t.Errorf("%s: networkMode is not in [worker.oci]:\n%s", c.name, got)
		}
	}
}

func TestBridgeNeedsSaySo(t *testing.T) {
	empty := t.TempDir()
	_, err := checkBridgeNeeds([]string{empty})
	if err == nil || !strings.Contains(err.Error(), "containernetworking-plugins") ||
		!strings.Contains(err.Error(), "--build-network none") || !strings.Contains(err.Error(), "--build-network host") {
		t.Fatalf("without CNI plugins: %v", err)
	}
	// StartDaemon stops there, before writing rules or starting anything.
	root := t.TempDir()
	_, err = StartDaemon(context.Background(), DaemonConfig{Binary: "/bin/false", Root: root, CNIBinDir: empty}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "cannot be set up") {
		t.Fatalf("StartDaemon without CNI plugins: %v", err)
	}
	if out, _ := exec.Command("iptables", "-t", "raw", "-S").CombinedOutput(); strings.Contains(string(out), BridgeName(root)) {
		t.Fatalf("rules installed although start-up failed:\n%s", out)
	}
}

func TestRoutePrefixes(t *testing.T) {
	table := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"mfbk700595aa\t008FC70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"tun0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"
	got := routePrefixes(table, "mfbk700595aa")
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.0.0.0/8")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("routes %v, want %v (default route and the bridge's own left out)", got, want)
	}
}

func TestLogfmtMessage(t *testing.T) {
	tests := map[string]string{
		`time="2026-11-27T15:59:30Z" level=info msg="running server on /x/buildkitd.sock"`: "running server on /x/buildkitd.sock",
		`time="t" level=warning msg="say \"hi\" there" spanID=1`:                           `say "hi" there`,
		`plain line`: "plain line",
	}
	for in, want := range tests {
		if got := logfmtMessage(in); got != want {
			t.Errorf("logfmtMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
