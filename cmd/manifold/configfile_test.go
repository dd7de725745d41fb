package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", `# manifold serve's settings
addr = "127.0.0.1:9090"
concurrency = 5
gc-interval = "10m"
anonymous-pull = true
allow-hosts = ["registry.internal:5000", "git.internal"]
`)
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		err   string
		check func(config) bool
	}{
		{name: "the file gives values", args: []string{"--config", good}, check: func(c config) bool {
			return c.Addr == "127.0.0.1:9090" && c.Concurrency == 5 && c.GCInterval == 10*time.Minute && c.AnonPull &&
				c.AllowHosts == "registry.internal:5000,git.internal" && c.MaxQueued == 10
		}},
		{name: "MANIFOLD_CONFIG names the file", env: map[string]string{"MANIFOLD_CONFIG": good}, check: func(c config) bool { return c.Concurrency == 5 }},
		{name: "--config= form", args: []string{"--config=" + good}, check: func(c config) bool { return c.Concurrency == 5 }},
		{name: "the environment beats the file", args: []string{"--config", good}, env: map[string]string{"MANIFOLD_CONCURRENCY": "3"},
			check: func(c config) bool { return c.Concurrency == 3 && c.Addr == "127.0.0.1:9090" }},
		{name: "a flag beats the environment and the file", args: []string{"--config", good, "--concurrency", "7"}, env: map[string]string{"MANIFOLD_CONCURRENCY": "3"},
			check: func(c config) bool { return c.Concurrency == 7 }},
		{name: "a flag before --config still wins", args: []string{"--concurrency", "8", "--config", good},
			check: func(c config) bool { return c.Concurrency == 8 }},
		{name: "an unknown key stops start-up naming it", args: []string{"--config", write("typo.toml", "concurency = 4\n")}, err: `unknown key "concurency"`},
		{name: "a table is not a key", args: []string{"--config", write("table.toml", "[buildkit]\naddr = \"x\"\n")}, err: `key "buildkit" is a table`},
		{name: "a wrong type", args: []string{"--config", write("type.toml", "concurrency = \"many\"\n")}, err: `concurrency="many" is not a number`},
		{name: "a float", args: []string{"--config", write("float.toml", "concurrency = 1.5\n")}, err: `key "concurrency" is a float64`},
		{name: "a bad boolean", args: []string{"--config", write("bool.toml", "anonymous-pull = \"yes\"\n")}, err: `anonymous-pull="yes" is not true or false`},
		{name: "not TOML", args: []string{"--config", write("broken.toml", "concurrency = \n")}, err: "config file " + filepath.Join(dir, "broken.toml")},
		{name: "a missing file", args: []string{"--config", filepath.Join(dir, "none.toml")}, err: "no such file"},
		{name: "checked like flags", args: []string{"--config", write("range.toml", "concurrency = 0\n")}, err: "--concurrency 0 must be from 1 to 64"},
		{name: "config is not a key of itself", args: []string{"--config", write("self.toml", "config = \"other.toml\"\n")}, err: `unknown key "config"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, new(strings.Builder))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || !tt.check(cfg) {
				t.Fatalf("config %+v, error %v", cfg, err)
			}
		})
	}
}
