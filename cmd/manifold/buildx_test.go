package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"

	"manifold/builds/buildkittest"
)

// buildxCmd runs bin/buildx with its own config folder.
func buildxCmd(t *testing.T, config string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.Bin, "buildx"), args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config, "BUILDX_NO_DEFAULT_ATTESTATIONS=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBuilderEndpoint issues a builder certificate with the CLI, builds
// through --builder-addr with the real docker buildx (remote driver) and
// with BuildKit's client, and checks the handshake refuses no certificate,
// a revoked one and a viewer.
func TestBuilderEndpoint(t *testing.T) {
	if _, err := os.Stat(filepath.Join(env.Bin, "buildx")); err != nil {
		t.Fatal("bin/buildx is missing: run make test (scripts/setup.sh builds it)")
	}
	data := t.TempDir()
	cli(t, "user", "create", "--role", "builder", "--data", data, "sam")
	cli(t, "user", "create", "--role", "viewer", "--data", data, "vic")
	certs := t.TempDir()
	if out := cli(t, "builder-cert", "--user", "sam", "--days", "7", "--data", data, "--out", certs); !strings.Contains(out, "for sam, valid until") {
		t.Fatalf("builder-cert said %q", out)
	}
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if fi, err := os.Stat(filepath.Join(certs, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"builder-cert", "--user", "vic", "--data", data, "--out", t.TempDir()}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "viewer role") {
		t.Fatalf("a certificate for a viewer: %v", err)
	}
	addr, err := buildkittest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	startApp(t, data, "--buildkit", env.Addr(), "--builder-addr", addr)

	// The real docker buildx, remote driver, through the endpoint.
	config := t.TempDir()
	if out, err := buildxCmd(t, config, "create", "--name", "team", "--driver", "remote",
		"--driver-opt", "cacert="+filepath.Join(certs, "ca.pem")+",cert="+filepath.Join(certs, "cert.pem")+",key="+filepath.Join(certs, "key.pem"),
		"tcp://"+addr); err != nil {
		t.Fatalf("buildx create: %v\n%s", err, out)
	}
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM busybox:1\nRUN echo via buildx > /via\n"), 0o644)
	dest := filepath.Join(t.TempDir(), "out.oci.tar")
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--platform", "linux/amd64,linux/arm64", "--progress", "plain",
		"--output", "type=oci,dest="+dest, ctxDir); err != nil {
		t.Fatalf("buildx build through the endpoint: %v\n%s", err, out)
	}
	if raw := sh(t, "skopeo", "inspect", "--raw", "oci-archive:"+dest); !strings.Contains(raw, "linux") {
		t.Fatalf("buildx's archive: %s", raw)
	}

	// BuildKit's own client with the same certificate; then refusals.
	dial := func(opts ...bkclient.ClientOpt) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := bkclient.New(ctx, "tcp://"+addr, append([]bkclient.ClientOpt{bkclient.WithServerConfig("", filepath.Join(certs, "ca.pem"))}, opts...)...)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.ListWorkers(ctx)
		return err
	}
	if err := dial(bkclient.WithCredentials(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))); err != nil {
		t.Fatalf("sam's certificate: %v", err)
	}
	if err := dial(); err == nil {
		t.Fatal("no certificate was let through")
	}
	// Revoked with the CLI: the next handshake refuses it, and buildx fails.
	issued := cli(t, "builder-cert", "--user", "sam", "--data", data, "--out", certs)
	serial := strings.Fields(issued)[1]
	if err := dial(bkclient.WithCredentials(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))); err != nil {
		t.Fatalf("sam's new certificate: %v", err)
	}
	if out := cli(t, "builder-cert", "revoke", "--data", data, serial); !strings.Contains(out, "revoked "+serial) {
		t.Fatalf("revoke said %q", out)
	}
	if err := dial(bkclient.WithCredentials(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))); err == nil {
		t.Fatal("a revoked certificate was let through")
	}
	if out, err := buildxCmd(t, config, "build", "--builder", "team", "--progress", "plain", ctxDir); err == nil {
		t.Fatalf("buildx with a revoked certificate built:\n%s", out)
	}
}
