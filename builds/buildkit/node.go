package buildkit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/session"
	"github.com/tonistiigi/fsutil"
	"google.golang.org/grpc/status"

	"manifold/builds"
)

// TLSConfig holds the client certificates for a BuildKit daemon reached over tcp://.
type TLSConfig struct {
	CACert     string // path of the CA certificate that signed the daemon's
	Cert       string // path of the client certificate
	Key        string // path of the client key
	ServerName string // name to check in the daemon's certificate; defaults to the host
}

// Node is one BuildKit daemon that Manifold builds on.
type Node struct {
	Name string
	Addr string

	mu     sync.Mutex
	client *client.Client
	tls    TLSConfig

	// platforms, when set, replaces what the daemon's workers report;
	// native, when set, says which of them run without emulation (else the
	// worker's first platform and its variants do).
	platforms []string
	native    []string

	// running counts the solves on this node now, for least-busy routing.
	running atomic.Int32

	// The last good answer, reused for statusTTL: a build's submission and
	// its solve ask within moments of each other, and /healthz may be polled.
	statusMu sync.Mutex
	good     builds.NodeStatus
	goodAt   time.Time
}

// statusTTL is how long a good status answer is reused; a bad one never is.
const statusTTL = 2 * time.Second

// NewNode describes a daemon at addr (unix://…, tcp://…). The connection is made lazily.
func NewNode(name, addr string, tls TLSConfig) (*Node, error) {
	if !strings.HasPrefix(addr, "unix://") && !strings.HasPrefix(addr, "tcp://") {
		return nil, builds.Errorf(builds.EInvalid, "BuildKit address %q must start with unix:// or tcp://", addr)
	}
	if strings.HasPrefix(addr, "unix://") && (tls.Cert != "" || tls.CACert != "") {
		return nil, builds.Errorf(builds.EInvalid, "TLS options apply to tcp:// addresses only, not %q", addr)
	}
	if (tls.Cert == "") != (tls.Key == "") {
		return nil, builds.Errorf(builds.EInvalid, "the BuildKit client certificate and key must be given together")
	}
	return &Node{Name: name, Addr: addr, tls: tls}, nil
}

func (n *Node) conn(ctx context.Context) (*client.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		return n.client, nil
	}
	var opts []client.ClientOpt
	if n.tls.CACert != "" {
		opts = append(opts, client.WithServerConfig(n.tls.ServerName, n.tls.CACert))
	}
	if n.tls.Cert != "" {
		opts = append(opts, client.WithCredentials(n.tls.Cert, n.tls.Key))
	}
	c, err := client.New(ctx, n.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to BuildKit at %s: %w", n.Addr, err)
	}
	n.client = c
	return c, nil
}

// Close drops the connection to the daemon.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client == nil {
		return nil
	}
	err := n.client.Close()
	n.client = nil
	return err
}

// Status asks the daemon for its workers; it never takes longer than timeout.
// It always asks: /healthz and the daemon's start-up want the truth now.
func (n *Node) Status(ctx context.Context, timeout time.Duration) builds.NodeStatus {
	st := n.status(ctx, timeout)
	n.statusMu.Lock()
	if st.OK {
		n.good, n.goodAt = st, time.Now()
		n.good.Platforms = slices.Clone(st.Platforms)
	} else {
		n.goodAt = time.Time{}
	}
	n.statusMu.Unlock()
	return st
}

// RecentStatus is Status, reusing a good answer younger than statusTTL: a
// build's submission and its solve ask within moments of each other, so
// BuildKit is asked once per build.
func (n *Node) RecentStatus(ctx context.Context, timeout time.Duration) builds.NodeStatus {
	n.statusMu.Lock()
	if !n.goodAt.IsZero() && time.Since(n.goodAt) < statusTTL {
		st := n.good
		st.Platforms = slices.Clone(st.Platforms)
		n.statusMu.Unlock()
		return st
	}
	n.statusMu.Unlock()
	return n.Status(ctx, timeout)
}

// Forget drops the reused answer: a solve found the daemon gone.
func (n *Node) Forget() {
	n.statusMu.Lock()
	n.goodAt = time.Time{}
	n.statusMu.Unlock()
}

