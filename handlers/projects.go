package handlers

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/builds/projects"
	"manifold/templates"
)

// projectJSON is a project as the API shows it; the secret only once, when generated.
type projectJSON struct {
	projects.Project
	Secret string `json:"secret,omitempty"`
}

// projectRequest is the body of POST /api/v1/projects.
type projectRequest struct {
	projects.Project
	Secret string `json:"secret"`
}

// ListProjects answers GET /api/v1/projects.
func (h *Handlers) ListProjects(w http.ResponseWriter, r *http.Request) error {
	list, err := h.Projects.List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []projects.Project{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"projects": list})
}

// CreateProject answers POST /api/v1/projects → 201; a secret left out is
// generated and answered once.
func (h *Handlers) CreateProject(w http.ResponseWriter, r *http.Request) error {
	var req projectRequest
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxJSONBody), &req); err != nil {
		return err
	}
	generated := req.Secret == ""
	req.Project.Secret = req.Secret
	req.Project.CreatedBy = identity(r).User
	p, err := h.Projects.Create(r.Context(), req.Project)
	if err != nil {
		return err
	}
	h.audit(r, "project.create", p.Name, p.GitURL)
	out := projectJSON{Project: p}
	if generated {
		out.Secret = p.Secret
	}
	return writeJSON(w, http.StatusCreated, out)
}

// GetProject answers GET /api/v1/projects/{name}.
func (h *Handlers) GetProject(w http.ResponseWriter, r *http.Request) error {
	p, err := h.Projects.Get(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	ids, err := h.Projects.Builds(r.Context(), p.Name, 50)
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []string{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"project": projectJSON{Project: p}, "builds": ids})
}

