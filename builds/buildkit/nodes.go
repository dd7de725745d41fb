package buildkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"manifold/builds"
)

// NodeSpec is one [[node]] of a nodes file.
type NodeSpec struct {
	Name       string   `toml:"name"`
	Addr       string   `toml:"addr"`
	CA         string   `toml:"ca"`
	Cert       string   `toml:"cert"`
	Key        string   `toml:"key"`
	ServerName string   `toml:"server_name"`
	Platforms  []string `toml:"platforms"`
	Native     []string `toml:"native"`
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// LoadNodes reads a nodes file (TOML, one [[node]] table per BuildKit
// daemon) and makes its nodes. Unknown keys, duplicate names, bad addresses
// or platforms and unreadable certificates stop start-up with a sentence
// that names the node and the key.
func LoadNodes(path string) ([]*Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nodes file: %w", err)
	}
	defer f.Close()
	var file struct {
		Node []NodeSpec `toml:"node"`
	}
	dec := toml.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) && len(strict.Errors) > 0 {
			return nil, fmt.Errorf("nodes file %s: unknown key %q; a node takes name, addr, ca, cert, key, server_name, platforms and native",
				path, strings.Join(strict.Errors[0].Key(), "."))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("nodes file %s, line %d column %d: %s", path, row, col, de.Error())
		}
		return nil, fmt.Errorf("nodes file %s: %w", path, err)
	}
	if len(file.Node) == 0 {
		return nil, fmt.Errorf("nodes file %s names no node; add a [[node]] table with name and addr", path)
	}
	var nodes []*Node
	seen := map[string]bool{}
	for i, spec := range file.Node {
		n, err := spec.node()
		if err != nil {
			return nil, fmt.Errorf("nodes file %s, node %d (%q): %s", path, i+1, spec.Name, builds.ErrorMessage(err))
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("nodes file %s: two nodes are named %q; give each a name of its own", path, n.Name)
		}
		seen[n.Name] = true
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func (spec NodeSpec) node() (*Node, error) {
	if !nodeName.MatchString(spec.Name) {
		return nil, builds.Errorf(builds.EInvalid, "name %q: use letters, digits, '.', '_' and '-', up to 63 characters", spec.Name)
	}
	for _, file := range []string{spec.CA, spec.Cert, spec.Key} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			return nil, builds.Errorf(builds.EInvalid, "certificate file %q cannot be read: %v", file, err)
		}
	}
	n, err := NewNode(spec.Name, spec.Addr, TLSConfig{CACert: spec.CA, Cert: spec.Cert, Key: spec.Key, ServerName: spec.ServerName})
	if err != nil {
		return nil, err
	}
	if len(spec.Platforms) > 0 {
		if n.platforms, err = builds.ParsePlatforms(spec.Platforms); err != nil {
			return nil, err
		}
	}
	if spec.Native != nil {
		if n.native, err = builds.ParsePlatforms(spec.Native); err != nil {
			return nil, err
		}
		for _, p := range n.native {
			if len(n.platforms) > 0 && !slices.Contains(n.platforms, p) {
				return nil, builds.Errorf(builds.EInvalid, "native platform %s is not one of its platforms %s", p, strings.Join(n.platforms, ", "))
			}
		}
	}
	return n, nil
}

// Group is the platforms of a build that one node solves together.
type Group struct {
	Node      *Node
	Platforms []string
	// Placements say, per platform, whether it is emulated there and why this node.
	Placements []builds.Placement
}

// Place routes each platform to a node by the build's placement policy:
// among the nodes that are up and can build it — only native ones for
// native-only, native ones first for prefer-native, any for any — the one
// that last built the same thing (warm returns its name, or ""), else the
// least busy. Platforms on the same node form one group, solved together.
func (p *Pool) Place(ctx context.Context, platforms []string, policy string, warm func(platform string) string) ([]Group, error) {
	return place(p.nodes, p.RecentStatus(ctx), platforms, policy, warm)
}

// place is Place over the nodes' statuses (statuses[i] is nodes[i]'s).
func place(nodes []*Node, statuses []builds.NodeStatus, platforms []string, policy string, warm func(platform string) string) ([]Group, error) {
	load := map[string]int{}
	var downs []string
	for _, st := range statuses {
		load[st.Name] = st.Running
		if !st.OK {
			downs = append(downs, st.Error)
		}
	}
	if len(downs) == len(statuses) && len(platforms) > 0 {
		// Nothing answers: say what the nodes said (one node's own words).
		if len(downs) == 1 {
			return nil, builds.CodeErrorf(builds.EUnavailable, "buildkit_down", "%s", downs[0])
		}
		return nil, builds.CodeErrorf(builds.EUnavailable, "buildkit_down", "no BuildKit node is up: %s", strings.Join(downs, "; "))
	}
	var groups []Group
	for _, plat := range platforms {
		var able, native []int
		var down []string
		for i, st := range statuses {
			if !st.OK {
				down = append(down, st.Name)
				continue
			}
			if !slices.Contains(st.Platforms, plat) {
				continue
			}
			able = append(able, i)
			if slices.Contains(st.Native, plat) {
				native = append(native, i)
			}
		}
		candidates := able
		switch {
		case policy == builds.PlacementNativeOnly:
			if len(native) == 0 {
				return nil, builds.CodeErrorf(builds.EUnavailable, "no_native_node", "no node that runs %s natively is up (placement native-only)%s; start one, or build with placement prefer-native to emulate it", plat, downText(down))
			}
			candidates = native
		case policy != builds.PlacementAny && len(native) > 0:
			candidates = native
		}
		if len(candidates) == 0 {
			return nil, builds.CodeErrorf(builds.EUnavailable, "no_node", "no BuildKit node that is up can build %s%s", plat, downText(down))
		}
		chosen, why := -1, ""
		if w := warm(plat); w != "" {
			for _, i := range candidates {
				if statuses[i].Name == w {
					chosen, why = i, "warm cache"
				}
			}
		}
		if chosen < 0 {
			for _, i := range candidates {
				if chosen < 0 || load[statuses[i].Name] < load[statuses[chosen].Name] {
					chosen = i
				}
			}
			why = "least busy"
			if len(candidates) == 1 {
				why = "the only node"
			}
		}
		name := statuses[chosen].Name
		load[name]++
		emulated := !slices.Contains(statuses[chosen].Native, plat)
		how := "native"
		if emulated {
			how = "emulated"
		}
		pl := builds.Placement{Platform: plat, Node: name, Emulated: emulated, Reason: how + ", " + why, Status: builds.StatusRunning}
		gi := slices.IndexFunc(groups, func(g Group) bool { return g.Node.Name == name })
		if gi < 0 {
			groups = append(groups, Group{Node: nodes[chosen]})
			gi = len(groups) - 1
		}
		groups[gi].Platforms = append(groups[gi].Platforms, plat)
		groups[gi].Placements = append(groups[gi].Placements, pl)
	}
	return groups, nil
}

func downText(down []string) string {
	if len(down) == 0 {
		return ""
	}
	return " (down: " + strings.Join(down, ", ") + ")"
}
