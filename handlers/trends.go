package handlers

import (
	"net/http"
	"strings"

	"manifold/builds"
	"manifold/builds/explore"
	"manifold/templates"
)

// trend reads the newest builds of the tag or repository the URL names.
func (h *Handlers) trend(r *http.Request) (explore.Trend, error) {
	tag := strings.TrimSpace(r.URL.Query().Get("tag"))
	if tag == "" {
		return explore.Trend{}, builds.CodeErrorf(builds.EInvalid, "invalid_filter", "name a tag or repository: /trends?tag=team/app:1.2 or ?tag=team/app")
	}
	f, err := builds.ParseFilter(func(k string) string {
		if k == "tag" {
			return tag
		}
		return ""
	})
	if err != nil {
		return explore.Trend{}, err
	}
	list, err := h.Builds.List(r.Context(), builds.ListOptions{Limit: explore.TrendLimit, Filter: f})
	if err != nil {
		return explore.Trend{}, err
	}
	return explore.Trends(f.Tag, list), nil
}

// TrendsJSON answers GET /api/v1/trends?tag=: duration and image size per
// platform and cache hits over the tag's last 50 builds, oldest first.
func (h *Handlers) TrendsJSON(w http.ResponseWriter, r *http.Request) error {
	t, err := h.trend(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

// TrendsPage answers GET /trends?tag=: the same as charts.
func (h *Handlers) TrendsPage(w http.ResponseWriter, r *http.Request) error {
	t, err := h.trend(r)
	if err != nil {
		return err
	}
	return render(w, r, http.StatusOK, templates.TrendsPage(templates.NewTrendsView(t)))
}
