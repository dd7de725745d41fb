package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"manifold/builds/accounts"
	"manifold/builds/registry"
	"manifold/db"
)

// openAccounts opens the data folder's database and key for the user and token commands.
func openAccounts(ctx context.Context, data, keyFile string) (*accounts.Service, func(), error) {
	data, err := privateDataDir(data, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, err
	}
	database, err := db.Open(ctx, filepath.Join(data, "manifold.db"))
	if err != nil {
		return nil, nil, err
	}
	if keyFile == "" {
		keyFile = filepath.Join(data, "secret.key")
	}
	key, err := registry.LoadKey(keyFile)
	if err != nil {
		database.Close()
		return nil, nil, err
	}
	regs, err := registry.NewCredentials(db.NewCredentials(database), key)
	if err != nil {
		database.Close()
		return nil, nil, err
	}
	return accounts.New(db.NewAccounts(database), regs, accounts.Config{}), func() { database.Close() }, nil
}

// userCommand is `manifold user create [--admin|--role R] [--password-stdin] NAME`.
func userCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: manifold user create [--admin | --role viewer|builder|admin] [--password-stdin] NAME")
	}
	fs := flag.NewFlagSet("manifold user create", flag.ContinueOnError)
	fs.SetOutput(stdout)
	data := fs.String("data", envOr(getenv, "MANIFOLD_DATA", "data"), "data folder (MANIFOLD_DATA)")
	keyFile := fs.String("key-file", getenv("MANIFOLD_KEY_FILE"), "key file (MANIFOLD_KEY_FILE)")
	admin := fs.Bool("admin", false, "make the user an admin")
	role := fs.String("role", "builder", "viewer, builder or admin")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input instead of making one")
	if err := fs.Parse(reorder(args[1:])); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give exactly one user name: manifold user create [--admin] NAME")
	}
	if *admin {
		*role = "admin"
	}
	r, err := accounts.ParseRole(*role)
	if err != nil {
		return err
	}
	password, generated := "", false
	if *fromStdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read the password from standard input: %v", err)
		}
		password = strings.TrimRight(line, "\r\n")
	} else if piped := pipedLine(2 * time.Second); piped != "" {
		password = piped // `echo pw | manifold user create NAME` works without the flag too
	} else {
		password, generated = accounts.RandomSecret()[:20], true
	}
	acc, closeFn, err := openAccounts(ctx, *data, *keyFile)
	if err != nil {
		return err
	}
	defer closeFn()
	u, err := acc.CreateUser(ctx, fs.Arg(0), password, r)
	if err != nil {
		return err
	}
	if err := acc.Audit(ctx, "cli", "user.create", u.Name, "local", "role "+string(u.Role)); err != nil {
		return fmt.Errorf("user %s was created, but the audit log could not record it: %w", u.Name, err)
	}
	fmt.Fprintf(stdout, "created %s user %s\n", u.Role, u.Name)
	if generated {
		fmt.Fprintf(stdout, "password: %s\n", password)
	}
	return nil
}

// tokenCommand is `manifold token create --user NAME --scope read|build|admin [--name N]`.
func tokenCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: manifold token create --user NAME --scope read|build|admin [--name N]")
	}
	fs := flag.NewFlagSet("manifold token create", flag.ContinueOnError)
	fs.SetOutput(stdout)
	data := fs.String("data", envOr(getenv, "MANIFOLD_DATA", "data"), "data folder (MANIFOLD_DATA)")
	keyFile := fs.String("key-file", getenv("MANIFOLD_KEY_FILE"), "key file (MANIFOLD_KEY_FILE)")
	user := fs.String("user", "", "whose token")
	scope := fs.String("scope", "read", "read, build or admin")
	name := fs.String("name", "cli", "what the token is for")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	acc, closeFn, err := openAccounts(ctx, *data, *keyFile)
	if err != nil {
		return err
	}
	defer closeFn()
	secret, t, err := acc.CreateToken(ctx, *user, *name, *scope)
	if err != nil {
		return err
	}
	if err := acc.Audit(ctx, "cli", "token.create", t.Name, "local", "user "+*user+" scope "+t.Scope); err != nil {
		return fmt.Errorf("the token was created, but the audit log could not record it: %w", err)
	}
	fmt.Fprintln(stdout, secret)
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// reorder moves flags before the positional name, so `user create NAME --admin` works too.
func reorder(args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && (a == "--role" || a == "-role" || a == "--data" || a == "-data" || a == "--key-file" || a == "-key-file") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		rest = append(rest, a)
	}
	return append(flags, rest...)
}

// pipedLine reads a first line from standard input when it is a pipe or a
// file (never a terminal), waiting at most wait; "" when there is none.
func pipedLine(wait time.Duration) string {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice != 0 {
		return ""
	}
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		got <- strings.TrimRight(line, "\r\n")
	}()
	select {
	case l := <-got:
		return l
	case <-time.After(wait):
		return ""
	}
}
