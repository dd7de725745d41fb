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
	"manifold/builds/builder"
	"manifold/builds/buildkit"
	"manifold/builds/content"
	"manifold/builds/explore"
	"manifold/builds/projects"
	"manifold/builds/registry"
	"manifold/db"
	"manifold/handlers"
	"manifold/outbound"
	"manifold/web"
)

// config is everything `manifold serve` can be told, by flag or environment.
type config struct {
	Addr     string
	Data     string
	BuildKit string
	Nodes    string // nodes file
	// BuilderAddr is where BuildKit's API is offered to `docker buildx` over
	// mutual TLS ("" for nowhere); BuilderHosts name it in its certificate.
	BuilderAddr  string
	BuilderHosts []string
	TLS          buildkit.TLSConfig
	Buildkitd    string
	Mirror       string
	Concurrency  int
	MaxQueued    int
	LogLevel     string
	Context      builds.ContextLimits
	KeyFile      string
	Retention    content.Retention
	GCInterval   time.Duration
	AnonPull     bool
	// AllowHosts lists the hosts outbound requests may reach although the
	// address policy refuses them (comma-separated host or host:port).
	AllowHosts string
	Listing    explore.ListingLimits
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
	case "builder-cert":
		return builderCertCommand(ctx, args, getenv, stdout)
	case "backup":
		return backupCommand(ctx, args, getenv, stdout)
	case "restore":
		return restoreCommand(ctx, args, getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: manifold [serve|user create|token create|builder-cert|backup DEST|restore SRC|version] [flags]; manifold serve -h lists the flags")
		fmt.Fprintln(stdout, "client: manifold login URL | logout | build [flags] PATH|GIT-URL | builds ls|show|logs | export | cancel | inspect  (README: Command line)")
		return nil
	}
	if clientCommands[cmd] {
		return newCLI(getenv, stdout).run(ctx, cmd, args)
	}
	return fmt.Errorf("unknown command %q; use serve, user, token, builder-cert, backup, restore, version, login, logout, build, builds, export, cancel or inspect", cmd)
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

	pool, stopBuildKit, err := connectBuildKit(ctx, cfg, st.data, log)
	if err != nil {
		return err
	}
	defer stopBuildKit()

	regs, policy, err := openRegistries(cfg, st, log)
	if err != nil {
		return err
	}
	accts := accounts.New(db.NewAccounts(st.db), regs, cfg.Sessions)
	records := db.NewBuilds(st.db)
	hub := builds.NewHub()
	client := registry.NewClient(regs, policy, st.content)
	engine := buildkit.NewEngine(buildkit.EngineConfig{
		Pool: pool, Blobs: st.content, WorkDir: st.work, Context: cfg.Context, Registry: client, Secrets: accts,
		Outbound: policy, Frontends: cfg.Frontends, Network: cfg.BuildNetwork, Records: records, Hub: hub, Log: log,
	})
	reserve := content.OpenReserve(st.data, content.ReserveSize)
	runner := builds.NewRunner(builds.RunnerConfig{
		Store: records, Hub: hub, Log: log, Limit: cfg.Concurrency, MaxQueuedPerUser: cfg.MaxQueued,
		Solver: engine, Hold: st.content.Hold,
		Recover: func(err error) bool {
			if !content.DiskFull(err) || !reserve.Release() {
				return false
			}
			log.Warn("the disk of the data folder is full: released the reserve to record the build's end; free space soon", "data", st.data)
			return true
		},
	})
	jobs := builds.NewJobs()
	defer jobs.Shutdown() // background jobs end before the database closes
	jobs.Every(30*time.Second, func(context.Context) { reserve.Refill() })
	svc := builds.NewService(runner, builds.ServiceConfig{
		Nodes: pool, Uploads: st.content, WorkDir: st.work, Context: cfg.Context,
		Frontends: cfg.Frontends, Outbound: policy, Accounts: accts, Jobs: jobs, Log: log,
	})
	store := content.NewService(st.content, records, svc, jobs, log)
	pull := registry.NewService(client, records, store, log)
	explorer := explore.NewService(explore.Config{Blobs: st.content, Records: records, Results: store, Client: client, Listing: cfg.Listing, Log: log})
	if err := svc.Recover(ctx); err != nil {
		return err
	}
	if err := store.IndexOld(ctx); err != nil {
		return err
	}
	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	runner.Start(runCtx)
	defer func() { stopRunner(); runner.Wait() }()

	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	log.Info("manifold listening", "url", "http://"+displayAddr(l.Addr()), "data", st.data, "buildkit", pool.Addrs(), "version", versionString())
	metrics := web.NewMetrics(db.NewMetrics(st.db), metricsSource{svc, store}, cfg.MetricsOpen)
	store.OnCollect(metrics.Collected)
	if cfg.GCInterval > 0 {
		store.CollectEvery(cfg.GCInterval, cfg.Retention)
	}
	if setup, err := accts.SetupMode(ctx); err == nil && setup {
		log.Warn("no accounts yet: requests from this machine act as admin until the first user is created with `manifold user create --admin NAME`")
	}
	projs := projects.NewService(db.NewProjects(st.db), regs, svc)
	h := &handlers.Handlers{Builds: svc, Content: store, Blobs: st.content, Explorer: explorer, Registries: pull,
		Credentials: regs, Accounts: accts, Projects: projs, Log: log, Retention: cfg.Retention}
	if cfg.BuilderAddr != "" {
		stopBuilder, certs, addr, err := startBuilderEndpoint(ctx, cfg, st, accts, pool, buildkit.NewBuildx(ctx, engine, pool.Nodes()[0], svc, log.With("component", "buildx")), log)
		if err != nil {
			return err
		}
		defer stopBuilder()
		h.Builder, h.BuilderAddr = certs, addr
	}
	srv := web.NewServer(h, web.Options{AnonymousPull: cfg.AnonPull, Identities: accts, OnShutdown: svc.CloseWatchers, Metrics: metrics}, log)
	return srv.Serve(ctx, l)
}

