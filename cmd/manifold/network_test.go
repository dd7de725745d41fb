package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"manifold/builds"
	"manifold/builds/buildkit"
	"manifold/builds/buildkittest"
)

// hostAddress is this machine's first non-loopback IPv4 address that is not
// on a build bridge (eth0's here).
func hostAddress(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 || strings.HasPrefix(i.Name, "mfbk") {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String()
			}
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to aim at")
	return ""
}

// countingListener accepts on 127.0.0.1 and answers HTTP, counting connections.
func countingListener(t *testing.T) (port string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = &atomic.Int64{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_, _ = c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port, accepted
}

// probeDockerfile is a build whose RUN step tries each target with busybox
// nc (its wget crashes on Debian's static build) and prints one
// "<name> REACHED|BLOCKED" line per target, its default gateway and its
// network interfaces; the image itself builds either way.
func probeDockerfile(targets [][3]string) string {
	var b strings.Builder
	b.WriteString("FROM busybox:1\n")
	b.WriteString(`RUN try() { if printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc -w 3 "$2" "$3" 2>/dev/null | grep -q HTTP; then echo "$1 REACHED" >> /tmp/net.txt; else echo "$1 BLOCKED" >> /tmp/net.txt; fi; }; \` + "\n")
	b.WriteString(`    gw=$(ip route | awk '/^default/ {print $3}'); echo "probe-gateway ${gw:-none}" >> /tmp/net.txt; \` + "\n")
	b.WriteString(`    echo "probe-links $(ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | tr '\n' ' ')" >> /tmp/net.txt; \` + "\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "    try %s %s %s; \\\n", tg[0], tg[1], tg[2])
	}
	b.WriteString("    cat /tmp/net.txt\n")
	return b.String()
}

var probeLine = regexp.MustCompile(`(?m)\b(probe-[a-z0-9-]+) (REACHED|BLOCKED|[^\n]*?)\s*$`)

// probeResults reads the markers from the build's log.
func probeResults(t *testing.T, a *app, id string) (map[string]string, string) {
	t.Helper()
	code, log := a.do(t, "GET", "/api/v1/builds/"+id+"/log", "")
	if code != 200 {
		t.Fatalf("GET log = %d %s", code, log)
	}
	got := map[string]string{}
	for _, m := range probeLine.FindAllStringSubmatch(string(log), -1) {
		if strings.Contains(m[0], `"$1`) || strings.Contains(m[0], "echo ") {
			continue // the command line itself
		}
		got[m[1]] = strings.TrimSpace(m[2])
	}
	return got, string(log)
}

// rulesMention lists the iptables rules (filter, nat and raw, both families)
// that mention name.
func rulesMention(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, c := range [][]string{
		{"iptables", "-S"}, {"iptables", "-t", "nat", "-S"}, {"iptables", "-t", "raw", "-S"},
		{"ip6tables", "-S"}, {"ip6tables", "-t", "raw", "-S"},
	} {
		b, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", c, err, b)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, name) {
				out = append(out, strings.Join(c, " ")+": "+l)
			}
		}
	}
	return out
}

