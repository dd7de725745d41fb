package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/builds/outbound"
	"manifold/db"
	"manifold/handlers"
	"manifold/web"
)

// config is everything `manifold serve` can be told, by flag or environment.
type config struct {
	Addr        string
	Data        string
	BuildKit    string
	TLS         builds.TLSConfig
	Buildkitd   string
	Mirror      string
	Concurrency int
	MaxQueued   int
	LogLevel    string
	Context     builds.ContextLimits
	KeyFile     string
	Retention   builds.Retention
	GCInterval  time.Duration
	AnonPull    bool
	// AllowHosts lists the hosts outbound requests may reach although the
	// address policy refuses them (comma-separated host or host:port).
	AllowHosts string
	Listing    builds.ListingLimits
	Sessions   accounts.Config
	// BuildNetwork is where the embedded buildkitd's RUN steps get their network.
	BuildNetwork string
	// Frontends lists the `# syntax=` frontend images builds may name.
	Frontends builds.FrontendPolicy
}

// run is the whole program; main only calls it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig(args, getenv, stdout)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "user":
		return userCommand(ctx, args, getenv, stdout)
	case "token":
		return tokenCommand(ctx, args, getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: manifold [serve|user create|token create|version] [flags]; manifold serve -h lists the flags")
		return nil
	}
	return fmt.Errorf("unknown command %q; use serve, user, token or version", cmd)
}

func versionString() string {
	v, bk, goV := "(devel)", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goV = bi.GoVersion
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/moby/buildkit" {
				bk = d.Version
			}
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("manifold %s (buildkit client %s, %s)", v, bk, goV)
}

