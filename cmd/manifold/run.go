package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/builds/buildkit"
	"manifold/builds/outbound"
	"manifold/builds/projects"
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
	// LogFormat is text or json.
	LogFormat string
	// MetricsOpen serves /metrics without a token.
	MetricsOpen bool
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
		fmt.Fprintln(stdout, "client: manifold login URL | logout | build [flags] PATH|GIT-URL | builds ls|show|logs | export | cancel | inspect  (README: Command line)")
		return nil
	}
	if clientCommands[cmd] {
		return newCLI(getenv, stdout).run(ctx, cmd, args)
	}
	return fmt.Errorf("unknown command %q; use serve, user, token, version, login, logout, build, builds, export, cancel or inspect", cmd)
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

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// serve wires everything, serves until ctx ends, then shuts down in reverse
// order: HTTP server (ending event streams first), runner, background
// jobs, BuildKit, database.
func serve(ctx context.Context, cfg config, stdout io.Writer) error {
	log := newLogger(cfg, stdout)
	st, err := openStorage(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.db.Close()

	node, stopBuildKit, err := connectBuildKit(ctx, cfg, st.data, log)
	if err != nil {
		return err
	}
	defer stopBuildKit()

	regs, policy, err := openRegistries(cfg, st, log)
	if err != nil {
		return err
	}
	accts := accounts.New(db.NewAccounts(st.db), regs, cfg.Sessions)
	runner := builds.NewRunner(builds.RunnerConfig{
		Registries: regs, Secrets: accts, Outbound: policy, Frontends: cfg.Frontends, Network: cfg.BuildNetwork, Listing: cfg.Listing,
		Store: db.NewBuilds(st.db), Hub: builds.NewHub(), Node: node, Content: st.content, WorkDir: st.work, Log: log,
		Limit: cfg.Concurrency, MaxQueuedPerUser: cfg.MaxQueued, Context: cfg.Context,
	})
	svc := builds.NewService(runner, log)
	svc.UseAccounts(accts)
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
	log.Info("manifold listening", "url", "http://"+displayAddr(l.Addr()), "data", st.data, "buildkit", node.Addr, "version", versionString())
	metrics := web.NewMetrics(db.NewMetrics(st.db), svc, cfg.MetricsOpen)
	svc.OnCollect(metrics.Collected)
	if cfg.GCInterval > 0 {
		svc.CollectEvery(cfg.GCInterval, cfg.Retention)
	}
	if setup, err := accts.SetupMode(ctx); err == nil && setup {
		log.Warn("no accounts yet: requests from this machine act as admin until the first user is created with `manifold user create --admin NAME`")
	}
	projs := projects.NewService(db.NewProjects(st.db), regs, svc)
	srv := web.NewServer(&handlers.Handlers{Builds: svc, Accounts: accts, Projects: projs, Log: log, Retention: cfg.Retention},
		web.Options{AnonymousPull: cfg.AnonPull, OnShutdown: svc.CloseWatchers, Metrics: metrics}, log)
	return srv.Serve(ctx, l)
}

// newLogger is Manifold's log; containerd and the BuildKit client log
// through logrus, which is folded into it at debug.
func newLogger(cfg config, stdout io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	var handler slog.Handler = slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: level})
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(handler)
	logrus.SetOutput(logWriter{log})
	logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	return log
}

// storage is what lives in the data folder.
type storage struct {
	data    string // the data folder, absolute
	db      *db.DB
	content *builds.ContentStore
	work    string // per-build scratch, emptied at every start
}

// openStorage makes the data folder private, opens the database and the
// content store, and empties the scratch folder a previous process left.
func openStorage(ctx context.Context, cfg config, log *slog.Logger) (storage, error) {
	var st storage
	var err error
	if st.data, err = privateDataDir(cfg.Data, log); err != nil {
		return st, err
	}
	if st.db, err = db.Open(ctx, filepath.Join(st.data, "manifold.db")); err != nil {
		return st, err
	}
	fail := func(err error) (storage, error) { st.db.Close(); return st, err }
	if st.content, err = builds.OpenContentStore(filepath.Join(st.data, "content")); err != nil {
		return fail(err)
	}
	st.work = filepath.Join(st.data, "tmp")
	if err := os.RemoveAll(st.work); err != nil {
		return fail(fmt.Errorf("clean %s: %w", st.work, err))
	}
	if err := os.MkdirAll(st.work, 0o700); err != nil {
		return fail(err)
	}
	return st, nil
}

// connectBuildKit starts the embedded buildkitd, or dials --buildkit; the
// function it returns closes the connection and stops the daemon.
func connectBuildKit(ctx context.Context, cfg config, data string, log *slog.Logger) (*builds.Node, func(), error) {
	if cfg.BuildKit != "" {
		node, err := builds.NewNode("remote", cfg.BuildKit, cfg.TLS)
		if err != nil {
			return nil, nil, err
		}
		if cfg.BuildNetwork == builds.NetworkNone {
			log.Info("build network none: every solve asks the remote BuildKit for no network")
		} else {
			log.Warn("--build-network " + cfg.BuildNetwork + " does not apply to a remote BuildKit: its own configuration decides what RUN steps can reach (only none is asked for per solve)")
		}
		return node, func() { node.Close() }, nil
	}
	bin := cfg.Buildkitd
	if bin == "" {
		var err error
		if bin, err = buildkit.FindBuildkitd(); err != nil {
			return nil, nil, err
		}
	}
	d, err := buildkit.StartDaemon(ctx, buildkit.DaemonConfig{
		Binary: bin, Root: filepath.Join(data, "buildkit"), Mirror: cfg.Mirror, Log: log.With("component", "buildkitd"),
		Network: cfg.BuildNetwork, Frontends: cfg.Frontends,
	}, 60*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("start the embedded buildkitd: %w", err)
	}
	node, err := builds.NewNode("embedded", d.Addr(), builds.TLSConfig{})
	if err != nil {
		d.Stop()
		return nil, nil, err
	}
	return node, func() { node.Close(); d.Stop() }, nil
}

// openRegistries loads the sealing key and the outbound policy and opens
// the registry credentials with them.
func openRegistries(cfg config, st storage, log *slog.Logger) (*builds.Registries, *outbound.Policy, error) {
	keyFile := cfg.KeyFile
	if keyFile == "" {
		keyFile = filepath.Join(st.data, "secret.key")
	}
	key, err := builds.LoadKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	regs, err := builds.NewRegistries(db.NewCredentials(st.db), key)
	if err != nil {
		return nil, nil, err
	}
	policy, err := outbound.New(cfg.AllowHosts, log.With("component", "outbound"))
	if err != nil {
		return nil, nil, err
	}
	if allow := policy.AllowList(); len(allow) > 0 {
		log.Info("outbound requests may reach these non-public hosts", "allow_hosts", strings.Join(allow, ","))
	}
	regs.SetPolicy(policy)
	return regs, policy, nil
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
