package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"manifold/builds"
)

// listFlag is a repeatable flag; values may also be comma-separated when split is set.
type listFlag struct {
	vals  []string
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(s string) error {
	if l.split {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				l.vals = append(l.vals, p)
			}
		}
		return nil
	}
	l.vals = append(l.vals, s)
	return nil
}

// outputSpec is a parsed --output.
type outputSpec struct {
	format, dest, platform string
}

// parseOutput reads `type=oci,dest=F` or `type=docker,dest=F,platform=P`.
func parseOutput(s string) (*outputSpec, error) {
	o := &outputSpec{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--output %q: %q is not key=value (write type=oci,dest=FILE)", s, kv)
		}
		switch k {
		case "type":
			o.format = v
		case "dest":
			o.dest = v
		case "platform":
			o.platform = v
		default:
			return nil, fmt.Errorf("--output %q: unknown key %q (type, dest and platform are known)", s, k)
		}
	}
	if o.format != "oci" && o.format != "docker" {
		return nil, fmt.Errorf("--output %q: type must be oci or docker", s)
	}
	if o.dest == "" || o.dest == "-" {
		return nil, fmt.Errorf("--output %q: say where with dest=FILE", s)
	}
	return o, nil
}

// isGitContext says whether a build argument names a git repository rather than a folder.
func isGitContext(s string) bool {
	for _, p := range []string{"https://", "http://", "git://", "ssh://", "git@"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// build is `manifold build [flags] PATH | GIT-URL`.
func (c *client) build(ctx context.Context, args []string) error {
	fs, _ := c.flags("build")
	var file, target, output, progressMode string
	var push, noCache bool
	platforms := &listFlag{split: true}
	tags, buildArgs, labels, secrets := &listFlag{}, &listFlag{}, &listFlag{}, &listFlag{}
	for _, n := range []string{"f", "file"} {
		fs.StringVar(&file, n, "", "the Dockerfile (default PATH/Dockerfile)")
	}
	for _, n := range []string{"t", "tag"} {
		fs.Var(tags, n, "a tag, `registry/repo:tag` (repeatable)")
	}
	for _, n := range []string{"o", "output"} {
		fs.StringVar(&output, n, "", "download the result: type=oci,dest=FILE or type=docker,dest=FILE,platform=P")
	}
	fs.Var(platforms, "platform", "target platforms, comma-separated (repeatable)")
	fs.BoolVar(&push, "push", false, "push every tag once the build succeeded")
	fs.Var(buildArgs, "build-arg", "a build argument K=V (repeatable)")
	fs.StringVar(&target, "target", "", "the Dockerfile stage to build")
	fs.Var(labels, "label", "an image label K=V (repeatable)")
	fs.Var(secrets, "secret", "a build secret: id=NAME (stored on the server), or id=NAME,src=FILE / id=NAME,env=VAR to store it first (repeatable)")
	fs.BoolVar(&noCache, "no-cache", false, "do not use BuildKit's cache")
	var placement string
	fs.StringVar(&placement, "placement", "", "which nodes may build a platform: prefer-native (default), native-only or any")
	fs.StringVar(&progressMode, "progress", "auto", "auto, plain or tty")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return exitf(exitUsage, "usage: manifold build [flags] PATH | GIT-URL (one context; `manifold build -h` lists the flags)")
	}
	var out *outputSpec
	if output != "" {
		if out, err = parseOutput(output); err != nil {
			return exitf(exitUsage, "%v", err)
		}
	}
	switch progressMode {
	case "auto":
	case "plain":
		c.tty = false
	case "tty":
		c.tty = true
	default:
		return exitf(exitUsage, "--progress %q: use auto, plain or tty", progressMode)
	}
	req := map[string]any{"platforms": platforms.vals, "tags": tags.vals, "push": push, "no_cache": noCache, "target": target}
	if placement != "" {
		req["placement"] = placement // the server checks it, and says so when it is not one it knows
	}
	kv := func(flagName string, list []string) (map[string]string, error) {
		m := map[string]string{}
		for _, s := range list {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return nil, exitf(exitUsage, "--%s %q: write KEY=VALUE", flagName, s)
			}
			m[k] = v
		}
		return m, nil
	}
	if req["build_args"], err = kv("build-arg", buildArgs.vals); err != nil {
		return err
	}
	if req["labels"], err = kv("label", labels.vals); err != nil {
		return err
	}
	secretNames, secretValues, err := parseSecrets(secrets.vals, c.getenv)
	if err != nil {
		return err
	}
	req["secrets"] = secretNames
	if err := c.resolve(); err != nil {
		return err
	}
	for name, value := range secretValues {
		body, _ := json.Marshal(map[string]string{"value": value})
		resp, err := c.do(ctx, http.MethodPut, "/api/v1/secrets/"+url.PathEscape(name), bytes.NewReader(body), "application/json")
		if err != nil {
			return err
		}
		resp.Body.Close()
	}

	src := pos[0]
	var b builds.Build
	if isGitContext(src) {
		g := map[string]string{}
		u, frag, _ := strings.Cut(src, "#")
		g["url"] = u
		if frag != "" {
			ref, sub, _ := strings.Cut(frag, ":")
			g["ref"], g["subdir"] = ref, sub
		}
		req["git"] = g
		if file != "" {
			req["dockerfile_path"] = file
		}
		body, _ := json.Marshal(req)
		resp, err := c.do(ctx, http.MethodPost, "/api/v1/builds", bytes.NewReader(body), "application/json")
		if err != nil {
			return err
		}
		err = json.NewDecoder(resp.Body).Decode(&b)
		resp.Body.Close()
		if err != nil {
			return exitf(exitRefused, "the server's answer is not a build: %v", err)
		}
	} else if b, err = c.uploadBuild(ctx, src, file, req); err != nil {
		return err
	}
	buildURL := c.server + "/builds/" + b.ID
	fmt.Fprintf(c.stderr, "build %s queued: %s\n", b.ID, buildURL)

	err = c.stream(ctx, b.ID, c.tty)
	if ctx.Err() != nil {
		return c.interrupted(b.ID)
	}
	if err != nil {
		return err
	}
	var final builds.Build
	if _, err := c.getJSON(ctx, "/api/v1/builds/"+b.ID, &final); err != nil {
		return err
	}
	if final.Status != builds.StatusSucceeded {
		msg := final.Error
		if msg == "" {
			msg = "the build ended " + string(final.Status)
		}
		fmt.Fprintf(c.stderr, "%s\n", buildURL)
		return exitf(exitFailed, "build %s %s: %s", b.ID, final.Status, msg)
	}
	fmt.Fprintf(c.stdout, "%s\n%s\n", final.IndexDigest, buildURL)
	if out != nil {
		if err := c.download(ctx, b.ID, out.format, out.platform, out.dest); err != nil {
			if ctx.Err() != nil {
				return &exitError{code: exitInterrupted, err: errors.New("interrupted; the download was not finished")}
			}
			return err
		}
	}
	return nil
}

