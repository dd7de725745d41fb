package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
)

// Exit codes of the client commands (README, "Command line").
const (
	exitFailed      = 1   // the build failed, was canceled or interrupted; or another command failed
	exitUsage       = 2   // a flag or argument is wrong
	exitRefused     = 3   // the server answered with an error (its sentence is printed)
	exitUnreachable = 4   // no server to talk to: not logged in, or it cannot be reached
	exitInterrupted = 130 // Ctrl-C: the build was canceled on the server too
)

// exitError is an error that ends the program with a chosen exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the code main exits with for err.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// client is one run of a client command: where it reads and writes, and the server it talks to.
type client struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// tty says stderr is a terminal: progress bars and the compact live view.
	tty    bool
	server string
	token  string
	http   *http.Client
}

// newCLI is a client command's state with the process's own standard streams.
func newCLI(getenv func(string) string, stdout io.Writer) *client {
	return &client{getenv: getenv, stdin: os.Stdin, stdout: stdout, stderr: os.Stderr,
		tty: term.IsTerminal(int(os.Stderr.Fd())), http: &http.Client{}}
}

// clientCommands are the commands that talk to a server over its API.
var clientCommands = map[string]bool{"login": true, "logout": true, "build": true, "builds": true,
	"export": true, "cancel": true, "inspect": true}

// runClient runs one client command.
func (c *client) run(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "login":
		return c.login(ctx, args)
	case "logout":
		return c.logout(args)
	case "build":
		return c.build(ctx, args)
	case "builds":
		if len(args) == 0 {
			return exitf(exitUsage, "usage: manifold builds ls|show|logs …")
		}
		switch args[0] {
		case "ls", "list":
			return c.buildsList(ctx, args[1:])
		case "show":
			return c.buildsShow(ctx, args[1:])
		case "logs", "log":
			return c.buildsLogs(ctx, args[1:])
		}
		return exitf(exitUsage, "unknown command \"builds %s\"; use ls, show or logs", args[0])
	case "export":
		return c.export(ctx, args)
	case "cancel":
		return c.cancel(ctx, args)
	case "inspect":
		return c.inspect(ctx, args)
	}
	return exitf(exitUsage, "unknown command %q", cmd)
}

// flags is a flag set for a client command with --server, --token and --json.
func (c *client) flags(name string) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.server, "server", "", "Manifold's URL (MANIFOLD_SERVER; default: the one `manifold login` stored)")
	fs.StringVar(&c.token, "token", "", "API token (MANIFOLD_TOKEN; default: the one `manifold login` stored)")
	asJSON := fs.Bool("json", false, "print JSON as the API answers it")
	return fs, asJSON
}

