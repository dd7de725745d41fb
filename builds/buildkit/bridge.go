package buildkit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// bridgeBlock holds every daemon's /24: uncommon enough to miss the ranges
// Docker, Kubernetes, podman, BuildKit's own default and home routers use.
var bridgeBlock = netip.MustParsePrefix("10.199.0.0/16")

// BridgeName is the name of the bridge an embedded buildkitd with this root
// folder puts its RUN steps on: "mfbk" and a hash of the absolute root.
func BridgeName(root string) string {
	h := rootHash(root)
	return "mfbk" + hex.EncodeToString(h[:4])
}

func rootHash(root string) [32]byte {
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return sha256.Sum256([]byte(root))
}

// bridgeSubnet picks the daemon's /24 inside bridgeBlock: the one its root's
// hash names, or the next that no other interface of this machine uses.
// taken lists the prefixes of other interfaces' addresses.
func bridgeSubnet(root string, taken []netip.Prefix) (netip.Prefix, error) {
	h := rootHash(root)
	base := bridgeBlock.Addr().As4()
	for i := range 256 {
		third := byte((int(h[4]) + i) % 256)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], third, 0}), 24)
		free := true
		for _, t := range taken {
			if t.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("every /24 of %s is already used by an address or route of this machine, so the build network has no subnet left; free one, or start with --build-network none", bridgeBlock)
}

