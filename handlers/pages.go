package handlers

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/templates"
)

// maxFormField bounds each text field of the new-build form.
const maxFormField = 2 << 20

// failedOutputLines is how many lines of a failing step the build page shows.
const failedOutputLines = 20

func render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	return c.Render(r.Context(), w)
}

// fillPlatforms sets the form's platform checkboxes from what the nodes report.
func (h *Handlers) fillPlatforms(r *http.Request, v *templates.NewBuildView, checked []string) {
	avail, down := h.Builds.Platforms(r.Context())
	v.Unreachable = down
	if checked == nil {
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			if slices.Contains(avail, p) {
				checked = append(checked, p)
			}
		}
		if len(checked) == 0 && len(avail) > 0 {
			checked = avail[:1]
		}
	}
	for _, p := range avail {
		v.Platforms = append(v.Platforms, templates.PlatformChoice{Name: p, Checked: slices.Contains(checked, p)})
	}
}

// NewBuildPage answers GET /: the new-build form with the example Dockerfile,
// or, with ?from=<id>, prefilled with that build's inputs ("Edit and rebuild").
func (h *Handlers) NewBuildPage(w http.ResponseWriter, r *http.Request) error {
	v := templates.NewBuildView{Dockerfile: templates.ExampleDockerfile}
	var checked []string
	if from := r.URL.Query().Get("from"); from != "" {
		b, err := h.Builds.Get(r.Context(), from)
		if err != nil {
			return err
		}
		v = formFromBuild(b)
		checked = b.Platforms
	}
	h.fillPlatforms(r, &v, checked)
	return render(w, r, http.StatusOK, templates.NewBuildPage(v))
}

func formFromBuild(b *builds.Build) templates.NewBuildView {
	v := templates.NewBuildView{
		Dockerfile:     b.Dockerfile,
		BuildArgs:      strings.Join(templates.KeyValueLines(b.BuildArgs), "\n"),
		Labels:         strings.Join(templates.KeyValueLines(b.Labels), "\n"),
		Target:         b.Target,
		NoCache:        b.NoCache,
		Placement:      b.Placement,
		DockerfilePath: b.DockerfilePath,
		Secrets:        strings.Join(b.Secrets, " "),
	}
	if b.Git != nil {
		v.GitURL, v.GitRef, v.GitSubdir = b.Git.URL, b.Git.Ref, b.Git.Subdir
	}
	if b.Context.Type == "upload" {
		v.ContextFrom = b.ID
		v.ContextFromInfo = fmt.Sprintf("the context uploaded for build %s (%s)", b.ID, templates.ContextSummary(b))
	}
	return v
}

// CreateBuildForm answers POST /builds from the form: 303 to the new build, or
// the form again with the user's input and what to fix.
func (h *Handlers) CreateBuildForm(w http.ResponseWriter, r *http.Request) error {
	v, req, err := h.readForm(w, r)
	if err == nil {
		var b *builds.Build
		if b, err = h.start(r, req); err == nil {
			http.Redirect(w, r, "/builds/"+b.ID, http.StatusSeeOther)
			return nil
		}
	}
	if builds.ErrorKind(err) != builds.EInvalid {
		return err
	}
	v.Error = builds.ErrorMessage(err)
	h.fillPlatforms(r, &v, nonNilStrings(req.Platforms))
	return render(w, r, http.StatusBadRequest, templates.NewBuildPage(v))
}

// readForm streams the multipart form (or reads an urlencoded one): text
// fields first, then an archive or a folder's files straight into the store.
func (h *Handlers) readForm(w http.ResponseWriter, r *http.Request) (templates.NewBuildView, builds.Request, error) {
	v, req, err := h.readFormFields(w, r)
	req.Upload, err = h.keepUpload(req.Upload, err)
	return v, req, err
}

func (h *Handlers) readFormFields(w http.ResponseWriter, r *http.Request) (templates.NewBuildView, builds.Request, error) {
	var req builds.Request
	limits := h.Builds.ContextLimits()
	r.Body = http.MaxBytesReader(w, r.Body, limits.MaxBytes+16<<20)
	fields := map[string][]string{}
	if err := readFormParts(h, r, fields, &req); err != nil {
		return formView(fields), req, err
	}
	v := formView(fields)
	req.Dockerfile = v.Dockerfile
	req.Platforms = fields["platform"]
	req.Target, req.NoCache, req.DockerfilePath, req.Placement = v.Target, v.NoCache, v.DockerfilePath, v.Placement
	for _, n := range strings.Fields(strings.ReplaceAll(v.Secrets, ",", " ")) {
		req.Secrets = append(req.Secrets, n)
	}
	var err error
	if req.BuildArgs, err = parseKeyValues("build arg", v.BuildArgs); err != nil {
		return v, req, err
	}
	if req.Labels, err = parseKeyValues("label", v.Labels); err != nil {
		return v, req, err
	}
	if v.GitURL != "" {
		req.Git = &builds.GitSource{URL: v.GitURL, Ref: v.GitRef, Subdir: v.GitSubdir}
	} else if v.GitRef != "" || v.GitSubdir != "" {
		return v, req, builds.CodeErrorf(builds.EInvalid, "invalid_git", "a git ref or subfolder needs the repository URL too")
	}
	if req.Upload == nil && v.ContextFrom != "" {
		from, err := h.Builds.Get(r.Context(), v.ContextFrom)
		if err != nil {
			return v, req, builds.CodeErrorf(builds.EInvalid, "invalid_context", "the build %q whose context was to be reused is gone", v.ContextFrom)
		}
		if from.Context.Type == "upload" {
			req.Upload = &builds.Upload{Digest: from.Context.Digest, Size: from.Context.Size}
			v.ContextFromInfo = fmt.Sprintf("the context uploaded for build %s (%s)", from.ID, templates.ContextSummary(from))
		}
	}
	if req.Upload != nil && req.Upload.Fresh {
		v.ContextFrom = "" // a new upload replaces the reused one; it is gone if the form comes back
	}
	return v, req, nil
}