// status asks the daemon for its workers.
func (n *Node) status(ctx context.Context, timeout time.Duration) builds.NodeStatus {
	st := builds.NodeStatus{Name: n.Name, Addr: n.Addr, Platforms: []string{}, Native: []string{}, Running: int(n.running.Load())}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := n.conn(ctx)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	workers, err := c.ListWorkers(ctx)
	if err != nil {
		st.Error = fmt.Sprintf("BuildKit at %s cannot be reached: %s", n.Addr, grpcMessage(err))
		return st
	}
	for _, w := range workers {
		for _, p := range w.Platforms {
			s := builds.FormatPlatform(p.OS, p.Architecture, p.Variant)
			if !slices.Contains(st.Platforms, s) {
				st.Platforms = append(st.Platforms, s)
			}
		}
		if len(st.Native) == 0 && len(w.Platforms) > 0 {
			// A worker's first platform is its own: that architecture runs natively.
			own := w.Platforms[0]
			for _, p := range w.Platforms {
				if p.OS == own.OS && p.Architecture == own.Architecture {
					st.Native = append(st.Native, builds.FormatPlatform(p.OS, p.Architecture, p.Variant))
				}
			}
		}
		if st.Version == "" {
			st.Version = w.BuildkitVersion.Version
		}
	}
	if len(workers) == 0 {
		st.Error = fmt.Sprintf("BuildKit at %s has no workers", n.Addr)
		return st
	}
	if len(n.platforms) > 0 {
		st.Platforms = slices.Clone(n.platforms)
		st.Native = slices.DeleteFunc(st.Native, func(p string) bool { return !slices.Contains(n.platforms, p) })
	}
	if n.native != nil {
		st.Native = slices.Clone(n.native)
	}
	st.OK = true
	return st
}

// solveSpec is one Solve call with the Dockerfile frontend, exported as OCI
// blobs into the content store.
type solveSpec struct {
	Ref       string
	Platforms []string
	Options   builds.Options
	Store     ccontent.Store
	// DockerfileDir is a local folder holding the Dockerfile, or "" to read
	// it from the context.
	DockerfileDir string
	// DockerfileName is the Dockerfile's path in its folder or context.
	DockerfileName string
	// ContextDir is a local context folder; Git a repository BuildKit fetches.
	// With neither, the context is empty.
	ContextDir string
	Git        *builds.GitSource
	Session    []session.Attachable
	// SourcePolicy is asked about every source the solve loads.
	SourcePolicy session.Attachable
	// NoForward keeps the Dockerfile frontend from following a `# syntax=`
	// line; NoNetwork gives every RUN step no network.
	NoForward bool
	NoNetwork bool
}

// solve runs spec on the daemon; consume reads its progress until the
// solve ends. The progress channel is made, handed out and closed here only
// (by BuildKit's Solve), and both sides are one errgroup.
func (n *Node) solve(ctx context.Context, spec solveSpec, consume func(<-chan *client.SolveStatus)) (*client.SolveResponse, error) {
	c, err := n.conn(ctx)
	if err != nil {
		return nil, err
	}
	name := spec.DockerfileName
	if name == "" {
		name = "Dockerfile"
	}
	attrs := map[string]string{
		"filename": name,
		"platform": strings.Join(spec.Platforms, ","),
		// Always an index, even for one platform, so every build has an index digest.
		"multi-platform": "true",
	}
	spec.Options.FrontendAttrs(attrs)
	if spec.NoForward {
		// The Dockerfile frontend forwards to a `# syntax=` image only when no
		// "cmdline" is given (frontend/dockerfile/builder/build.go).
		attrs["cmdline"] = ""
	}
	if spec.NoNetwork {
		attrs["force-network-mode"] = "none"
	}
	mounts := map[string]fsutil.FS{}
	inputs := map[string]llb.State{}
	addMount := func(key, dir string) error {
		fs, err := fsutil.NewFS(dir)
		if err != nil {
			return err
		}
		mounts[key] = fs
		return nil
	}
	switch {
	case spec.Git != nil:
		// Given as an input state, so https URLs without ".git" are fetched with git too.
		opts := []llb.GitOption{llb.WithCustomName("[internal] load git source " + spec.Git.URL)}
		if spec.Git.Subdir != "" {
			opts = append(opts, llb.GitSubDir(spec.Git.Subdir))
		}
		st := llb.Git(spec.Git.URL, spec.Git.Ref, opts...)
		inputs["context"] = st
		if spec.DockerfileDir == "" {
			inputs["dockerfile"] = st
		}
	case spec.ContextDir != "":
		if err := addMount("context", spec.ContextDir); err != nil {
			return nil, err
		}
	}
	if spec.DockerfileDir != "" {
		if err := addMount("dockerfile", spec.DockerfileDir); err != nil {
			return nil, err
		}
	} else if spec.ContextDir != "" {
		mounts["dockerfile"] = mounts["context"]
	}
	exports := []client.ExportEntry{{
		Type:        client.ExporterOCI,
		Attrs:       map[string]string{"tar": "false", "oci-mediatypes": "true"},
		OutputStore: spec.Store,
	}}
	opt := client.SolveOpt{
		Ref:            spec.Ref,
		Session:        spec.Session,
		Frontend:       "dockerfile.v0",
		FrontendAttrs:  attrs,
		FrontendInputs: inputs,
		LocalMounts:    mounts,
		Exports:        exports,
		// Every source the solve loads is put to Manifold's outbound policy.
		SourcePolicyProvider: spec.SourcePolicy,
	}
	ch := make(chan *client.SolveStatus)
	var g errgroup.Group
	var resp *client.SolveResponse
	g.Go(func() error {
		var err error
		resp, err = c.Solve(ctx, nil, opt, ch) // closes ch when it returns
		return err
	})
	g.Go(func() error {
		consume(ch)
		return nil
	})
	return resp, g.Wait()
}