// metricsSource is what /metrics reads live: the nodes from the lifecycle
// service, disk use from the content service.
type metricsSource struct {
	builds  *builds.Service
	content *content.Service
}

func (m metricsSource) Nodes(ctx context.Context) []builds.NodeStatus { return m.builds.Nodes(ctx) }

func (m metricsSource) StorageUsage(ctx context.Context, p content.UsagePage) (content.Usage, error) {
	return m.content.StorageUsage(ctx, p)
}

// startBuilderEndpoint offers BuildKit's API to `docker buildx` on
// --builder-addr, behind mutual TLS with the builder CA's certificates,
// passing it to the first node; watch records each build made through it.
// It returns how to stop it, the certificate service and the address it listens on.
func startBuilderEndpoint(ctx context.Context, cfg config, st storage, accts *accounts.Service, pool *buildkit.Pool, watch builder.Watcher, log *slog.Logger) (func(), *builder.Service, string, error) {
	ca, err := builder.OpenCA(st.data)
	if err != nil {
		return nil, nil, "", err
	}
	node := pool.Nodes()[0]
	nodeTLS, err := node.ClientTLS()
	if err != nil {
		return nil, nil, "", err
	}
	certs := &builder.Service{CA: ca, Certs: db.NewBuilderCerts(st.db), Users: accts}
	ep, err := builder.NewEndpoint(builder.EndpointConfig{CA: ca, Certs: certs.Certs, Users: accts,
		Hosts: cfg.BuilderHosts, Backend: node.Addr, BackendTLS: nodeTLS, Watcher: watch, Log: log.With("component", "builder")})
	if err != nil {
		return nil, nil, "", err
	}
	l, err := net.Listen("tcp", cfg.BuilderAddr)
	if err != nil {
		return nil, nil, "", fmt.Errorf("listen on --builder-addr %s: %w", cfg.BuilderAddr, err)
	}
	log.Info("builder endpoint listening (docker buildx, remote driver, mutual TLS)", "addr", displayAddr(l.Addr()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ep.Serve(ctx, l); err != nil {
			log.Error("builder endpoint", "err", err)
		}
	}()
	return func() { ep.Stop(); <-done }, certs, l.Addr().String(), nil
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
	content *content.Store
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
	if st.content, err = content.OpenStore(filepath.Join(st.data, "content")); err != nil {
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

// connectBuildKit reads the nodes file, or starts the embedded buildkitd, or
// dials --buildkit; the function it returns closes the connections and
// stops the daemon.
func connectBuildKit(ctx context.Context, cfg config, data string, log *slog.Logger) (*buildkit.Pool, func(), error) {
	if cfg.Nodes != "" {
		nodes, err := buildkit.LoadNodes(cfg.Nodes)
		if err != nil {
			return nil, nil, err
		}
		pool := buildkit.NewPool(nodes...)
		for _, st := range pool.Status(ctx) {
			if st.OK {
				log.Info("BuildKit node", "node", st.Name, "addr", st.Addr, "platforms", strings.Join(st.Platforms, ","), "native", strings.Join(st.Native, ","))
			} else {
				log.Warn("BuildKit node is down; builds go to the others until it answers", "node", st.Name, "err", st.Error)
			}
		}
		return pool, pool.Close, nil
	}
	pool, stop, err := connectOne(ctx, cfg, data, log)
	if err != nil {
		return nil, nil, err
	}
	return pool, stop, nil
}

// connectOne is the one node without a nodes file: --buildkit, or the embedded daemon.
func connectOne(ctx context.Context, cfg config, data string, log *slog.Logger) (*buildkit.Pool, func(), error) {
	if cfg.BuildKit != "" {
		node, err := buildkit.NewNode("remote", cfg.BuildKit, cfg.TLS)
		if err != nil {
			return nil, nil, err
		}
		if cfg.BuildNetwork == builds.NetworkNone {
			log.Info("build network none: every solve asks the remote BuildKit for no network")
		} else {
			log.Warn("--build-network " + cfg.BuildNetwork + " does not apply to a remote BuildKit: its own configuration decides what RUN steps can reach (only none is asked for per solve)")
		}
		pool := buildkit.NewPool(node)
		return pool, pool.Close, nil
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
	node, err := buildkit.NewNode("embedded", d.Addr(), buildkit.TLSConfig{})
	if err != nil {
		d.Stop()
		return nil, nil, err
	}
	pool := buildkit.NewPool(node)
	return pool, func() { pool.Close(); d.Stop() }, nil
}

// openRegistries loads the sealing key and the outbound policy and opens
// the registry credentials with them.
func openRegistries(cfg config, st storage, log *slog.Logger) (*registry.Credentials, *outbound.Policy, error) {
	keyFile := cfg.KeyFile
	if keyFile == "" {
		keyFile = filepath.Join(st.data, "secret.key")
	}
	key, err := registry.LoadKey(keyFile)
	if err != nil {
		return nil, nil, err
	}
	regs, err := registry.NewCredentials(db.NewCredentials(st.db), key)
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