// readFormParts reads the form's fields into fields and its archive or folder
// into the store; it stops at the first error, keeping what it read.
func readFormParts(h *Handlers, r *http.Request, fields map[string][]string, req *builds.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form cannot be read: %v", err)
		}
		var folder *builds.FolderUpload
		defer func() {
			if folder != nil {
				folder.Abort()
			}
		}()
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return multipartError(err)
			}
			name := part.FormName()
			_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			filename := params["filename"] // the browser's relative path for a folder; part.FileName() would cut it
			switch {
			case name == "context" && filename != "":
				if req.Upload != nil {
					return builds.CodeErrorf(builds.EInvalid, "invalid_context", "choose an archive or a folder, not both")
				}
				up, err := h.Builds.IngestContext(r.Context(), part)
				if err != nil {
					return err
				}
				req.Upload = &up
			case name == "folder" && filename != "":
				if req.Upload != nil {
					return builds.CodeErrorf(builds.EInvalid, "invalid_context", "choose an archive or a folder, not both")
				}
				if folder == nil {
					if folder, err = h.Builds.NewFolderUpload(); err != nil {
						return err
					}
				}
				if err := folder.Add(filename, part); err != nil {
					return err
				}
			case name == "context" || name == "folder":
				// an empty file input
			default:
				var buf bytes.Buffer
				n, err := io.Copy(&buf, io.LimitReader(part, maxFormField+1))
				if err != nil {
					return multipartError(err)
				}
				if n > maxFormField {
					return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form field %q is over %d bytes", name, maxFormField)
				}
				fields[name] = append(fields[name], buf.String())
			}
		}
		if folder != nil {
			up, err := folder.Finish(r.Context())
			folder = nil
			if err != nil {
				return err
			}
			req.Upload = &up
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form cannot be read: %v", err)
		}
		for k, vs := range r.PostForm {
			fields[k] = vs
		}
	}
	return nil
}

// formView is the form as the user filled it in.
func formView(fields map[string][]string) templates.NewBuildView {
	get := func(k string) string {
		if vs := fields[k]; len(vs) > 0 {
			return strings.ReplaceAll(vs[0], "\r\n", "\n")
		}
		return ""
	}
	return templates.NewBuildView{
		Dockerfile: get("dockerfile"), BuildArgs: get("build_args"), Labels: get("labels"),
		Target: strings.TrimSpace(get("target")), NoCache: get("no_cache") != "", Placement: get("placement"),
		DockerfilePath: strings.TrimSpace(get("dockerfile_path")),
		GitURL:         strings.TrimSpace(get("git_url")), GitRef: strings.TrimSpace(get("git_ref")), GitSubdir: strings.TrimSpace(get("git_subdir")),
		ContextFrom: get("context_from"),
		Secrets:     strings.TrimSpace(get("secrets")),
	}
}

// parseKeyValues reads KEY=value lines; blank lines are skipped.
func parseKeyValues(what, text string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, builds.CodeErrorf(builds.EInvalid, "invalid_form", "%s line %d %q is not KEY=value", what, i+1, line)
		}
		out[strings.TrimSpace(k)] = val
	}
	return out, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// BuildsPage answers GET /builds: the history, a page at a time.
func (h *Handlers) BuildsPage(w http.ResponseWriter, r *http.Request) error {
	opt, err := listOptions(r.URL.Query())
	if err != nil {
		return err
	}
	list, err := h.Builds.List(r.Context(), opt)
	if err != nil {
		return err
	}
	v := templates.BuildsView{Builds: list, Now: time.Now(), Filter: opt.Filter, Platforms: h.platformChoices(r)}
	if len(list) == opt.Limit {
		v.Next = list[len(list)-1].ID
	}
	return render(w, r, http.StatusOK, templates.BuildsPage(v))
}

