package builder_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"

	"manifold/builds/builder"
	"manifold/builds/buildkittest"
)

type memCerts struct {
	mu sync.Mutex
	m  map[string]builder.Issued
}

func (c *memCerts) SaveCert(_ context.Context, i builder.Issued) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]builder.Issued{}
	}
	c.m[i.Serial] = i
	return nil
}

func (c *memCerts) Cert(_ context.Context, serial string) (builder.Issued, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.m[serial]
	return i, ok, nil
}

func (c *memCerts) ListCerts(context.Context, string) ([]builder.Issued, error) { return nil, nil }

func (c *memCerts) RevokeCert(_ context.Context, serial, _ string, at time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.m[serial]
	i.RevokedAt = &at
	c.m[serial] = i
	return ok, nil
}

type usersFunc func(string) error

func (f usersFunc) MayBuild(_ context.Context, u string) error { return f(u) }

// TestEndpointPassesBuildKitBehindMutualTLS runs a real solve through the
// endpoint with a certificate the CA issued and recorded, and checks the
// handshake refuses every other: none, not recorded, revoked, expired, and
// one whose user may not build.
func TestEndpointPassesBuildKitBehindMutualTLS(t *testing.T) {
	env, err := buildkittest.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	dir := t.TempDir()
	ca, err := builder.OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "builder-ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v %v", fi, err)
	}
	again, err := builder.OpenCA(dir)
	if err != nil || string(again.CertPEM()) != string(ca.CertPEM()) {
		t.Fatalf("the CA was not kept: %v", err)
	}
	certs := &memCerts{}
	ep, err := builder.NewEndpoint(builder.EndpointConfig{CA: ca, Certs: certs, Backend: env.Addr(), Users: usersFunc(func(u string) error {
		if u == "viewer" {
			return errors.New("viewer has the viewer role")
		}
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ep.Serve(ctx, l)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	files := func(name string, i builder.Issued) (string, string) {
		cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		os.WriteFile(cert, i.CertPEM, 0o600)
		os.WriteFile(key, i.KeyPEM, 0o600)
		return cert, key
	}
	dial := func(opts ...client.ClientOpt) error {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		c, err := client.New(cctx, "tcp://"+l.Addr().String(), append([]client.ClientOpt{client.WithServerConfig("", caFile)}, opts...)...)
		if err != nil {
			return err
		}
		defer c.Close()
		ws, err := c.ListWorkers(cctx)
		if err == nil && len(ws) == 0 {
			err = errors.New("no workers")
		}
		return err
	}

	sam, err := ca.Issue("sam", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs.SaveCert(ctx, sam)
	cert, key := files("sam", sam)
	if err := dial(client.WithCredentials(cert, key)); err != nil {
		t.Fatalf("sam's certificate: %v", err)
	}
	// A solve, with its session and status streams, passes through.
	c, err := client.New(ctx, "tcp://"+l.Addr().String(), client.WithServerConfig("", caFile), client.WithCredentials(cert, key))
	if err != nil {
		t.Fatal(err)
	}
	def, err := llb.Image("docker.io/library/busybox:1").Run(llb.Shlex("sh -c 'echo through the endpoint'")).Root().Marshal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *client.SolveStatus)
	var logs strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range ch {
			for _, l := range st.Logs {
				logs.Write(l.Data)
			}
		}
	}()
	if _, err := c.Solve(ctx, def, client.SolveOpt{}, ch); err != nil {
		t.Fatalf("solve through the endpoint: %v", err)
	}
	<-done
	c.Close()
	if !strings.Contains(logs.String(), "through the endpoint") {
		t.Fatalf("the solve's log did not come through: %q", logs.String())
	}

	if err := dial(); err == nil {
		t.Error("no client certificate was let through")
	}
	stray, _ := ca.Issue("sam", time.Hour) // signed, never recorded
	if err := dial(client.WithCredentials(files("stray", stray))); err == nil {
		t.Error("a certificate this Manifold did not record was let through")
	}
	expired, _ := builder.IssueBetween(ca, "sam", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	certs.SaveCert(ctx, expired)
	if err := dial(client.WithCredentials(files("expired", expired))); err == nil {
		t.Error("an expired certificate was let through")
	}
	viewer, _ := ca.Issue("viewer", time.Hour)
	certs.SaveCert(ctx, viewer)
	if err := dial(client.WithCredentials(files("viewer", viewer))); err == nil {
		t.Error("a user who may not build was let through")
	}
	certs.RevokeCert(ctx, sam.Serial, "sam", time.Now())
	if err := dial(client.WithCredentials(cert, key)); err == nil {
		t.Error("a revoked certificate was let through")
	}
}