func appPort(t *testing.T, a *app) string {
	t.Helper()
	u, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestBuildNetworkModes builds with an embedded buildkitd in each mode. The
// step aims at a listener on the host's 127.0.0.1, at Manifold's own port on
// the host's non-loopback address and on the step's default gateway (the
// bridge's address on the host). In bridge and none modes all of them are
// blocked, the build succeeds and the listener sees nothing; host mode is the
// control that shows the probe can see them.
func TestBuildNetworkModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the bridge network needs root")
	}
	hostIP := hostAddress(t)
	cases := []struct {
		mode    string
		reached []string // probes that must reach; every other is BLOCKED
	}{
		{builds.NetworkBridge, nil},
		{builds.NetworkNone, nil},
		{builds.NetworkHost, []string{"probe-listener", "probe-manifold-host"}},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			lport, accepted := countingListener(t)
			data := t.TempDir()
			a := startApp(t, data, "--addr", "0.0.0.0:0", "--buildkitd-bin", filepath.Join(env.Bin, "buildkitd"),
				"--mirror", env.Registry, "--build-network", c.mode)
			port := appPort(t, a)
			bridge := buildkit.BridgeName(filepath.Join(data, "buildkit"))
			df := probeDockerfile([][3]string{
				{"probe-listener", "127.0.0.1", lport},
				{"probe-manifold-host", hostIP, port},
				{"probe-manifold-gateway", `"${gw:-192.0.2.255}"`, port},
			})
			id := a.startBuild(t, map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}, "no_cache": true})
			b := a.wait(t, id)
			got, log := probeResults(t, a, id)
			t.Logf("%s: %v", c.mode, got)
			if b.Status != builds.StatusSucceeded {
				t.Fatalf("build %s: %s\n%s", b.Status, b.Error, log)
			}
			for _, p := range []string{"probe-listener", "probe-manifold-host", "probe-manifold-gateway"} {
				want := "BLOCKED"
				for _, r := range c.reached {
					if r == p {
						want = "REACHED"
					}
				}
				if c.mode == builds.NetworkHost && p == "probe-manifold-gateway" {
					continue // the host's own gateway is another machine
				}
				if got[p] != want {
					t.Errorf("%s: %s = %q, want %s\n%s", c.mode, p, got[p], want, log)
				}
			}
			switch c.mode {
			case builds.NetworkBridge:
				// The step had its own namespace on this daemon's bridge.
				if !strings.HasPrefix(got["probe-gateway"], "10.199.") {
					t.Errorf("bridge: the step's gateway is %q, want the bridge's 10.199.x.1\n%s", got["probe-gateway"], log)
				}
				if _, err := net.InterfaceByName(bridge); err != nil {
					t.Errorf("bridge %s: %v", bridge, err)
				}
				if rules := rulesMention(t, "MANIFOLD-"+bridge); len(rules) < 3 {
					t.Errorf("Manifold's rules for %s while it runs:\n%s", bridge, strings.Join(rules, "\n"))
				}
				if accepted.Load() != 0 {
					t.Errorf("the host's listener accepted %d connections from the build", accepted.Load())
				}
				// Control: without Manifold's jump the same step reaches Manifold
				// through the gateway and eth0, so the rule is what blocks it.
				jump := []string{"-t", "raw", "PREROUTING", "-i", bridge, "-j", "MANIFOLD-" + bridge}
				iptables := func(op string) {
					args := append([]string{"-w", jump[0], jump[1], op}, jump[2:]...)
					if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
						t.Fatalf("iptables %v: %v %s", args, err, out)
					}
				}
				iptables("-D")
				id := a.startBuild(t, map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}, "no_cache": true})
				a.wait(t, id)
				iptables("-I")
				open, log := probeResults(t, a, id)
				if open["probe-manifold-host"] != "REACHED" || open["probe-manifold-gateway"] != "REACHED" {
					t.Errorf("without the rule the probe did not reach Manifold (%v), so it proves nothing\n%s", open, log)
				}
			case builds.NetworkNone:
				if got["probe-gateway"] != "none" || strings.TrimSpace(got["probe-links"]) != "lo" {
					t.Errorf("none: gateway %q, links %q: want no route and only lo\n%s", got["probe-gateway"], got["probe-links"], log)
				}
				if accepted.Load() != 0 {
					t.Errorf("the host's listener accepted %d connections from the build", accepted.Load())
				}
			case builds.NetworkHost:
				if accepted.Load() == 0 {
					t.Errorf("host: the listener saw no connection, so the probe proves nothing\n%s", log)
				}
			}

			// Stopping Manifold stops its buildkitd and removes the rules and the bridge.
			a.stop()
			if rules := rulesMention(t, bridge); len(rules) > 0 {
				t.Errorf("rules left after the daemon stopped:\n%s", strings.Join(rules, "\n"))
			}
			if _, err := net.InterfaceByName(bridge); err == nil {
				t.Errorf("bridge %s is still there after the daemon stopped", bridge)
			}
		})
	}
}

// TestBuildNetworkFlag: the mode is checked before anything starts.
func TestBuildNetworkFlag(t *testing.T) {
	for _, args := range [][]string{{"--build-network", "cni"}, {"--allow-frontends", "Not A Ref"}} {
		_, err := parseConfig(args, func(string) string { return "" }, new(strings.Builder))
		if err == nil {
			t.Errorf("%v was accepted", args)
		}
	}
	cfg, err := parseConfig(nil, func(k string) string {
		return map[string]string{"MANIFOLD_BUILD_NETWORK": "none", "MANIFOLD_ALLOW_FRONTENDS": "docker/dockerfile:1.7"}[k]
	}, new(strings.Builder))
	if err != nil || cfg.BuildNetwork != "none" || len(cfg.Frontends.List()) != 1 {
		t.Fatalf("from the environment: %+v %v", cfg.Frontends.List(), err)
	}
	if cfg, _ := parseConfig(nil, func(string) string { return "" }, new(strings.Builder)); cfg.BuildNetwork != "bridge" {
		t.Fatalf("default build network %q", cfg.BuildNetwork)
	}
}

