package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"manifold/builds"
	"manifold/builds/buildkit"
	"manifold/outbound"
)

// envFlags is a flag set whose defaults come from the environment: each
// flag names its variable once, the help text says it, and a variable that
// does not parse is reported (the first one) by Parse.
type envFlags struct {
	*flag.FlagSet
	getenv func(string) string
	err    error
	// file holds the config file's values by flag name; they sit between the
	// environment and the built-in defaults.
	file     map[string]string
	fileName string
}

func newEnvFlags(name string, getenv func(string) string, out io.Writer) *envFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &envFlags{FlagSet: fs, getenv: getenv}
}

// lookup is the variable's value, else the config file's value for the
// flag, or "". from says where the value came from, for error messages.
func (f *envFlags) lookup(name, env string) (v, from string) {
	if v := f.getenv(env); v != "" {
		return v, env
	}
	if v, ok := f.file[name]; ok {
		return v, "config file " + f.fileName + ": " + name
	}
	return "", env
}

func (f *envFlags) bad(from, v, want string) {
	if f.err == nil {
		f.err = fmt.Errorf("%s=%q is not %s", from, v, want)
	}
}

func (f *envFlags) str(p *string, name, env, def, usage string) {
	if v, _ := f.lookup(name, env); v != "" {
		def = v
	}
	f.StringVar(p, name, def, usage+" ("+env+")")
}

func (f *envFlags) integer(p *int64, name, env string, def int64, usage string) {
	if v, from := f.lookup(name, env); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			f.bad(from, v, "a number")
		} else {
			def = n
		}
	}
	f.Int64Var(p, name, def, usage+" ("+env+")")
}

func (f *envFlags) duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, from := f.lookup(name, env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.bad(from, v, "a duration such as 90s or 1h")
		} else {
			def = d
		}
	}
	f.DurationVar(p, name, def, usage+" ("+env+")")
}

func (f *envFlags) boolean(p *bool, name, env, usage string) {
	v, from := f.lookup(name, env)
	if v != "" && v != "true" && v != "false" && from != env {
		f.bad(from, v, "true or false")
	}
	f.BoolVar(p, name, v == "true", usage+" ("+env+"=true)")
}

// Parse reads args after the environment; a bad variable is the first error.
func (f *envFlags) Parse(args []string) error {
	if f.err != nil {
		return f.err
	}
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", f.Args())
	}
	return nil
}

// rawConfig holds what flags give before it is checked and converted.
type rawConfig struct {
	concurrency, maxQueued, files, layerEntries, retainDays, retainPerTag int64
	allowFrontends, builderHosts                                          string
}

// parseConfig reads `manifold serve`'s flags and environment, then checks
// everything before anything listens or starts.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var cfg config
	var raw rawConfig
	fs := newEnvFlags("manifold serve", getenv, out)
	if path := configFilePath(args, getenv); path != "" {
		file, err := readConfigFile(path)
		if err != nil {
			return cfg, err
		}
		fs.file, fs.fileName = file, path
	}
	var configPath string
	fs.StringVar(&configPath, configFileFlag, getenv("MANIFOLD_CONFIG"), "TOML file whose keys are these flags' names; a flag beats the environment, which beats the file (MANIFOLD_CONFIG)")
	registerFlags(fs, &cfg, &raw)
	if err := fs.unknownConfigKey(); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	return checkConfig(cfg, raw)
}