func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var cfg config
	fs := flag.NewFlagSet("manifold serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.Addr, "addr", env("MANIFOLD_ADDR", ":8080"), "listen address (MANIFOLD_ADDR)")
	fs.StringVar(&cfg.Data, "data", env("MANIFOLD_DATA", "data"), "data folder: database, content store, embedded buildkitd (MANIFOLD_DATA)")
	fs.StringVar(&cfg.BuildKit, "buildkit", env("MANIFOLD_BUILDKIT", ""), "BuildKit daemon address, unix:// or tcp://; empty starts an embedded buildkitd (MANIFOLD_BUILDKIT)")
	fs.StringVar(&cfg.TLS.CACert, "buildkit-tls-ca", env("MANIFOLD_BUILDKIT_TLS_CA", ""), "CA certificate for a tcp:// BuildKit (MANIFOLD_BUILDKIT_TLS_CA)")
	fs.StringVar(&cfg.TLS.Cert, "buildkit-tls-cert", env("MANIFOLD_BUILDKIT_TLS_CERT", ""), "client certificate for a tcp:// BuildKit (MANIFOLD_BUILDKIT_TLS_CERT)")
	fs.StringVar(&cfg.TLS.Key, "buildkit-tls-key", env("MANIFOLD_BUILDKIT_TLS_KEY", ""), "client key for a tcp:// BuildKit (MANIFOLD_BUILDKIT_TLS_KEY)")
	fs.StringVar(&cfg.TLS.ServerName, "buildkit-tls-servername", env("MANIFOLD_BUILDKIT_TLS_SERVERNAME", ""), "server name to verify in BuildKit's certificate (MANIFOLD_BUILDKIT_TLS_SERVERNAME)")
	fs.StringVar(&cfg.Buildkitd, "buildkitd-bin", env("MANIFOLD_BUILDKITD", ""), "buildkitd binary for the embedded daemon; found next to manifold, in ./bin or on PATH when empty (MANIFOLD_BUILDKITD)")
	fs.StringVar(&cfg.Mirror, "mirror", env("MANIFOLD_MIRROR", ""), "registry host:port the embedded buildkitd uses as docker.io mirror, over plain HTTP (MANIFOLD_MIRROR)")
	conc, err := strconv.Atoi(env("MANIFOLD_CONCURRENCY", "2"))
	if err != nil {
		return cfg, fmt.Errorf("MANIFOLD_CONCURRENCY=%q is not a number", getenv("MANIFOLD_CONCURRENCY"))
	}
	fs.IntVar(&cfg.Concurrency, "concurrency", conc, "builds that run at once; the rest wait in line (MANIFOLD_CONCURRENCY)")
	maxQueued, err := strconv.Atoi(env("MANIFOLD_MAX_QUEUED_PER_USER", "10"))
	if err != nil {
		return cfg, fmt.Errorf("MANIFOLD_MAX_QUEUED_PER_USER=%q is not a number", getenv("MANIFOLD_MAX_QUEUED_PER_USER"))
	}
	fs.IntVar(&cfg.MaxQueued, "max-queued-per-user", maxQueued, "builds one user may have waiting in the queue; more are refused with 429 (MANIFOLD_MAX_QUEUED_PER_USER)")
	intEnv := func(key string, def int64) (int64, error) {
		v := getenv(key)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a number", key, v)
		}
		return n, nil
	}
	maxBytes, err := intEnv("MANIFOLD_CONTEXT_MAX_BYTES", 512<<20)
	if err != nil {
		return cfg, err
	}
	maxFiles, err := intEnv("MANIFOLD_CONTEXT_MAX_FILES", 100_000)
	if err != nil {
		return cfg, err
	}
	fs.Int64Var(&cfg.Context.MaxBytes, "context-max-bytes", maxBytes, "largest uploaded context, packed and unpacked, in bytes (MANIFOLD_CONTEXT_MAX_BYTES)")
	var files int64
	fs.Int64Var(&files, "context-max-files", maxFiles, "most entries in an uploaded context (MANIFOLD_CONTEXT_MAX_FILES)")
	fs.StringVar(&cfg.KeyFile, "key-file", env("MANIFOLD_KEY_FILE", ""), "key that seals registry credentials; created with mode 0600 on first start (default <data>/secret.key) (MANIFOLD_KEY_FILE)")
	days, err := intEnv("MANIFOLD_RETAIN_DAYS", 0)
	if err != nil {
		return cfg, err
	}
	perTag, err := intEnv("MANIFOLD_RETAIN_PER_TAG", 0)
	if err != nil {
		return cfg, err
	}
	var retainDays, retainPerTag int64
	fs.Int64Var(&retainDays, "retain-days", days, "remove unpinned builds older than this many days; 0 keeps them (MANIFOLD_RETAIN_DAYS)")
	fs.Int64Var(&retainPerTag, "retain-per-tag", perTag, "keep only the newest N succeeded builds of each tag; 0 keeps all (MANIFOLD_RETAIN_PER_TAG)")
	gcEvery, err := time.ParseDuration(env("MANIFOLD_GC_INTERVAL", "1h"))
	if err != nil {
		return cfg, fmt.Errorf("MANIFOLD_GC_INTERVAL: %v", err)
	}
	minAge, err := time.ParseDuration(env("MANIFOLD_GC_MIN_AGE", "15m"))
	if err != nil {
		return cfg, fmt.Errorf("MANIFOLD_GC_MIN_AGE: %v", err)
	}
	fs.DurationVar(&cfg.Retention.MinBlobAge, "gc-min-age", minAge, "blobs younger than this survive garbage collection (uploads not yet attached, exports in flight) (MANIFOLD_GC_MIN_AGE)")
	fs.DurationVar(&cfg.GCInterval, "gc-interval", gcEvery, "how often retention and garbage collection run; 0 turns the timer off (MANIFOLD_GC_INTERVAL)")
	fs.StringVar(&cfg.AllowHosts, "allow-hosts", env("MANIFOLD_ALLOW_HOSTS", ""), "comma-separated host or host:port that registries, git contexts, remote images and build sources may reach although they are loopback, private, link-local or otherwise non-public addresses; empty allows none of those (MANIFOLD_ALLOW_HOSTS)")
	maxEntries, err := intEnv("MANIFOLD_LAYER_MAX_ENTRIES", 200_000)
	if err != nil {
		return cfg, err
	}
	maxUnpacked, err := intEnv("MANIFOLD_LAYER_MAX_BYTES", 32<<30)
	if err != nil {
		return cfg, err
	}
	var layerEntries int64
	fs.Int64Var(&layerEntries, "layer-max-entries", maxEntries, "most entries a layer listing reads (MANIFOLD_LAYER_MAX_ENTRIES)")
	fs.Int64Var(&cfg.Listing.MaxUncompressed, "layer-max-bytes", maxUnpacked, "most bytes a layer listing unpacks; past it a decompression bomb is cut off (MANIFOLD_LAYER_MAX_BYTES)")
	fs.BoolVar(&cfg.AnonPull, "anonymous-pull", env("MANIFOLD_ANONYMOUS_PULL", "") == "true", "let anyone pull images through /v2/ without a token (MANIFOLD_ANONYMOUS_PULL=true)")
	idle, err := time.ParseDuration(env("MANIFOLD_SESSION_IDLE", "12h"))
	if err != nil {
		return cfg, fmt.Errorf("MANIFOLD_SESSION_IDLE: %v", err)
	}
	abs, err := time.ParseDuration(env("MANIFOLD_SESSION_MAX", "168h"))
	if err != nil {
		return cfg, fmt.Errorf("MANIFOLD_SESSION_MAX: %v", err)
	}
	fs.DurationVar(&cfg.Sessions.IdleTimeout, "session-idle", idle, "a browser session unused this long ends (MANIFOLD_SESSION_IDLE)")
	fs.DurationVar(&cfg.Sessions.AbsoluteTimeout, "session-max", abs, "a browser session ends this long after login (MANIFOLD_SESSION_MAX)")
	fs.StringVar(&cfg.BuildNetwork, "build-network", env("MANIFOLD_BUILD_NETWORK", builds.NetworkBridge), "network of the embedded buildkitd's RUN steps: bridge (own namespace; this machine's addresses and link-local dropped; needs root and iptables), none (no network) or host (this machine's network: unsafe) (MANIFOLD_BUILD_NETWORK)")
	var allowFrontends string
	fs.StringVar(&allowFrontends, "allow-frontends", env("MANIFOLD_ALLOW_FRONTENDS", ""), "comma-separated Dockerfile frontend images a `# syntax=` line or BUILDKIT_SYNTAX may name, e.g. docker/dockerfile:1.7; empty allows none (MANIFOLD_ALLOW_FRONTENDS)")
	fs.StringVar(&cfg.LogLevel, "log-level", env("MANIFOLD_LOG_LEVEL", "info"), "debug, info, warn or error (MANIFOLD_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Context.MaxBytes < 1 || files < 1 || files > 10_000_000 {
		return cfg, fmt.Errorf("--context-max-bytes and --context-max-files must be positive (files at most 10,000,000)")
	}
	cfg.Context.MaxFiles = int(files)
	if layerEntries < 1 || cfg.Listing.MaxUncompressed < 1 {
		return cfg, fmt.Errorf("--layer-max-entries and --layer-max-bytes must be positive")
	}
	cfg.Listing.MaxEntries = int(layerEntries)
	if _, err := outbound.New(cfg.AllowHosts, nil); err != nil {
		return cfg, err
	}
	if retainDays < 0 || retainPerTag < 0 || cfg.GCInterval < 0 {
		return cfg, fmt.Errorf("--retain-days, --retain-per-tag and --gc-interval cannot be negative")
	}
	cfg.Retention.MaxAge, cfg.Retention.PerTag = time.Duration(retainDays)*24*time.Hour, int(retainPerTag)
	// Checked before anything listens or starts.
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return cfg, fmt.Errorf("--addr %q is not host:port: %v", cfg.Addr, err)
	}
	if cfg.MaxQueued < 1 || cfg.MaxQueued > 100_000 {
		return cfg, fmt.Errorf("--max-queued-per-user %d must be from 1 to 100000", cfg.MaxQueued)
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 64 {
		return cfg, fmt.Errorf("--concurrency %d must be from 1 to 64", cfg.Concurrency)
	}
	if cfg.BuildKit != "" {
		if _, err := builds.NewNode("remote", cfg.BuildKit, cfg.TLS); err != nil {
			return cfg, err
		}
	} else if cfg.TLS != (builds.TLSConfig{}) {
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
	if cfg.Frontends, err = builds.ParseFrontendAllowList(allowFrontends); err != nil {
		return cfg, err
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// serve wires everything, serves until ctx ends, then shuts down in reverse order.
func serve(ctx context.Context, cfg config, stdout io.Writer) error {
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: level}))
	// containerd and the BuildKit client log through logrus: fold it into our log, at debug.
	logrus.SetOutput(logWriter{log})
	logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})

	data, err := privateDataDir(cfg.Data, log)
	if err != nil {
		return err
	}
	database, err := db.Open(ctx, filepath.Join(data, "manifold.db"))
	if err != nil {
		return err
	}
	defer database.Close()

	store, err := builds.OpenContentStore(filepath.Join(data, "content"))
	if err != nil {
		return err
	}
	work := filepath.Join(data, "tmp")
	if err := os.RemoveAll(work); err != nil { // scratch left by a previous process
		return fmt.Errorf("clean %s: %w", work, err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}

	var node *builds.Node
	if cfg.BuildKit == "" {
		bin := cfg.Buildkitd
		if bin == "" {
			if bin, err = builds.FindBuildkitd(); err != nil {
				return err
			}
		}
		d, err := builds.StartDaemon(ctx, builds.DaemonConfig{
			Binary: bin, Root: filepath.Join(data, "buildkit"), Mirror: cfg.Mirror, Log: log.With("component", "buildkitd"),
			Network: cfg.BuildNetwork, Frontends: cfg.Frontends,
		}, 60*time.Second)
		if err != nil {
			return fmt.Errorf("start the embedded buildkitd: %w", err)
		}
		defer d.Stop()
		if node, err = builds.NewNode("embedded", d.Addr(), builds.TLSConfig{}); err != nil {
			return err
		}
	} else {
		if node, err = builds.NewNode("remote", cfg.BuildKit, cfg.TLS); err != nil {
			return err
		}
		if cfg.BuildNetwork == builds.NetworkNone {
			log.Info("build network none: every solve asks the remote BuildKit for no network")
		} else {
			log.Warn("--build-network " + cfg.BuildNetwork + " does not apply to a remote BuildKit: its own configuration decides what RUN steps can reach (only none is asked for per solve)")
		}
	}
	defer node.Close()

	keyFile := cfg.KeyFile
	if keyFile == "" {
		keyFile = filepath.Join(data, "secret.key")
	}
	key, err := builds.LoadKey(keyFile)
	if err != nil {
		return err
	}
	regs, err := builds.NewRegistries(db.NewCredentials(database), key)
	if err != nil {
		return err
	}
	policy, err := outbound.New(cfg.AllowHosts, log.With("component", "outbound"))
	if err != nil {
		return err
	}
	if allow := policy.AllowList(); len(allow) > 0 {
		log.Info("outbound requests may reach these non-public hosts", "allow_hosts", strings.Join(allow, ","))
	}
	regs.SetPolicy(policy)
	accts := accounts.New(db.NewAccounts(database), regs, cfg.Sessions)
	runner := builds.NewRunner(builds.RunnerConfig{
		Registries: regs,
		Secrets:    accts,
		Outbound:   policy,
		Frontends:  cfg.Frontends,
		Network:    cfg.BuildNetwork,
		Listing:    cfg.Listing,
		Store:      db.NewBuilds(database), Hub: builds.NewHub(), Node: node, Content: store, WorkDir: work, Log: log, Limit: cfg.Concurrency, MaxQueuedPerUser: cfg.MaxQueued, Context: cfg.Context,
	})
	svc := builds.NewService(runner, log)
	defer svc.Shutdown() // background jobs end before the database closes
	if err := svc.Recover(ctx); err != nil {
		return err
	}
	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	runner.Start(runCtx)
	defer func() { stopRunner(); runner.Wait() }()

	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	log.Info("manifold listening", "url", "http://"+displayAddr(l.Addr()), "data", data, "buildkit", node.Addr, "version", versionString())
	if cfg.GCInterval > 0 {
		svc.CollectEvery(cfg.GCInterval, cfg.Retention)
	}
	if setup, err := accts.SetupMode(ctx); err == nil && setup {
		log.Warn("no accounts yet: requests from this machine act as admin until the first user is created with `manifold user create --admin NAME`")
	}
	srv := web.NewServer(&handlers.Handlers{Builds: svc, Accounts: accts, Log: log, Retention: cfg.Retention}, web.Options{AnonymousPull: cfg.AnonPull, OnShutdown: svc.CloseWatchers}, log)
	return srv.Serve(ctx, l)
}

// privateDataDir creates the data folder with mode 0700, or tightens an
// existing one that others may read: it holds password hashes, the audit
// log, sealed secrets and build arguments.
func privateDataDir(dir string, log *slog.Logger) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data folder: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(abs, 0o700); err != nil {
			return "", fmt.Errorf("data folder %s can be read by other users (mode %v) and cannot be made private: %w; run chmod 700 on it", abs, fi.Mode().Perm(), err)
		}
		log.Warn("data folder was readable by other users; made it private", "data", abs, "was", fi.Mode().Perm().String())
	}
	return abs, nil
}

func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if host == "::" || host == "0.0.0.0" || host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// logWriter forwards a library's log lines into Manifold's log at debug level.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)), "component", "library")
	return len(p), nil
}
