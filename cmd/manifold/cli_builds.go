package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"manifold/builds"
	"manifold/builds/explore"
)

// buildsList is `manifold builds ls [--status S] [--tag T] [--limit N] [--json]`.
func (c *client) buildsList(ctx context.Context, args []string) error {
	fs, asJSON := c.flags("builds ls")
	status := fs.String("status", "", "only builds in this status (queued, running, succeeded, failed, canceled, interrupted)")
	tag := fs.String("tag", "", "only builds carrying this tag")
	limit := fs.Int("limit", 20, "at most this many builds")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return exitf(exitUsage, "usage: manifold builds ls [--status S] [--tag T] [--limit N] [--json]")
	}
	if *status != "" && !slices.Contains([]string{"queued", "running", "succeeded", "failed", "canceled", "interrupted"}, *status) {
		return exitf(exitUsage, "--status %q: use queued, running, succeeded, failed, canceled or interrupted", *status)
	}
	if *limit < 1 {
		return exitf(exitUsage, "--limit must be at least 1")
	}
	if err := c.resolve(); err != nil {
		return err
	}
	var found []json.RawMessage
	var rows []builds.Build
	before := ""
	// The API pages newest first and filters by status and tag itself (a tag
	// there also names a whole repository); the exact tag is checked here too.
	for page := 0; page < 20 && len(rows) < *limit; page++ {
		var answer struct {
			Builds []json.RawMessage `json:"builds"`
			Next   string            `json:"next"`
		}
		q := url.Values{"limit": {"100"}}
		if before != "" {
			q.Set("before", before)
		}
		if *status != "" {
			q.Set("status", *status)
		}
		if *tag != "" {
			q.Set("tag", *tag)
		}
		if _, err := c.getJSON(ctx, "/api/v1/builds?"+q.Encode(), &answer); err != nil {
			return err
		}
		for _, raw := range answer.Builds {
			var b builds.Build
			if err := json.Unmarshal(raw, &b); err != nil {
				return exitf(exitRefused, "a build in the list cannot be read: %v", err)
			}
			if *status != "" && string(b.Status) != *status {
				continue
			}
			if *tag != "" && !slices.ContainsFunc(b.Tags, func(t string) bool { return sameTag(t, *tag) }) {
				continue
			}
			if len(rows) < *limit {
				rows, found = append(rows, b), append(found, raw)
			}
		}
		if answer.Next == "" {
			break
		}
		before = answer.Next
	}
	if *asJSON {
		b, _ := json.Marshal(map[string]any{"builds": found})
		return c.printJSON(b)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tPLATFORMS\tCREATED\tDURATION\tTAGS")
	for _, b := range rows {
		dur := ""
		if b.StartedAt != nil && b.FinishedAt != nil {
			dur = b.FinishedAt.Sub(*b.StartedAt).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Status, strings.Join(b.Platforms, ","),
			b.CreatedAt.Local().Format("2006-01-02 15:04:05"), dur, strings.Join(b.Tags, ","))
	}
	return tw.Flush()
}