// BuildPage answers GET /builds/{id}.
func (h *Handlers) BuildPage(w http.ResponseWriter, r *http.Request) error {
	b, err := h.Builds.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	sum, err := h.Builds.LogSummary(r.Context(), b)
	if err != nil {
		return err
	}
	v := templates.BuildView{Build: b, Now: time.Now(), QueuePosition: h.Builds.QueuePosition(b.ID),
		Warnings: sum.Warnings, FailedOutput: sum.FailedOutput, LastSeq: sum.LastSeq}
	if v.StepLogs, err = h.stepLogs(r, b, sum); err != nil {
		return err
	}
	v.Timeline = templates.BuildTimeline(b, v.Now)
	v.Emulation = templates.BuildEmulation(b)
	v.Advice = templates.BuildAdvice(b, v.Emulation)
	v.Buildx = templates.BuildxCommand(b)
	if b.ErrorLine > 0 && b.Dockerfile != "" {
		v.DockerfileLines = dockerfileExcerpt(b.Dockerfile, b.ErrorLine)
	}
	if b.Status == builds.StatusSucceeded {
		if v.Downloads, err = h.Content.Downloads(r.Context(), b.ID); err != nil {
			return err
		}
		for i, d := range v.Downloads {
			v.Downloads[i].URL = exportURL(b.ID, d.Format, d.Platform)
		}
		v.Pulls = templates.PullCommands(r.Host, b)
		v.Copies = templates.CopyCommands(r.Host, b)
	}
	return render(w, r, http.StatusOK, templates.BuildPage(v))
}

// Log lines that come with the build page: all of a small log, else the
// open steps' (running and failed) up to a bound; the rest load when opened.
const (
	inlineLogLines = 1000
	inlineStepMax  = 2000
)

// stepLogs makes the log viewer's steps.
func (h *Handlers) stepLogs(r *http.Request, b *builds.Build, sum builds.LogSummary) ([]templates.StepLogView, error) {
	total := 0
	for _, n := range sum.Counts {
		total += n
	}
	var small map[int][]builds.LogLine
	if total <= inlineLogLines {
		var ok bool
		var err error
		if small, ok, err = h.Builds.SmallLog(r.Context(), b.ID, inlineLogLines); err != nil {
			return nil, err
		} else if !ok {
			small = nil // it grew since it was counted: load it like a large one
		}
	}
	out := make([]templates.StepLogView, 0, len(b.Steps))
	for _, s := range b.Steps {
		sl := templates.StepLogView{Step: s, Count: sum.Counts[s.Number],
			Open: s.Error != "" || (s.StartedAt != nil && s.FinishedAt == nil && !b.Status.Final())}
		if small != nil {
			sl.Lines = small[s.Number]
			out = append(out, sl)
			continue
		}
		inline := sl.Count == 0 || (sl.Open && sl.Count <= inlineStepMax)
		sl.Lazy = !inline
		if inline && sl.Count > 0 {
			lines, err := h.Builds.StepLog(r.Context(), b.ID, s.Number, 0, inlineStepMax)
			if err != nil {
				return nil, err
			}
			sl.Lines = lines
		}
		out = append(out, sl)
	}
	return out, nil
}

// dockerfileExcerpt numbers the lines around the failing one, marking it.
func dockerfileExcerpt(df string, line int) []templates.DockerfileLine {
	lines := strings.Split(strings.TrimRight(df, "\n"), "\n")
	from, to := max(1, line-4), min(len(lines), line+4)
	var out []templates.DockerfileLine
	for n := from; n <= to; n++ {
		out = append(out, templates.DockerfileLine{N: n, Text: lines[n-1], Marked: n == line})
	}
	return out
}

// CancelBuildForm answers POST /builds/{id}/cancel from the build page.
func (h *Handlers) CancelBuildForm(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, err := h.Builds.Cancel(r.Context(), id); err != nil && builds.ErrorKind(err) != builds.EConflict {
		return err
	} else if err == nil {
		h.audit(r, "build.cancel", id, "")
	}
	http.Redirect(w, r, "/builds/"+id, http.StatusSeeOther)
	return nil
}

// RetryForm answers POST /builds/{id}/retry (platform=…): a new build that
// builds the failed platforms again and merges them with the kept ones.
func (h *Handlers) RetryForm(w http.ResponseWriter, r *http.Request) error {
	b, err := h.retry(r, r.PostFormValue("platform"), r.PostFormValue("placement"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/builds/"+b.ID, http.StatusSeeOther)
	return nil
}

// RebuildForm answers POST /builds/{id}/rebuild: the same inputs, a new build.
func (h *Handlers) RebuildForm(w http.ResponseWriter, r *http.Request) error {
	b, err := h.rebuild(r)
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/builds/"+b.ID, http.StatusSeeOther)
	return nil
}

// platformChoices are the platforms the history filter offers: what the
// nodes build now, plus the one the URL asks for.
func (h *Handlers) platformChoices(r *http.Request) []string {
	avail, _ := h.Builds.Platforms(r.Context())
	out := append([]string{}, avail...)
	if p := r.URL.Query().Get("platform"); p != "" && !slices.Contains(out, p) {
		if n, err := builds.ParsePlatform(p); err == nil && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