// grpcMessage strips the gRPC wrapping ("rpc error: code = … desc = ") from err.
func grpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	msg := err.Error()
	if i := strings.Index(msg, "desc = "); i >= 0 && strings.HasPrefix(msg, "rpc error") {
		return msg[i+len("desc = "):]
	}
	return msg
}

// Pool is the BuildKit nodes Manifold builds on; it reports their health
// to the lifecycle service (builds.Nodes).
type Pool struct {
	nodes []*Node
}

// NewPool returns a pool of nodes.
func NewPool(nodes ...*Node) *Pool { return &Pool{nodes: nodes} }

// Nodes lists the pool's nodes.
func (p *Pool) Nodes() []*Node { return slices.Clone(p.nodes) }

// nodeStatusTimeout bounds how long one node is asked for its workers.
const nodeStatusTimeout = 3 * time.Second

// Status asks every node now, at once.
func (p *Pool) Status(ctx context.Context) []builds.NodeStatus {
	return p.each(func(n *Node) builds.NodeStatus { return n.Status(ctx, nodeStatusTimeout) })
}

// RecentStatus is Status, reusing each node's good answer younger than statusTTL.
func (p *Pool) RecentStatus(ctx context.Context) []builds.NodeStatus {
	return p.each(func(n *Node) builds.NodeStatus { return n.RecentStatus(ctx, nodeStatusTimeout) })
}

func (p *Pool) each(ask func(*Node) builds.NodeStatus) []builds.NodeStatus {
	out := make([]builds.NodeStatus, len(p.nodes))
	var wg sync.WaitGroup
	for i, n := range p.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = ask(n)
		}()
	}
	wg.Wait()
	return out
}

// Addrs lists the nodes' addresses, for the log.
func (p *Pool) Addrs() string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Addr)
	}
	return strings.Join(out, ",")
}

// Close drops every node's connection.
func (p *Pool) Close() {
	for _, n := range p.nodes {
		_ = n.Close()
	}
}

// Details is Status with each node's build cache size on disk and its
// running solves, for the nodes page.
func (p *Pool) Details(ctx context.Context) []builds.NodeStatus {
	sts := p.Status(ctx)
	var wg sync.WaitGroup
	for i, n := range p.nodes {
		if !sts[i].OK {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i].DiskBytes = n.diskUsage(ctx, nodeStatusTimeout)
		}()
	}
	wg.Wait()
	return sts
}

// diskUsage sums the daemon's build cache records, or -1 when it cannot say.
func (n *Node) diskUsage(ctx context.Context, timeout time.Duration) int64 {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := n.conn(ctx)
	if err != nil {
		return -1
	}
	usage, err := c.DiskUsage(ctx)
	if err != nil {
		return -1
	}
	var total int64
	for _, u := range usage {
		total += u.Size
	}
	return total
}

// ClientTLS is the TLS configuration Manifold's connections to a tcp://
// node use (nil for a node without TLS): the builder endpoint dials the
// node with it too.
func (n *Node) ClientTLS() (*tls.Config, error) {
	if n.tls.CACert == "" && n.tls.Cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: n.tls.ServerName}
	if cfg.ServerName == "" {
		if u, err := url.Parse(n.Addr); err == nil {
			cfg.ServerName = u.Hostname()
		}
	}
	if n.tls.CACert != "" {
		pem, err := os.ReadFile(n.tls.CACert)
		if err != nil {
			return nil, fmt.Errorf("read node %s's CA certificate: %w", n.Name, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("node %s's CA certificate %s holds no PEM certificate", n.Name, n.tls.CACert)
		}
	}
	if n.tls.Cert != "" {
		cert, err := tls.LoadX509KeyPair(n.tls.Cert, n.tls.Key)
		if err != nil {
			return nil, fmt.Errorf("load node %s's client certificate: %w", n.Name, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