// buildCount is how many builds the API lists.
func buildCount(t *testing.T, a *app) int {
	t.Helper()
	code, body := a.do(t, "GET", "/api/v1/builds?limit=500", "")
	if code != 200 {
		t.Fatalf("GET builds = %d %s", code, body)
	}
	var v struct{ Builds []json.RawMessage }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return len(v.Builds)
}

// syntaxGitServer serves a repository whose Dockerfile starts with a
// `# syntax=` line.
func syntaxGitServer(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "one"}, {"clone", "-q", "--bare", work, filepath.Join(dir, "repo.git")}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	daemon := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--base-path="+dir, "--listen=127.0.0.1", "--port="+port, dir)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	for range 100 {
		if err := exec.Command("git", "ls-remote", "git://"+addr+"/repo.git").Run(); err == nil {
			return "git://" + addr + "/repo.git"
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("git daemon did not answer")
	return ""
}

// TestSyntaxFrontendsRefused: a `# syntax=` line or BUILDKIT_SYNTAX is
// refused with 400 and a sentence, recording nothing, unless the image is on
// --allow-frontends; a Dockerfile read only when the build runs (uploaded
// context, git) cannot switch frontends either.
func TestSyntaxFrontendsRefused(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	before := buildCount(t, a)
	for _, tt := range []struct {
		name string
		req  map[string]any
		want string
	}{
		{"inline", map[string]any{"dockerfile": "# syntax=docker/dockerfile:1.7\nFROM busybox:1\n"},
			"line 1 asks for the Dockerfile frontend docker/dockerfile:1.7, which this server does not run: remove the `# syntax=` line: this server builds with its built-in Dockerfile frontend, or ask an admin to add docker/dockerfile:1.7 to --allow-frontends"},
		{"after escape", map[string]any{"dockerfile": "# escape=`\n#syntax = example.com/evil/frontend\nFROM busybox:1\n"},
			"line 2 asks for the Dockerfile frontend example.com/evil/frontend"},
		{"build arg", map[string]any{"dockerfile": example, "build_args": map[string]string{"BUILDKIT_SYNTAX": "docker/dockerfile:1.7"}},
			"build arg BUILDKIT_SYNTAX asks for the Dockerfile frontend docker/dockerfile:1.7, which this server does not run: remove the BUILDKIT_SYNTAX build arg"},
	} {
		code, body := a.do(t, "POST", "/api/v1/builds", mustJSON(tt.req))
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if code != 400 || e.Code != "frontend_not_allowed" || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: %d %s, want 400 frontend_not_allowed with %q", tt.name, code, body, tt.want)
		}
	}
	// An uploaded context's Dockerfile is read when the build runs: it fails with the same sentence.
	code, body := a.postContext(t, map[string]any{"platforms": []string{"linux/amd64"}},
		makeTar(t, true, tarEntry{name: "Dockerfile", body: "# syntax=docker/dockerfile:1.7\nFROM busybox:1\n"}))
	if code != 201 {
		t.Fatalf("context upload = %d %s", code, body)
	}
	if b := a.wait(t, buildID(t, body)); b.Status != builds.StatusFailed ||
		!strings.Contains(b.Error, "line 1 asks for the Dockerfile frontend docker/dockerfile:1.7") || !strings.Contains(b.Error, "remove the `# syntax=` line") {
		t.Errorf("uploaded context with # syntax=: %s %q", b.Status, b.Error)
	}
	if after := buildCount(t, a); after != before+1 {
		t.Errorf("builds before %d, after %d: the refused requests recorded builds", before, after)
	}
	// A git repository's Dockerfile is read by BuildKit only: the solve is
	// told not to forward, so it builds with the built-in frontend instead
	// of fetching docker/dockerfile:1.7 (which this offline mirror lacks).
	repo := syntaxGitServer(t, "# syntax=docker/dockerfile:1.7\nFROM busybox:1\nRUN echo built-in > /which\n")
	ru, _ := url.Parse(repo)
	withGit := startApp(t, "", "--buildkit", env.Addr(), "--allow-hosts", ru.Host)
	id := withGit.startBuild(t, map[string]any{"git": map[string]string{"url": repo}, "platforms": []string{"linux/amd64"}})
	if b := withGit.wait(t, id); b.Status != builds.StatusSucceeded {
		t.Errorf("git Dockerfile with # syntax=: %s %q", b.Status, b.Error)
	}

	// With an allow-list, another tag of the same image is still refused.
	allowed := startApp(t, "", "--buildkit", env.Addr(), "--allow-frontends", "docker.io/docker/dockerfile:1.7")
	before = buildCount(t, allowed)
	code, body = allowed.do(t, "POST", "/api/v1/builds", mustJSON(map[string]any{"dockerfile": "# syntax=docker/dockerfile:1.6\nFROM busybox:1\n"}))
	if code != 400 || !strings.Contains(string(body), "add docker/dockerfile:1.6 to --allow-frontends") {
		t.Errorf("another tag of an allowed frontend: %d %s", code, body)
	}
	if after := buildCount(t, allowed); after != before {
		t.Errorf("builds before %d, after %d", before, after)
	}
}

