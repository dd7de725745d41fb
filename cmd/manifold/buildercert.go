package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"manifold/builds/builder"
	"manifold/db"
)

// builderCertCommand is `manifold builder-cert --user NAME [--days N] [--out DIR]`
// (a client certificate for `docker buildx` through --builder-addr) and
// `manifold builder-cert revoke SERIAL`.
func builderCertCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	revoke := len(args) > 0 && args[0] == "revoke"
	if revoke {
		args = args[1:]
	}
	fs := flag.NewFlagSet("manifold builder-cert", flag.ContinueOnError)
	fs.SetOutput(stdout)
	data := fs.String("data", envOr(getenv, "MANIFOLD_DATA", "data"), "data folder (MANIFOLD_DATA)")
	user := fs.String("user", "", "whose certificate (a builder or admin)")
	days := fs.Int("days", 90, "days the certificate is valid (1 to 366)")
	out := fs.String("out", ".", "folder to write ca.pem, cert.pem and key.pem into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	acc, closeAcc, err := openAccounts(ctx, *data, getenv("MANIFOLD_KEY_FILE"))
	if err != nil {
		return err
	}
	defer closeAcc()
	dir, err := privateDataDir(*data, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	database, err := db.Open(ctx, filepath.Join(dir, "manifold.db"))
	if err != nil {
		return err
	}
	defer database.Close()
	certs := db.NewBuilderCerts(database)
	if revoke {
		if fs.NArg() != 1 {
			return errors.New("usage: manifold builder-cert revoke SERIAL")
		}
		ok, err := certs.RevokeCert(ctx, fs.Arg(0), "", time.Now().UTC())
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no certificate %s that is not revoked already; `manifold builder-cert` lists none by that serial", fs.Arg(0))
		}
		fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
		return acc.Audit(ctx, "cli", "builder-cert.revoke", fs.Arg(0), "local", "")
	}
	if *user == "" {
		return errors.New("usage: manifold builder-cert --user NAME [--days N] [--out DIR]")
	}
	ca, err := builder.OpenCA(dir)
	if err != nil {
		return err
	}
	svc := &builder.Service{CA: ca, Certs: certs, Users: acc}
	c, err := svc.Issue(ctx, *user, *days)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	for name, body := range map[string][]byte{"ca.pem": ca.CertPEM(), "cert.pem": c.CertPEM, "key.pem": c.KeyPEM} {
		if err := os.WriteFile(filepath.Join(*out, name), body, 0o600); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(*out, name), 0o600); err != nil {
			return err
		}
	}
	if err := acc.Audit(ctx, "cli", "builder-cert.create", c.Serial, "local", "user "+*user); err != nil {
		return fmt.Errorf("the certificate was made, but the audit log could not record it: %w", err)
	}
	fmt.Fprintf(stdout, "certificate %s for %s, valid until %s, in %s (ca.pem, cert.pem, key.pem)\n", c.Serial, *user, c.ExpiresAt.Format(time.DateOnly), *out)
	return nil
}
