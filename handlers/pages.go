package handlers

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"manifold/builds"
	"manifold/templates"
)

// maxFormBody bounds the new-build form.
const maxFormBody = 2 << 20

func render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	return c.Render(r.Context(), w)
}

// newBuildView fills the form's platform checkboxes from what the nodes report.
func (h *Handlers) newBuildView(r *http.Request, dockerfile string, checked []string) templates.NewBuildView {
	v := templates.NewBuildView{Dockerfile: dockerfile}
	var avail []string
	for _, n := range h.Builds.Nodes(r.Context()) {
		if !n.OK {
			v.Unreachable = n.Error
			continue
		}
		for _, p := range n.Platforms {
			if !slices.Contains(avail, p) {
				avail = append(avail, p)
			}
		}
	}
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
	return v
}

// NewBuildPage answers GET /: the new-build form with the example Dockerfile.
func (h *Handlers) NewBuildPage(w http.ResponseWriter, r *http.Request) error {
	return render(w, r, http.StatusOK, templates.NewBuildPage(h.newBuildView(r, templates.ExampleDockerfile, nil)))
}

// CreateBuildForm answers POST /builds from the form: 303 to the new build, or
// the form again with the user's input and what to fix.
func (h *Handlers) CreateBuildForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return builds.CodeErrorf(builds.EInvalid, "invalid_form", "the form could not be read (it may be over %d bytes)", maxFormBody)
	}
	req := builds.Request{
		Dockerfile: strings.ReplaceAll(r.PostForm.Get("dockerfile"), "\r\n", "\n"),
		Platforms:  r.PostForm["platform"],
	}
	b, err := h.Builds.Start(r.Context(), req)
	if err != nil {
		if builds.ErrorKind(err) != builds.EInvalid {
			return err
		}
		v := h.newBuildView(r, req.Dockerfile, nonNilStrings(req.Platforms))
		v.Error = builds.ErrorMessage(err)
		return render(w, r, http.StatusBadRequest, templates.NewBuildPage(v))
	}
	http.Redirect(w, r, "/builds/"+b.ID, http.StatusSeeOther)
	return nil
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
	v := templates.BuildsView{Builds: list, Now: time.Now()}
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
	v := templates.BuildView{Build: b, Now: time.Now(), QueuePosition: h.Builds.QueuePosition(b.ID)}
	if b.Status.Final() {
		if v.Log, err = h.Builds.Log(r.Context(), b.ID); err != nil {
			return err
		}
	}
	return render(w, r, http.StatusOK, templates.BuildPage(v))
}

// CancelBuildForm answers POST /builds/{id}/cancel from the build page.
func (h *Handlers) CancelBuildForm(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if _, err := h.Builds.Cancel(r.Context(), id); err != nil && builds.ErrorKind(err) != builds.EConflict {
		return err
	}
	http.Redirect(w, r, "/builds/"+id, http.StatusSeeOther)
	return nil
}