// routePrefixes lists the IPv4 routes of /proc/net/route (Destination
// and Mask are little-endian hex) through any interface but skip, default
// routes left out: a VPN's route to 10.0.0.0/8 also makes a subnet taken.
func routePrefixes(table, skip string) []netip.Prefix {
	var out []netip.Prefix
	for i, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 8 || f[0] == skip {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		a := [4]byte{byte(dst), byte(dst >> 8), byte(dst >> 16), byte(dst >> 24)}
		bits := bitsOnes(uint32(mask))
		if p, err := netip.AddrFrom4(a).Prefix(bits); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func bitsOnes(m uint32) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

// interfacePrefixes lists the address prefixes of every interface but skip,
// and the routes through them.
func interfacePrefixes(skip string) []netip.Prefix {
	var out []netip.Prefix
	if b, err := os.ReadFile("/proc/net/route"); err == nil {
		out = routePrefixes(string(b), skip)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return out
	}
	for _, i := range ifs {
		if i.Name == skip {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil {
					out = append(out, p.Masked())
				}
			}
		}
	}
	return out
}

// bridgeNet is one embedded daemon's CNI bridge network.
type bridgeNet struct {
	Name     string       // bridge interface, also the CNI network's name
	Subnet   netip.Prefix // the steps' /24; .1 is the bridge's own address
	Conflist string       // the CNI configuration file buildkitd reads
	IPAMDir  string       // host-local's state, under the daemon's root
	BinDir   string       // the CNI plugins
}

// cniPlugins are the CNI plugins the bridge network runs.
var cniPlugins = []string{"bridge", "host-local", "loopback", "firewall"}

// cniBinDirs are where distributions put the CNI plugins: Debian's
// containernetworking-plugins, then the upstream default.
var cniBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// findCNIBinDir returns the first folder holding every CNI plugin needed.
func findCNIBinDir(dirs []string) (string, error) {
	for _, d := range dirs {
		ok := true
		for _, p := range cniPlugins {
			if fi, err := os.Stat(filepath.Join(d, p)); err != nil || fi.IsDir() {
				ok = false
				break
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("the CNI plugins (%s) are not in %s; install them (Debian: apt-get install containernetworking-plugins)", strings.Join(cniPlugins, ", "), strings.Join(dirs, " or "))
}

// newBridgeNet derives the daemon's bridge from its (absolute) root folder.
func newBridgeNet(root, binDir string) (*bridgeNet, error) {
	name := BridgeName(root)
	subnet, err := bridgeSubnet(root, interfacePrefixes(name))
	if err != nil {
		return nil, err
	}
	return &bridgeNet{
		Name:     name,
		Subnet:   subnet,
		Conflist: filepath.Join(root, "cni", "manifold.conflist"),
		IPAMDir:  filepath.Join(root, "cni", "ipam"),
		BinDir:   binDir,
	}, nil
}

// conflist is the CNI network BuildKit's "cni" mode reads (it adds the
// loopback network itself): a bridge with NAT to the outside, addresses
// from host-local with its state under the daemon's root, and the firewall
// plugin, which accepts the steps' forwarded traffic on hosts whose FORWARD
// policy is DROP and keeps other bridges out.
func (n *bridgeNet) conflist() string {
	type obj = map[string]any
	v := obj{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins": []obj{
			{
				"type": "bridge", "bridge": n.Name, "isDefaultGateway": true, "ipMasq": true,
				"ipam": obj{
					"type":    "host-local",
					"ranges":  [][]obj{{{"subnet": n.Subnet.String()}}},
					"dataDir": n.IPAMDir,
				},
			},
			{"type": "firewall", "backend": "iptables", "ingressPolicy": "same-bridge"},
		},
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b) + "\n"
}

// chain is the iptables chain, in the raw table of both families, holding
// Manifold's rules for this bridge.
func (n *bridgeNet) chain() string { return "MANIFOLD-" + n.Name }

// iptablesRules is every command that installs the rules, in order. They
// sit in the raw table's PREROUTING, which runs before any rule CNI, Docker
// or a host firewall puts in the filter table:
//   - IPv4 from the bridge to an address that is not a plain remote unicast
//     one (this machine's own addresses on every interface, the bridge's
//     gateway, broadcast, multicast) is dropped, and so is link-local
//     169.254.0.0/16 (cloud metadata);
//   - IPv6 from the bridge is dropped whole: the steps get no IPv6 address.
func (n *bridgeNet) iptablesRules() [][]string {
	c := n.chain()
	return [][]string{
		{"iptables", "-t", "raw", "-N", c},
		{"iptables", "-t", "raw", "-A", c, "-m", "addrtype", "!", "--dst-type", "UNICAST", "-j", "DROP"},
		{"iptables", "-t", "raw", "-A", c, "-d", "169.254.0.0/16", "-j", "DROP"},
		{"iptables", "-t", "raw", "-I", "PREROUTING", "-i", n.Name, "-j", c},
		{"ip6tables", "-t", "raw", "-N", c},
		{"ip6tables", "-t", "raw", "-A", c, "-j", "DROP"},
		{"ip6tables", "-t", "raw", "-I", "PREROUTING", "-i", n.Name, "-j", c},
	}
}

// firewallComment is what the CNI firewall plugin puts on its per-bridge
// isolation rules; it never removes them, so Manifold does when it stops.
const firewallComment = "CNI firewall plugin rules (ingressPolicy: same-bridge)"

// cleanupCommands undo iptablesRules and the firewall plugin's isolation
// rules for this bridge. Each may fail (nothing to remove): that is fine.
func (n *bridgeNet) cleanupCommands() [][]string {
	c := n.chain()
	var cmds [][]string
	for _, bin := range []string{"iptables", "ip6tables"} {
		cmds = append(cmds,
			[]string{bin, "-t", "raw", "-D", "PREROUTING", "-i", n.Name, "-j", c},
			[]string{bin, "-t", "raw", "-F", c},
			[]string{bin, "-t", "raw", "-X", c},
		)
	}
	cmds = append(cmds,
		[]string{"iptables", "-D", "CNI-ISOLATION-STAGE-1", "-i", n.Name, "!", "-o", n.Name, "-m", "comment", "--comment", firewallComment, "-j", "CNI-ISOLATION-STAGE-2"},
		[]string{"iptables", "-D", "CNI-ISOLATION-STAGE-2", "-o", n.Name, "-m", "comment", "--comment", firewallComment, "-j", "DROP"},
	)
	return cmds
}

// runIPTables runs one iptables command, waiting for the xtables lock
// other daemons and the CNI plugins take too.
func runIPTables(args []string) error {
	full := append([]string{args[0], "-w"}, args[1:]...)
	out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hasIPv6 tells whether the kernel has IPv6 at all; without it there is
// nothing for ip6tables to guard.
func hasIPv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// checkBridgeNeeds says, in one sentence, what this machine lacks for the
// bridge network, or returns nil.
func checkBridgeNeeds(cniDirs []string) (string, error) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "Manifold runs as user "+fmt.Sprint(os.Geteuid())+", not root (buildkitd needs root to make network namespaces and firewall rules)")
	}
	bins := []string{"iptables"}
	if hasIPv6() {
		bins = append(bins, "ip6tables")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" is not installed (Debian: apt-get install iptables)")
		} else if os.Geteuid() == 0 {
			if err := runIPTables([]string{b, "-t", "raw", "-S", "PREROUTING"}); err != nil {
				missing = append(missing, b+" does not work here ("+err.Error()+")")
			}
		}
	}
	dir, err := findCNIBinDir(cniDirs)
	if err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return "", errors.New("the build network \"bridge\" keeps RUN steps away from this machine's network, but it cannot be set up: " +
			strings.Join(missing, "; ") +
			". Fix that, or start with --build-network none (steps get no network) or --build-network host (steps share this machine's network: unsafe)")
	}
	return dir, nil
}