// parse parses flags that may come before and after positional arguments,
// as docker's commands allow (`manifold build . -t app`).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &exitError{code: 0, err: err}
			}
			return nil, &exitError{code: exitUsage, err: err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// stored is what `manifold login` keeps in the user's config folder.
type stored struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// configPath is $XDG_CONFIG_HOME/manifold/config.json (else ~/.config/…).
func (c *client) configPath() (string, error) {
	dir := c.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := c.getenv("HOME")
		if home == "" {
			return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set, so there is no config folder")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "manifold", "config.json"), nil
}

func (c *client) readStored() stored {
	var s stored
	p, err := c.configPath()
	if err != nil {
		return s
	}
	b, err := os.ReadFile(p)
	if err == nil {
		_ = json.Unmarshal(b, &s)
	}
	return s
}

// resolve fills server and token: flag, then environment, then the stored login.
func (c *client) resolve() error {
	st := c.readStored()
	if c.server == "" {
		c.server = c.getenv("MANIFOLD_SERVER")
	}
	if c.token == "" {
		c.token = c.getenv("MANIFOLD_TOKEN")
	}
	if c.server == "" {
		c.server = st.Server
		if c.token == "" && st.Server != "" {
			c.token = st.Token
		}
	} else if c.token == "" && strings.TrimRight(st.Server, "/") == strings.TrimRight(c.server, "/") {
		c.token = st.Token
	}
	if c.server == "" {
		return exitf(exitUnreachable, "no server: run `manifold login URL`, or pass --server or set MANIFOLD_SERVER")
	}
	u, err := url.Parse(c.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return exitf(exitUsage, "server %q is not an http:// or https:// URL", c.server)
	}
	c.server = strings.TrimRight(c.server, "/")
	return nil
}

// apiError is the API's error body.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// do sends a request to the server; a non-2xx answer becomes an error with
// the server's sentence (exit 3), a failed connection exit 4.
func (c *client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, body)
	if err != nil {
		return nil, exitf(exitUsage, "%v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &exitError{code: exitInterrupted, err: errors.New("interrupted")}
		}
		return nil, exitf(exitUnreachable, "cannot reach %s: %v", c.server, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var ae apiError
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			return nil, exitf(exitRefused, "%s", ae.Error)
		}
		return nil, exitf(exitRefused, "%s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// getJSON decodes a GET answer into v and returns the raw bytes too.
func (c *client) getJSON(ctx context.Context, path string, v any) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, exitf(exitUnreachable, "read the answer of %s: %v", path, err)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, exitf(exitRefused, "the answer of %s is not the JSON expected: %v", path, err)
		}
	}
	return b, nil
}

// login is `manifold login URL [--token-stdin]`.
func (c *client) login(ctx context.Context, args []string) error {
	fs, _ := c.flags("login")
	fromStdin := fs.Bool("token-stdin", false, "read the token from standard input")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return exitf(exitUsage, "usage: manifold login [--token-stdin] URL")
	}
	c.server = pos[0]
	if c.token == "" {
		if !*fromStdin {
			if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				fmt.Fprint(c.stderr, "API token (make one on the account page): ")
				b, err := term.ReadPassword(int(f.Fd()))
				fmt.Fprintln(c.stderr)
				if err != nil {
					return exitf(exitUsage, "read the token: %v", err)
				}
				c.token = string(b)
			} else {
				return exitf(exitUsage, "standard input is not a terminal: pass the token with --token-stdin")
			}
		} else {
			line, err := bufio.NewReader(c.stdin).ReadString('\n')
			if err != nil && line == "" {
				return exitf(exitUsage, "no token on standard input")
			}
			c.token = line
		}
	}
	c.token = strings.TrimSpace(c.token)
	if err := c.resolve(); err != nil {
		return err
	}
	var me map[string]any
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.getJSON(ctx, "/api/v1/me", &me); err != nil {
		return err
	}
	p, err := c.configPath()
	if err != nil {
		return exitf(exitFailed, "%v", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return exitf(exitFailed, "%v", err)
	}
	b, _ := json.MarshalIndent(stored{Server: c.server, Token: c.token}, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return exitf(exitFailed, "%v", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an older file's mode
		return exitf(exitFailed, "%v", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return exitf(exitFailed, "%v", err)
	}
	name, _ := me["name"].(string)
	if name == "" {
		name, _ = me["user"].(string)
	}
	fmt.Fprintf(c.stdout, "Logged in to %s%s; saved in %s\n", c.server, map[bool]string{true: "", false: " as " + name}[name == ""], p)
	return nil
}

// logout is `manifold logout`: forget the stored server and token.
func (c *client) logout(args []string) error {
	fs, _ := c.flags("logout")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	p, err := c.configPath()
	if err != nil {
		return exitf(exitFailed, "%v", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return exitf(exitFailed, "%v", err)
	}
	fmt.Fprintln(c.stdout, "Logged out; removed", p)
	return nil
}

// printJSON writes raw API JSON indented.
func (c *client) printJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		_, err = c.stdout.Write(b)
		return err
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	_, err := fmt.Fprintln(c.stdout, string(out))
	return err
}

// progress draws a byte counter as a bar on a terminal, or nothing.
type progress struct {
	w      io.Writer
	label  string
	total  int64
	done   int64
	last   time.Time
	active bool
}

func (c *client) newProgress(label string, total int64) *progress {
	return &progress{w: c.stderr, label: label, total: total, active: c.tty}
}

func (p *progress) add(n int) {
	p.done += int64(n)
	if p.active && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
}

func (p *progress) draw() {
	const width = 30
	bar := strings.Repeat("=", width)
	pct := 100.0
	if p.total > 0 {
		pct = float64(p.done) * 100 / float64(p.total)
		n := int(float64(width) * float64(p.done) / float64(p.total))
		n = max(0, min(n, width))
		bar = strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	}
	fmt.Fprintf(p.w, "\r%s [%s] %5.1f%% %s", p.label, bar, pct, humanBytes(p.done))
}

// finish draws the final state (also when not a terminal: one line).
func (p *progress) finish() {
	if p.active {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

// reader counts what passes through r.
func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r, p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(n)
	return n, err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