// interrupted cancels the build on the server after Ctrl-C and says so.
func (c *client) interrupted(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/builds/"+id+"/cancel", nil, "")
	if err != nil {
		return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted; canceling build %s on the server failed: %v", id, err)}
	}
	resp.Body.Close()
	return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted; build %s was canceled", id)}
}

// parseSecrets reads --secret values: id=NAME with an optional src=FILE or env=VAR.
func parseSecrets(list []string, getenv func(string) string) ([]string, map[string]string, error) {
	names := []string{}
	values := map[string]string{}
	for _, s := range list {
		var id, src, env string
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "id":
				id = v
			case "src", "source":
				src = v
			case "env":
				env = v
			default:
				return nil, nil, exitf(exitUsage, "--secret %q: unknown key %q (id, src and env are known)", s, k)
			}
		}
		if id == "" {
			return nil, nil, exitf(exitUsage, "--secret %q: name it with id=NAME", s)
		}
		switch {
		case src != "":
			b, err := os.ReadFile(src)
			if err != nil {
				return nil, nil, exitf(exitUsage, "--secret %q: %v", s, err)
			}
			values[id] = string(b)
		case env != "":
			values[id] = getenv(env)
		}
		names = append(names, id)
	}
	return names, values, nil
}

// uploadBuild packs the folder and posts it with the options as multipart.
func (c *client) uploadBuild(ctx context.Context, dir, file string, req map[string]any) (builds.Build, error) {
	var b builds.Build
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return b, exitf(exitUsage, "context %q is not a folder or a git URL", dir)
	}
	keep := []string{"Dockerfile"}
	if file != "" {
		absDir, _ := filepath.Abs(dir)
		absFile, _ := filepath.Abs(file)
		rel, err := filepath.Rel(absDir, absFile)
		if err == nil && !strings.HasPrefix(rel, "..") {
			req["dockerfile_path"] = filepath.ToSlash(rel)
			keep = []string{filepath.ToSlash(rel)}
		} else {
			text, err := os.ReadFile(file)
			if err != nil {
				return b, exitf(exitUsage, "-f %q: %v", file, err)
			}
			req["dockerfile"] = string(text)
			keep = nil
		}
	}
	tmp, err := os.CreateTemp("", "manifold-context-*.tar.gz")
	if err != nil {
		return b, exitf(exitFailed, "%v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := packContext(dir, keep, tmp)
	if err != nil {
		return b, exitf(exitUsage, "pack the context %s: %v", dir, err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return b, exitf(exitFailed, "%v", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return b, exitf(exitFailed, "%v", err)
	}
	fmt.Fprintf(c.stderr, "sending context: %d files, %s\n", n, humanBytes(size))

	opts, _ := json.Marshal(req)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	prog := c.newProgress("upload", size)
	go func() {
		err := func() error {
			w, err := mw.CreateFormField("options")
			if err != nil {
				return err
			}
			if _, err := w.Write(opts); err != nil {
				return err
			}
			w, err = mw.CreateFormFile("context", "context.tar.gz")
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, prog.reader(tmp)); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/builds", pr, mw.FormDataContentType())
	pr.CloseWithError(errors.New("request ended"))
	prog.finish()
	if err != nil {
		return b, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		return b, exitf(exitRefused, "the server's answer is not a build: %v", err)
	}
	return b, nil
}

// packContext writes dir as a gzipped tar, leaving out what its
// .dockerignore excludes (the Dockerfile named by keep and .dockerignore
// itself always go, as docker sends them). It returns the number of entries.
func packContext(dir string, keep []string, w io.Writer) (int, error) {
	var patterns []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf(".dockerignore: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return 0, fmt.Errorf(".dockerignore: %w", err)
	}
	always := map[string]bool{".dockerignore": true}
	for _, k := range keep {
		always[k] = true
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	n := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !always[rel] {
			skip, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, pipes, devices: not context
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n++
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := tw.Close(); err != nil {
		return n, err
	}
	return n, zw.Close()
}

// stream follows a build's events until done, printing them as buildctl's
// plain log, or as a compact live view on a terminal. It reconnects with
// Last-Event-ID when the stream breaks.
func (c *client) stream(ctx context.Context, id string, compact bool) error {
	var sink func(builds.Event) error
	if compact {
		v := newLiveView(c.stderr)
		sink = v.add
	} else {
		sink = builds.NewPlainLog(c.stderr).Add
	}
	var last int64
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		done, err := c.events(ctx, id, last, func(e builds.Event) error {
			if e.Seq > 0 {
				last = e.Seq
			}
			return sink(e)
		})
		if done || ctx.Err() != nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) && ee.code == exitRefused {
			return err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return exitf(exitUnreachable, "the event stream of build %s kept breaking: %v", id, lastErr)
}

// events reads one SSE connection; done is true once the done event came.
func (c *client) events(ctx context.Context, id string, after int64, on func(builds.Event) error) (bool, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/builds/"+id+"/events?after="+strconv.FormatInt(after, 10), nil, "")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	var e builds.Event
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e.Type != "" {
				e.Data = json.RawMessage(data.String())
				if err := on(e); err != nil {
					return false, err
				}
				if e.Type == builds.EventDone {
					return true, nil
				}
			}
			e = builds.Event{}
			data.Reset()
		case strings.HasPrefix(line, "id: "):
			e.Seq, _ = strconv.ParseInt(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			e.Type = builds.EventType(line[7:])
		case strings.HasPrefix(line, "data: "):
			data.WriteString(line[6:])
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, io.ErrUnexpectedEOF
}

// liveView is the compact terminal view: one line per step as it finishes,
// the running step redrawn in place, and a failing step's last lines of output.
type liveView struct {
	w     io.Writer
	steps map[string]*builds.Step
	logs  map[string][]string
	shown map[string]bool
}

func newLiveView(w io.Writer) *liveView {
	return &liveView{w: w, steps: map[string]*builds.Step{}, logs: map[string][]string{}, shown: map[string]bool{}}
}

func (v *liveView) add(e builds.Event) error {
	switch e.Type {
	case builds.EventStep:
		var se builds.StepEvent
		if err := json.Unmarshal(e.Data, &se); err != nil {
			return err
		}
		s := se.Step
		v.steps[s.Digest] = &s
		if v.shown[s.Digest] {
			return nil
		}
		switch {
		case s.Error != "":
			v.shown[s.Digest] = true
			fmt.Fprintf(v.w, "\r\033[K ✗ #%d %s\n", s.Number, s.Name)
			for _, l := range v.logs[s.Digest] {
				fmt.Fprintf(v.w, "   │ %s\n", l)
			}
			fmt.Fprintf(v.w, "   ERROR: %s\n", s.Error)
		case s.Cached:
			v.shown[s.Digest] = true
			fmt.Fprintf(v.w, "\r\033[K ✓ #%d %s  CACHED\n", s.Number, s.Name)
		case s.FinishedAt != nil:
			v.shown[s.Digest] = true
			d := 0.0
			if s.StartedAt != nil {
				d = s.FinishedAt.Sub(*s.StartedAt).Seconds()
			}
			fmt.Fprintf(v.w, "\r\033[K ✓ #%d %s  %.1fs\n", s.Number, s.Name, d)
		case s.StartedAt != nil:
			fmt.Fprintf(v.w, "\r\033[K … #%d %s", s.Number, s.Name)
		}
	case builds.EventLog:
		var le builds.LogEvent
		if err := json.Unmarshal(e.Data, &le); err != nil {
			return err
		}
		l := append(v.logs[le.Step], le.Text)
		if len(l) > 10 {
			l = l[len(l)-10:]
		}
		v.logs[le.Step] = l
	case builds.EventWarning:
		var we builds.WarningEvent
		if err := json.Unmarshal(e.Data, &we); err == nil {
			fmt.Fprintf(v.w, "\r\033[K WARNING: %s\n", strings.TrimSpace(we.Short))
		}
	case builds.EventDone:
		fmt.Fprint(v.w, "\r\033[K")
	}
	return nil
}

// download writes a build's archive to dest with a progress bar.
func (c *client) download(ctx context.Context, id, format, platform, dest string) error {
	q := url.Values{"format": {format}}
	if platform != "" {
		q.Set("platform", platform)
	}
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/builds/"+id+"/export?"+q.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp := dest + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return exitf(exitFailed, "%v", err)
	}
	prog := c.newProgress("download", resp.ContentLength)
	n, err := io.Copy(f, prog.reader(resp.Body))
	prog.finish()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		os.Remove(tmp)
		return exitf(exitFailed, "download %s: %v", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return exitf(exitFailed, "%v", err)
	}
	fmt.Fprintf(c.stderr, "wrote %s (%s)\n", dest, humanBytes(n))
	return nil
}
