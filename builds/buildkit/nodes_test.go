package buildkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"manifold/builds"
)

func TestPlace(t *testing.T) {
	nodes := []*Node{{Name: "amd64-1"}, {Name: "arm64-1"}, {Name: "amd64-2"}}
	up := func(name string, running int, plats, native []string) builds.NodeStatus {
		return builds.NodeStatus{Name: name, OK: true, Running: running, Platforms: plats, Native: native}
	}
	all := []string{"linux/amd64", "linux/arm64"}
	amd := []string{"linux/amd64"}
	arm := []string{"linux/arm64"}
	noWarm := func(string) string { return "" }
	tests := []struct {
		name      string
		statuses  []builds.NodeStatus
		platforms []string
		policy    string
		warm      func(string) string
		want      string // platform→node(how, why) in order, or the error's words
	}{
		{"each to its native node", []builds.NodeStatus{up("amd64-1", 0, all, amd), up("arm64-1", 0, arm, arm), up("amd64-2", 0, all, amd)},
			all, builds.PlacementPreferNative, noWarm,
			"linux/amd64→amd64-1(native, least busy) linux/arm64→arm64-1(native, the only node)"},
		{"least busy native", []builds.NodeStatus{up("amd64-1", 3, all, amd), up("arm64-1", 0, arm, arm), up("amd64-2", 1, all, amd)},
			amd, builds.PlacementPreferNative, noWarm, "linux/amd64→amd64-2(native, least busy)"},
		{"warm cache beats load", []builds.NodeStatus{up("amd64-1", 3, all, amd), up("arm64-1", 0, arm, arm), up("amd64-2", 0, all, amd)},
			amd, builds.PlacementPreferNative, func(string) string { return "amd64-1" }, "linux/amd64→amd64-1(native, warm cache)"},
		{"a warm node that is not native is not chosen", []builds.NodeStatus{up("amd64-1", 0, all, amd), up("arm64-1", 0, arm, arm), up("amd64-2", 0, all, amd)},
			arm, builds.PlacementPreferNative, func(string) string { return "amd64-1" }, "linux/arm64→arm64-1(native, the only node)"},
		{"prefer-native emulates when the native node is down", []builds.NodeStatus{up("amd64-1", 0, all, amd), {Name: "arm64-1", Error: "down"}, up("amd64-2", 2, all, amd)},
			arm, builds.PlacementPreferNative, noWarm, "linux/arm64→amd64-1(emulated, least busy)"},
		{"native-only refuses to emulate", []builds.NodeStatus{up("amd64-1", 0, all, amd), {Name: "arm64-1", Error: "down"}, up("amd64-2", 0, all, amd)},
			all, builds.PlacementNativeOnly, noWarm, "no node that runs linux/arm64 natively is up (placement native-only) (down: arm64-1); start one, or build with placement prefer-native to emulate it"},
		{"any takes the least busy, native or not", []builds.NodeStatus{up("amd64-1", 2, all, amd), up("arm64-1", 1, arm, arm), up("amd64-2", 0, all, amd)},
			arm, builds.PlacementAny, noWarm, "linux/arm64→amd64-2(emulated, least busy)"},
		{"one build's platforms count as load", []builds.NodeStatus{up("amd64-1", 0, all, all), up("arm64-1", 0, nil, nil), up("amd64-2", 0, all, all)},
			all, builds.PlacementAny, noWarm, "linux/amd64→amd64-1(native, least busy) linux/arm64→amd64-2(native, least busy)"},
		{"nobody builds it", []builds.NodeStatus{up("amd64-1", 0, amd, amd), {Name: "arm64-1", Error: "down"}, up("amd64-2", 0, amd, amd)},
			[]string{"linux/s390x"}, builds.PlacementAny, noWarm, "no BuildKit node that is up can build linux/s390x (down: arm64-1)"},
		{"everything down says what the nodes said", []builds.NodeStatus{{Name: "amd64-1", Error: "a refused"}, {Name: "arm64-1", Error: "b refused"}, {Name: "amd64-2", Error: "c refused"}},
			amd, builds.PlacementAny, noWarm, "no BuildKit node is up: a refused; b refused; c refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, err := place(nodes, tt.statuses, tt.platforms, tt.policy, tt.warm)
			var got []string
			if err != nil {
				got = append(got, builds.ErrorMessage(err))
			}
			for _, g := range groups {
				for _, p := range g.Placements {
					if p.Node != g.Node.Name {
						t.Errorf("placement on %s in the group of %s", p.Node, g.Node.Name)
					}
					got = append(got, p.Platform+"→"+p.Node+"("+p.Reason+")")
				}
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("got  %s\nwant %s", s, tt.want)
			}
		})
	}
}

func TestLoadNodes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "nodes.toml")
	body := "[[node]]\nname = \"a\"\naddr = \"unix:///run/a.sock\"\n\n[[node]]\nname = \"b\"\naddr = \"tcp://10.0.0.7:1234\"\nplatforms = [\"linux/arm64\", \"linux/arm/v7\"]\nnative = [\"linux/arm64\"]\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes, err := LoadNodes(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != "a" || nodes[1].Addr != "tcp://10.0.0.7:1234" ||
		strings.Join(nodes[1].platforms, ",") != "linux/arm64,linux/arm/v7" || strings.Join(nodes[1].native, ",") != "linux/arm64" || nodes[0].native != nil {
		t.Fatalf("nodes %+v %+v", nodes[0], nodes[1])
	}
}