// install puts the rules in place, replacing any a crashed run left.
func (n *bridgeNet) install() error {
	n.uninstall()
	for _, cmd := range n.iptablesRules() {
		if cmd[0] == "ip6tables" && !hasIPv6() {
			continue
		}
		if err := runIPTables(cmd); err != nil {
			n.uninstall()
			return fmt.Errorf("install the build network's firewall rules: %w", err)
		}
	}
	return nil
}

// uninstall removes the rules and the bridge; what is already gone is skipped.
func (n *bridgeNet) uninstall() {
	for _, cmd := range n.cleanupCommands() {
		if cmd[0] == "ip6tables" && !hasIPv6() {
			continue
		}
		// A rule inserted twice (two starts racing) needs two deletions.
		for range 10 {
			if runIPTables(cmd) != nil || !slices.Contains(cmd, "-D") {
				break
			}
		}
	}
}

// removeBridge deletes the bridge the CNI bridge plugin made, once the
// daemon has released every namespace on it.
func (n *bridgeNet) removeBridge() error {
	if _, err := net.InterfaceByName(n.Name); err != nil {
		return nil
	}
	out, err := exec.Command("ip", "link", "delete", n.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip link delete %s: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ownersDir holds, per bridge, the process that owns it: a Manifold killed
// with SIGKILL cannot remove its bridge and rules, so the next one that
// starts a bridge network removes those whose owner is gone.
var ownersDir = "/run/manifold/bridges"

// claim records this process as the owner of the bridge.
func (n *bridgeNet) claim() error {
	if err := os.MkdirAll(ownersDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(ownersDir, n.Name), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

// release forgets the bridge's owner, once it is removed.
func (n *bridgeNet) release() { _ = os.Remove(filepath.Join(ownersDir, n.Name)) }

// sweepStaleBridges removes the bridges, firewall chains and NAT rules of
// build networks whose owning process is gone, and says which it removed.
func sweepStaleBridges() []string {
	entries, err := os.ReadDir(ownersDir)
	if err != nil {
		return nil
	}
	var swept []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "mfbk") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(ownersDir, name))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err == nil && pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its owner still runs
		}
		n := &bridgeNet{Name: name}
		n.uninstall()
		removeNATRules(name)
		if err := n.removeBridge(); err != nil {
			continue
		}
		n.release()
		swept = append(swept, name)
	}
	return swept
}

// removeNATRules deletes the masquerading rules and chains the CNI bridge
// plugin made for the network's containers (their comment names it), which
// a killed buildkitd never removed.
func removeNATRules(network string) {
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return
	}
	marker := `name: \"` + network + `\"`
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A POSTROUTING ") || !strings.Contains(line, marker) {
			continue
		}
		f := strings.Fields(line)
		chain := ""
		for i := range f {
			if f[i] == "-j" && i+1 < len(f) {
				chain = f[i+1]
			}
		}
		rule := splitRule(strings.TrimPrefix(line, "-A POSTROUTING "))
		_ = runIPTables(append([]string{"iptables", "-t", "nat", "-D", "POSTROUTING"}, rule...))
		if strings.HasPrefix(chain, "CNI-") {
			_ = runIPTables([]string{"iptables", "-t", "nat", "-F", chain})
			_ = runIPTables([]string{"iptables", "-t", "nat", "-X", chain})
		}
	}
}

// splitRule splits an iptables -S rule into arguments, keeping quoted
// comments (with their escaped quotes) as one argument.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case r == ' ' && !inQuote:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