// oneID parses a command that takes exactly one build id.
func (c *client) oneID(name string, args []string, extra func(*flag.FlagSet)) (string, bool, error) {
	fs, asJSON := c.flags(name)
	if extra != nil {
		extra(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return "", false, err
	}
	if len(pos) != 1 {
		return "", false, exitf(exitUsage, "usage: manifold %s ID", name)
	}
	if err := c.resolve(); err != nil {
		return "", false, err
	}
	return pos[0], *asJSON, nil
}

// buildsShow is `manifold builds show ID [--json]`.
func (c *client) buildsShow(ctx context.Context, args []string) error {
	id, asJSON, err := c.oneID("builds show", args, nil)
	if err != nil {
		return err
	}
	var b builds.Build
	raw, err := c.getJSON(ctx, "/api/v1/builds/"+url.PathEscape(id), &b)
	if err != nil {
		return err
	}
	if asJSON {
		return c.printJSON(raw)
	}
	w := c.stdout
	fmt.Fprintf(w, "ID:        %s\nStatus:    %s\nURL:       %s/builds/%s\nCreated:   %s\n", b.ID, b.Status, c.server, b.ID, b.CreatedAt.Local().Format(time.RFC3339))
	if b.StartedAt != nil && b.FinishedAt != nil {
		fmt.Fprintf(w, "Duration:  %s\n", b.FinishedAt.Sub(*b.StartedAt).Round(10*time.Millisecond))
	}
	fmt.Fprintf(w, "Platforms: %s\n", strings.Join(b.Platforms, ", "))
	if len(b.Tags) > 0 {
		fmt.Fprintf(w, "Tags:      %s\n", strings.Join(b.Tags, ", "))
	}
	if b.Error != "" {
		fmt.Fprintf(w, "Error:     %s\n", b.Error)
	}
	if b.IndexDigest != "" {
		fmt.Fprintf(w, "Index:     %s\n", b.IndexDigest)
	}
	for _, m := range b.Manifests {
		fmt.Fprintf(w, "  %-16s %s  %s\n", m.Platform, m.Digest, humanBytes(m.ImageSize))
	}
	if len(b.Steps) > 0 {
		fmt.Fprintln(w, "Steps:")
		for _, s := range b.Steps {
			state := ""
			switch {
			case s.Error != "":
				state = "ERROR: " + s.Error
			case s.Cached:
				state = "CACHED"
			case s.StartedAt != nil && s.FinishedAt != nil:
				state = fmt.Sprintf("%.1fs", s.FinishedAt.Sub(*s.StartedAt).Seconds())
			}
			fmt.Fprintf(w, "  #%-3d %s  %s\n", s.Number, s.Name, state)
		}
	}
	return nil
}

// buildsLogs is `manifold builds logs ID [--follow]`.
func (c *client) buildsLogs(ctx context.Context, args []string) error {
	var follow *bool
	id, _, err := c.oneID("builds logs", args, func(f *flag.FlagSet) {
		follow = f.Bool("follow", false, "follow a running build's log until it ends")
	})
	if err != nil {
		return err
	}
	if *follow {
		s := builds.NewPlainLog(c.stdout)
		var last int64
		for attempt := 0; attempt < 10; attempt++ {
			done, err := c.events(ctx, id, last, func(e builds.Event) error {
				if e.Seq > 0 {
					last = e.Seq
				}
				return s.Add(e)
			})
			if done {
				return nil
			}
			if ctx.Err() != nil {
				return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted")}
			}
			if ee, ok := err.(*exitError); ok && ee.code == exitRefused {
				return err
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		return exitf(exitUnreachable, "the event stream of build %s kept breaking", id)
	}
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/builds/"+url.PathEscape(id)+"/log", nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(c.stdout, resp.Body)
	return err
}

// export is `manifold export ID [--platform P] [--format oci|docker] -o FILE`.
func (c *client) export(ctx context.Context, args []string) error {
	var platform, format, out *string
	id, _, err := c.oneID("export", args, func(f *flag.FlagSet) {
		platform = f.String("platform", "", "one platform only (needed for --format docker with several)")
		format = f.String("format", "oci", "oci or docker")
		o := new(string)
		f.StringVar(o, "o", "", "the file to write")
		f.StringVar(o, "output", "", "the file to write")
		out = o
	})
	if err != nil {
		return err
	}
	if *format != "oci" && *format != "docker" {
		return exitf(exitUsage, "--format %q: use oci or docker", *format)
	}
	if *out == "" {
		return exitf(exitUsage, "say where to write the archive with -o FILE")
	}
	return c.download(ctx, id, *format, *platform, *out)
}

// cancel is `manifold cancel ID`.
func (c *client) cancel(ctx context.Context, args []string) error {
	id, _, err := c.oneID("cancel", args, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/builds/"+url.PathEscape(id)+"/cancel", nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(c.stdout, "canceled %s\n", id)
	return nil
}

// inspect is `manifold inspect REF|ID [--json]`: the index and each
// platform's config, as `docker buildx imagetools inspect` shows them.
func (c *client) inspect(ctx context.Context, args []string) error {
	ref, asJSON, err := c.oneID("inspect", args, nil)
	if err != nil {
		return err
	}
	root := ""
	name := ref
	ref = strings.TrimPrefix(ref, "builds:") // the pull API's name for a build
	if !strings.ContainsAny(ref, "/:@") {
		var b builds.Build
		if _, err := c.getJSON(ctx, "/api/v1/builds/"+url.PathEscape(ref), &b); err != nil {
			return err
		}
		if b.IndexDigest == "" {
			return exitf(exitFailed, "build %s has no image (it is %s)", ref, b.Status)
		}
		root = b.IndexDigest
		name = "builds:" + b.ID
	} else {
		var rr struct {
			Remote struct {
				Digest string `json:"digest"`
			} `json:"remote"`
		}
		if _, err := c.getJSON(ctx, "/api/v1/remote?ref="+url.QueryEscape(ref), &rr); err != nil {
			return err
		}
		root = rr.Remote.Digest
	}
	var top explore.BlobView
	rawTop, err := c.getJSON(ctx, "/api/v1/blobs/"+root, &top)
	if err != nil {
		return err
	}
	type platformOut struct {
		explore.PlatformEntry
		Config json.RawMessage `json:"config,omitempty"`
	}
	var plats []platformOut
	if top.Index != nil {
		for _, p := range top.Index.Platforms {
			po := platformOut{PlatformEntry: p}
			if p.ConfigDigest != "" {
				raw, err := c.getJSON(ctx, "/api/v1/blobs/"+p.ConfigDigest, nil)
				if err != nil {
					return err
				}
				po.Config = raw
			}
			plats = append(plats, po)
		}
	}
	if asJSON {
		b, _ := json.Marshal(map[string]any{"name": name, "root": json.RawMessage(rawTop), "platforms": plats})
		return c.printJSON(b)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintf(w, "Name:\t%s\nMediaType:\t%s\nDigest:\t%s\n", name, top.MediaType, top.Digest)
	if len(plats) > 0 {
		fmt.Fprintln(w, "\nManifests:")
	}
	for _, p := range plats {
		fmt.Fprintf(w, "  Name:\t%s@%s\n  MediaType:\t%s\n  Platform:\t%s\n  Layers:\t%s\n  Size:\t%s\n", name, p.Digest, p.MediaType,
			p.Platform, strconv.Itoa(p.Layers), humanBytes(p.CompressedSize))
		for _, a := range p.Attestations {
			fmt.Fprintf(w, "  Attestation:\t%s %s\n", a.Digest, strings.Join(a.PredicateTypes, ","))
		}
		var cv explore.BlobView
		if len(p.Config) > 0 && json.Unmarshal(p.Config, &cv) == nil && cv.Config != nil {
			img := cv.Config.Image
			fmt.Fprintf(w, "  Config:\t%s\n", cv.Config.Digest)
			if len(img.Config.Entrypoint) > 0 {
				fmt.Fprintf(w, "    Entrypoint:\t%q\n", img.Config.Entrypoint)
			}
			if len(img.Config.Cmd) > 0 {
				fmt.Fprintf(w, "    Cmd:\t%q\n", img.Config.Cmd)
			}
			keys := make([]string, 0, len(img.Config.Labels))
			for k := range img.Config.Labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "    Label:\t%s=%s\n", k, img.Config.Labels[k])
			}
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

// sameTag says whether a stored (normalised) tag is the one a user wrote,
// who may leave out docker.io and library/ as docker does.
func sameTag(stored, written string) bool {
	return stored == written || stored == "docker.io/"+written || stored == "docker.io/library/"+written
}