func registerFlags(fs *envFlags, cfg *config, raw *rawConfig) {
	fs.str(&cfg.Addr, "addr", "MANIFOLD_ADDR", ":8080", "listen address")
	fs.str(&cfg.Data, "data", "MANIFOLD_DATA", "data", "data folder: database, content store, embedded buildkitd")
	fs.str(&cfg.BuildKit, "buildkit", "MANIFOLD_BUILDKIT", "", "BuildKit daemon address, unix:// or tcp://; empty starts an embedded buildkitd")
	fs.str(&cfg.BuilderAddr, "builder-addr", "MANIFOLD_BUILDER_ADDR", "", "address (host:port) where docker buildx reaches BuildKit through Manifold, over mutual TLS with certificates from `manifold builder-cert`; empty for none")
	fs.str(&raw.builderHosts, "builder-hosts", "MANIFOLD_BUILDER_HOSTS", "", "comma-separated names and addresses clients reach --builder-addr by, for its certificate (localhost and loopback are always in it)")
	fs.str(&cfg.Nodes, "nodes", "MANIFOLD_NODES", "", "nodes file (TOML, one [[node]] per BuildKit daemon) to route each platform to a node that runs it natively; replaces --buildkit and the embedded daemon")
	fs.str(&cfg.TLS.CACert, "buildkit-tls-ca", "MANIFOLD_BUILDKIT_TLS_CA", "", "CA certificate for a tcp:// BuildKit")
	fs.str(&cfg.TLS.Cert, "buildkit-tls-cert", "MANIFOLD_BUILDKIT_TLS_CERT", "", "client certificate for a tcp:// BuildKit")
	fs.str(&cfg.TLS.Key, "buildkit-tls-key", "MANIFOLD_BUILDKIT_TLS_KEY", "", "client key for a tcp:// BuildKit")
	fs.str(&cfg.TLS.ServerName, "buildkit-tls-servername", "MANIFOLD_BUILDKIT_TLS_SERVERNAME", "", "server name to verify in BuildKit's certificate")
	fs.str(&cfg.Buildkitd, "buildkitd-bin", "MANIFOLD_BUILDKITD", "", "buildkitd binary for the embedded daemon; found next to manifold, in ./bin or on PATH when empty")
	fs.str(&cfg.Mirror, "mirror", "MANIFOLD_MIRROR", "", "registry host:port the embedded buildkitd uses as docker.io mirror, over plain HTTP")
	fs.integer(&raw.concurrency, "concurrency", "MANIFOLD_CONCURRENCY", 2, "builds that run at once; the rest wait in line")
	fs.integer(&raw.maxQueued, "max-queued-per-user", "MANIFOLD_MAX_QUEUED_PER_USER", 10, "builds one user may have waiting in the queue; more are refused with 429")
	fs.integer(&cfg.Context.MaxBytes, "context-max-bytes", "MANIFOLD_CONTEXT_MAX_BYTES", 512<<20, "largest uploaded context, packed and unpacked, in bytes")
	fs.integer(&raw.files, "context-max-files", "MANIFOLD_CONTEXT_MAX_FILES", 100_000, "most entries in an uploaded context")
	fs.str(&cfg.KeyFile, "key-file", "MANIFOLD_KEY_FILE", "", "key that seals registry credentials; created with mode 0600 on first start (default <data>/secret.key)")
	fs.integer(&raw.retainDays, "retain-days", "MANIFOLD_RETAIN_DAYS", 0, "remove unpinned builds older than this many days; 0 keeps them")
	fs.integer(&raw.retainPerTag, "retain-per-tag", "MANIFOLD_RETAIN_PER_TAG", 0, "keep only the newest N succeeded builds of each tag; 0 keeps all")
	fs.duration(&cfg.Retention.MinBlobAge, "gc-min-age", "MANIFOLD_GC_MIN_AGE", 15*time.Minute, "blobs younger than this survive garbage collection (uploads not yet attached, exports in flight)")
	fs.duration(&cfg.GCInterval, "gc-interval", "MANIFOLD_GC_INTERVAL", time.Hour, "how often retention and garbage collection run; 0 turns the timer off")
	fs.str(&cfg.AllowHosts, "allow-hosts", "MANIFOLD_ALLOW_HOSTS", "", "comma-separated host or host:port that registries, git contexts, remote images and build sources may reach although they are loopback, private, link-local or otherwise non-public addresses; empty allows none of those")
	fs.integer(&raw.layerEntries, "layer-max-entries", "MANIFOLD_LAYER_MAX_ENTRIES", 200_000, "most entries a layer listing reads")
	fs.integer(&cfg.Listing.MaxUncompressed, "layer-max-bytes", "MANIFOLD_LAYER_MAX_BYTES", 32<<30, "most bytes a layer listing unpacks; past it a decompression bomb is cut off")
	fs.boolean(&cfg.AnonPull, "anonymous-pull", "MANIFOLD_ANONYMOUS_PULL", "let anyone pull images through /v2/ without a token")
	fs.duration(&cfg.Sessions.IdleTimeout, "session-idle", "MANIFOLD_SESSION_IDLE", 12*time.Hour, "a browser session unused this long ends")
	fs.duration(&cfg.Sessions.AbsoluteTimeout, "session-max", "MANIFOLD_SESSION_MAX", 168*time.Hour, "a browser session ends this long after login")
	fs.str(&cfg.BuildNetwork, "build-network", "MANIFOLD_BUILD_NETWORK", builds.NetworkBridge, "network of the embedded buildkitd's RUN steps: bridge (own namespace; this machine's addresses and link-local dropped; needs root and iptables), none (no network) or host (this machine's network: unsafe)")
	fs.str(&raw.allowFrontends, "allow-frontends", "MANIFOLD_ALLOW_FRONTENDS", "", "comma-separated Dockerfile frontend images a `# syntax=` line or BUILDKIT_SYNTAX may name, e.g. docker/dockerfile:1.7; empty allows none")
	fs.str(&cfg.LogLevel, "log-level", "MANIFOLD_LOG_LEVEL", "info", "debug, info, warn or error")
	fs.str(&cfg.LogFormat, "log-format", "MANIFOLD_LOG_FORMAT", "text", "text (logfmt) or json, one object a line")
	fs.boolean(&cfg.MetricsOpen, "metrics-open", "MANIFOLD_METRICS_OPEN", "serve /metrics to anyone; without it only admins (and admin tokens) read it")
}