// TestAllowedFrontendRuns: a frontend on --allow-frontends really runs. The
// test makes one (BuildKit's own Dockerfile frontend, built from the module
// cache into an image pushed to the mirror as docker/dockerfile:1.7-test) and
// builds with `# syntax=` naming it, inline and from an uploaded context.
func TestAllowedFrontendRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the embedded daemon's bridge network needs root")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH to build a frontend image")
	}
	root, err := buildkittest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	build := exec.Command(goBin, "build", "-o", filepath.Join(ctxDir, "dockerfile-frontend"), "github.com/moby/buildkit/frontend/dockerfile/cmd/dockerfile-frontend")
	build.Dir = filepath.Join(root, "tools") // builds buildkitd at the client's version too
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the frontend: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY dockerfile-frontend /bin/dockerfile-frontend\n" +
		"LABEL moby.buildkit.frontend.network.none=\"true\"\n" +
		"LABEL moby.buildkit.frontend.caps=\"moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts\"\n" +
		"ENTRYPOINT [\"/bin/dockerfile-frontend\"]\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	const frontend = "docker/dockerfile:1.7-test"
	push := exec.Command(filepath.Join(env.Bin, "buildctl"), "--addr", env.Addr(), "build", "--progress", "plain",
		"--frontend", "dockerfile.v0", "--local", "context="+ctxDir, "--local", "dockerfile="+ctxDir, "--opt", "platform=linux/amd64",
		"--output", "type=image,name="+env.Registry+"/"+frontend+",push=true,registry.insecure=true")
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("push the frontend image: %v\n%s", err, out)
	}

	a := startApp(t, "", "--buildkitd-bin", filepath.Join(env.Bin, "buildkitd"), "--mirror", env.Registry, "--allow-frontends", frontend)
	dockerfile := "# syntax=" + frontend + "\nFROM busybox:1\nRUN echo through-the-allowed-frontend\n"
	id := a.startBuild(t, map[string]any{"dockerfile": dockerfile, "platforms": []string{"linux/amd64"}})
	b := a.wait(t, id)
	_, log := a.do(t, "GET", "/api/v1/builds/"+id+"/log", "")
	if b.Status != builds.StatusSucceeded || !strings.Contains(string(log), "docker.io/"+frontend) {
		t.Fatalf("inline Dockerfile with an allowed frontend: %s %q\n%s", b.Status, b.Error, log)
	}
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, frontend) || strings.Contains(l, "through-the") {
			t.Log(l)
		}
	}
	code, body := a.postContext(t, map[string]any{"platforms": []string{"linux/amd64"}},
		makeTar(t, true, tarEntry{name: "Dockerfile", body: dockerfile}))
	if code != 201 {
		t.Fatalf("context upload = %d %s", code, body)
	}
	id = buildID(t, body)
	b = a.wait(t, id)
	_, log = a.do(t, "GET", "/api/v1/builds/"+id+"/log", "")
	if b.Status != builds.StatusSucceeded || !strings.Contains(string(log), "docker.io/"+frontend) {
		t.Fatalf("uploaded Dockerfile with an allowed frontend: %s %q\n%s", b.Status, b.Error, log)
	}
	// Exact references: the same repository at another tag is refused.
	code, body = a.do(t, "POST", "/api/v1/builds", mustJSON(map[string]any{"dockerfile": "# syntax=docker/dockerfile:1.7\nFROM busybox:1\n"}))
	if code != 400 || !strings.Contains(string(body), "frontend_not_allowed") {
		t.Fatalf("another tag: %d %s", code, body)
	}
}