// BuildProject answers POST /api/v1/projects/{name}/build {"branch"}: "Build now" → 201 with the build.
func (h *Handlers) BuildProject(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Branch string `json:"branch"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxJSONBody), &req); err != nil {
			return err
		}
	}
	b, err := h.buildNow(r, req.Branch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, buildJSON{Build: b})
}

func (h *Handlers) buildNow(r *http.Request, branch string) (*builds.Build, error) {
	p, err := h.Projects.Get(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return nil, err
	}
	if branch = strings.TrimSpace(branch); branch == "" {
		branch = "main"
	}
	if strings.HasPrefix(branch, "-") || strings.ContainsAny(branch, " \t\r\n\x00:~^?*[\\") || strings.Contains(branch, "..") {
		return nil, builds.CodeErrorf(builds.EInvalid, "invalid_branch", "%q is not a branch name", clipInput(branch))
	}
	res, err := h.Projects.Trigger(r.Context(), p, projects.Trigger{Event: "manual", Ref: branch})
	if err != nil {
		return nil, err
	}
	if res.Build == nil {
		return nil, builds.CodeErrorf(builds.EInvalid, "invalid_branch", "%s", res.Ignored)
	}
	h.audit(r, "project.build", p.Name, "branch "+branch+", build "+res.Build.ID)
	return res.Build, nil
}

// ProjectsPage answers GET /projects.
func (h *Handlers) ProjectsPage(w http.ResponseWriter, r *http.Request) error {
	return h.renderProjects(w, r, http.StatusOK, templates.ProjectForm{Branches: "*", DockerfilePath: "Dockerfile", Platforms: "linux/amd64\nlinux/arm64"}, "")
}

func (h *Handlers) renderProjects(w http.ResponseWriter, r *http.Request, status int, f templates.ProjectForm, msg string) error {
	list, err := h.Projects.List(r.Context())
	if err != nil {
		return err
	}
	return render(w, r, status, templates.ProjectsPage(templates.ProjectsView{Projects: list, Form: f, Error: msg}))
}

// formProject reads the project form: lists one a line.
func formProject(r *http.Request) (projects.Project, templates.ProjectForm) {
	f := templates.ProjectForm{
		Name: r.PostForm.Get("name"), GitURL: r.PostForm.Get("git_url"), Branches: r.PostForm.Get("branches"),
		DockerfilePath: r.PostForm.Get("dockerfile_path"), ContextDir: r.PostForm.Get("context_dir"),
		Platforms: r.PostForm.Get("platforms"), BuildArgs: r.PostForm.Get("build_args"), Tags: r.PostForm.Get("tags"),
		Push: r.PostForm.Get("push") != "",
	}
	lines := func(s string) []string {
		var out []string
		for _, l := range strings.FieldsFunc(s, func(c rune) bool { return c == '\n' || c == '\r' || c == ',' }) {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	p := projects.Project{Name: f.Name, GitURL: f.GitURL, Branches: f.Branches, DockerfilePath: f.DockerfilePath, ContextDir: f.ContextDir,
		Platforms: lines(f.Platforms), Tags: lines(f.Tags), Push: f.Push, BuildArgs: map[string]string{}, Secret: r.PostForm.Get("secret")}
	for _, l := range strings.Split(f.BuildArgs, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && k != "" {
			p.BuildArgs[k] = v
		}
	}
	return p, f
}

// CreateProjectForm answers POST /projects: 303 to the new project, or the form again with the sentence.
func (h *Handlers) CreateProjectForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form cannot be read: %v", err)
	}
	p, f := formProject(r)
	if p.Secret == "" {
		return h.renderProjects(w, r, http.StatusBadRequest, f, "a project needs a webhook secret: the forges sign their deliveries with it")
	}
	p.CreatedBy = identity(r).User
	p, err := h.Projects.Create(r.Context(), p)
	if k := builds.ErrorKind(err); k == builds.EInvalid || k == builds.EConflict {
		return h.renderProjects(w, r, http.StatusBadRequest, f, builds.ErrorMessage(err))
	} else if err != nil {
		return err
	}
	h.audit(r, "project.create", p.Name, p.GitURL)
	http.Redirect(w, r, "/projects/"+p.Name, http.StatusSeeOther)
	return nil
}

// ProjectPage answers GET /projects/{name}.
func (h *Handlers) ProjectPage(w http.ResponseWriter, r *http.Request) error {
	p, err := h.Projects.Get(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	f := templates.ProjectForm{Name: p.Name, GitURL: p.GitURL, Branches: p.Branches, DockerfilePath: p.DockerfilePath, ContextDir: p.ContextDir,
		Platforms: strings.Join(p.Platforms, "\n"), Tags: strings.Join(p.Tags, "\n"), Push: p.Push}
	var args []string
	for k, v := range p.BuildArgs {
		args = append(args, k+"="+v)
	}
	slices.Sort(args)
	f.BuildArgs = strings.Join(args, "\n")
	return h.renderProject(w, r, http.StatusOK, p, f, "")
}

func (h *Handlers) renderProject(w http.ResponseWriter, r *http.Request, status int, p projects.Project, f templates.ProjectForm, msg string) error {
	ids, err := h.Projects.Builds(r.Context(), p.Name, 50)
	if err != nil {
		return err
	}
	v := templates.ProjectView{Project: p, Form: f, Error: msg, Now: time.Now()}
	for _, id := range ids {
		b, err := h.Builds.Get(r.Context(), id)
		if err != nil {
			continue // removed by retention since
		}
		v.Builds = append(v.Builds, b)
	}
	for _, forge := range []string{"github", "gitea", "gitlab"} {
		v.Hooks = append(v.Hooks, [2]string{forge, absoluteURL(r, "/hooks/"+forge+"/"+p.Name)})
	}
	return render(w, r, status, templates.ProjectPage(v))
}

// UpdateProjectForm answers POST /projects/{name}.
func (h *Handlers) UpdateProjectForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form cannot be read: %v", err)
	}
	p, f := formProject(r)
	p.Name = chi.URLParam(r, "name")
	updated, err := h.Projects.Update(r.Context(), p)
	if builds.ErrorKind(err) == builds.EInvalid {
		old, gerr := h.Projects.Get(r.Context(), p.Name)
		if gerr != nil {
			return gerr
		}
		f.Name = old.Name
		return h.renderProject(w, r, http.StatusBadRequest, old, f, builds.ErrorMessage(err))
	} else if err != nil {
		return err
	}
	h.audit(r, "project.update", updated.Name, updated.GitURL)
	http.Redirect(w, r, "/projects/"+updated.Name, http.StatusSeeOther)
	return nil
}

// BuildProjectForm answers POST /projects/{name}/build: "Build now", then the build's page.
func (h *Handlers) BuildProjectForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form cannot be read: %v", err)
	}
	b, err := h.buildNow(r, r.PostForm.Get("branch"))
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/builds/"+b.ID, http.StatusSeeOther)
	return nil
}