// checkConfig validates and converts what the flags gave; every setting is
// checked here, before anything listens or starts.
func checkConfig(cfg config, raw rawConfig) (config, error) {
	var err error
	if cfg.Context.MaxBytes < 1 || raw.files < 1 || raw.files > 10_000_000 {
		return cfg, fmt.Errorf("--context-max-bytes and --context-max-files must be positive (files at most 10,000,000)")
	}
	cfg.Context.MaxFiles = int(raw.files)
	if raw.layerEntries < 1 || cfg.Listing.MaxUncompressed < 1 {
		return cfg, fmt.Errorf("--layer-max-entries and --layer-max-bytes must be positive")
	}
	cfg.Listing.MaxEntries = int(raw.layerEntries)
	if _, err := outbound.New(cfg.AllowHosts, nil); err != nil {
		return cfg, err
	}
	if raw.retainDays < 0 || raw.retainPerTag < 0 || cfg.GCInterval < 0 {
		return cfg, fmt.Errorf("--retain-days, --retain-per-tag and --gc-interval cannot be negative")
	}
	cfg.Retention.MaxAge, cfg.Retention.PerTag = time.Duration(raw.retainDays)*24*time.Hour, int(raw.retainPerTag)
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return cfg, fmt.Errorf("--addr %q is not host:port: %v", cfg.Addr, err)
	}
	if raw.maxQueued < 1 || raw.maxQueued > 100_000 {
		return cfg, fmt.Errorf("--max-queued-per-user %d must be from 1 to 100000", raw.maxQueued)
	}
	cfg.MaxQueued = int(raw.maxQueued)
	if raw.concurrency < 1 || raw.concurrency > 64 {
		return cfg, fmt.Errorf("--concurrency %d must be from 1 to 64", raw.concurrency)
	}
	cfg.Concurrency = int(raw.concurrency)
	if cfg.Nodes != "" && (cfg.BuildKit != "" || cfg.TLS != (buildkit.TLSConfig{})) {
		return cfg, errors.New("give either --nodes (a nodes file) or --buildkit, not both; a nodes file names every daemon with its TLS files")
	}
	if cfg.Nodes != "" {
		if _, err := buildkit.LoadNodes(cfg.Nodes); err != nil {
			return cfg, err
		}
	}
	if cfg.BuildKit != "" {
		if _, err := buildkit.NewNode("remote", cfg.BuildKit, cfg.TLS); err != nil {
			return cfg, err
		}
	} else if cfg.TLS != (buildkit.TLSConfig{}) {
		return cfg, errors.New("the --buildkit-tls-* flags need --buildkit tcp://…")
	}
	if cfg.Mirror != "" {
		if _, _, err := net.SplitHostPort(cfg.Mirror); err != nil {
			return cfg, fmt.Errorf("--mirror %q is not host:port", cfg.Mirror)
		}
	}
	if cfg.BuildNetwork, err = builds.ParseBuildNetwork(cfg.BuildNetwork); err != nil {
		return cfg, err
	}
	if cfg.BuilderAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.BuilderAddr); err != nil {
			return cfg, fmt.Errorf("--builder-addr %q is not host:port (such as :1234)", cfg.BuilderAddr)
		}
	}
	for _, h := range strings.Split(raw.builderHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.BuilderHosts = append(cfg.BuilderHosts, h)
		}
	}
	if cfg.Frontends, err = builds.ParseFrontendAllowList(raw.allowFrontends); err != nil {
		return cfg, err
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		return cfg, err
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("--log-format %q: use text or json", cfg.LogFormat)
	}
	return cfg, nil
}
