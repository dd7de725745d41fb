package handlers

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"manifold/builds"
)

// listFake answers List with a function; QueuePosition says nothing is queued.
type listFake struct {
	Builds
	list func(opt builds.ListOptions) ([]*builds.Build, error)
}

func (f *listFake) List(_ context.Context, opt builds.ListOptions) ([]*builds.Build, error) {
	return f.list(opt)
}

func (f *listFake) QueuePosition(string) int { return 0 }

func TestListBuildsFilters(t *testing.T) {
	h := quietHandlers()
	var got builds.ListOptions
	calls := 0
	h.Builds = &listFake{list: func(opt builds.ListOptions) ([]*builds.Build, error) {
		got, calls = opt, calls+1
		return []*builds.Build{{ID: "01m8000000000000000000000a", Status: builds.StatusFailed}}, nil
	}}
	w := httptest.NewRecorder()
	if err := h.ListBuilds(w, httptest.NewRequest("GET", "/api/v1/builds?limit=1&status=failed&tag=team/app&q=busybox", nil)); err != nil {
		t.Fatal(err)
	}
	if got.Filter.Status != builds.StatusFailed || got.Filter.Repo != "docker.io/team/app" || got.Filter.Query != "busybox" || got.Limit != 1 {
		t.Fatalf("List got %+v", got)
	}
	link := w.Header().Get("Link")
	if !strings.HasPrefix(link, "</api/v1/builds?limit=1&before=01m8000000000000000000000a&") || !strings.Contains(link, "status=failed") || !strings.Contains(link, "tag=team%2Fapp") {
		t.Fatalf("Link %q does not keep the filter", link)
	}
	for _, bad := range []string{"status=done", "since=soon", "q=ab", "platform=linux/z80"} {
		err := h.ListBuilds(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/v1/builds?"+bad, nil))
		if builds.ErrorKind(err) != builds.EInvalid {
			t.Errorf("?%s: err %v, want EInvalid", bad, err)
		}
	}
	if calls != 1 {
		t.Fatalf("List called %d times; bad filters must not reach it", calls)
	}
}
