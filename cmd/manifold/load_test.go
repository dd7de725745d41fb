package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"manifold/builds"
	"manifold/db"
)

// apiClient is one user's API token against an app.
type apiClient struct {
	a     *app
	token string
}

func (c apiClient) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	code, b, err := c.a.request(method, path, body, c.token)
	if err != nil {
		t.Error(err) // from a client's goroutine: Error, not Fatal
	}
	return code, b
}

// admin is the token users made last for an admin, for reading everything.
var admin string

// users makes n builders with a token each, and an admin (admin), in a data folder.
func users(t *testing.T, data string, n int) []string {
	t.Helper()
	cli(t, "user", "create", "--admin", "--data", data, "watcher")
	admin = strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", "watcher", "--scope", "admin"))
	var tokens []string
	for i := range n {
		name := fmt.Sprintf("user%02d", i)
		cli(t, "user", "create", "--role", "builder", "--data", data, name)
		tokens = append(tokens, strings.TrimSpace(cli(t, "token", "create", "--data", data, "--user", name, "--scope", "build")))
	}
	return tokens
}

// TestFiftyBuildsFromTenClients submits 50 builds at once from 10 users
// (5 each, within the per-user limit): every one finishes, none is lost or
// run twice, never more run at once than the limit, and each user's builds
// start in the order they were submitted.
func TestFiftyBuildsFromTenClients(t *testing.T) {
	data := t.TempDir()
	tokens := users(t, data, 10)
	a := startApp(t, data, "--buildkit", env.Addr(), "--concurrency", "2")
	a.token = admin
	var mu sync.Mutex
	byUser := map[int][]string{}
	var wg sync.WaitGroup
	for u, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := apiClient{a, tok}
			for i := range 5 {
				df := fmt.Sprintf("FROM busybox:1\nRUN echo user %d build %d\n", u, i)
				code, body := c.do(t, "POST", "/api/v1/builds", mustJSON(map[string]any{"dockerfile": df, "platforms": []string{"linux/amd64"}}))
				var b builds.Build
				if code != http.StatusCreated || json.Unmarshal(body, &b) != nil {
					t.Errorf("user %d build %d = %d %s", u, i, code, body)
					return
				}
				mu.Lock()
				byUser[u] = append(byUser[u], b.ID)
				mu.Unlock()
			}
		}()
	}
	// Meanwhile, never more than two run at once.
	stop := make(chan struct{})
	most := 0
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			code, body := a.do(t, "GET", "/api/v1/builds?limit=100", "")
			var page struct{ Builds []builds.Build }
			if code == 200 && json.Unmarshal(body, &page) == nil {
				n := 0
				for _, b := range page.Builds {
					if b.Status == builds.StatusRunning {
						n++
					}
				}
				mu.Lock()
				most = max(most, n)
				mu.Unlock()
			}
		}
	}()
	wg.Wait()
	seen := map[string]bool{}
	for u, ids := range byUser {
		var starts []time.Time
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("build %s given twice", id)
			}
			seen[id] = true
			b := a.wait(t, id)
			if b.Status != builds.StatusSucceeded {
				t.Errorf("user %d build %s: %s %s", u, id, b.Status, b.Error)
				continue
			}
			starts = append(starts, *b.StartedAt)
		}
		if !slices.IsSortedFunc(starts, func(x, y time.Time) int { return x.Compare(y) }) {
			t.Errorf("user %d's builds started out of order: %v", u, starts)
		}
	}
	close(stop)
	if len(seen) != 50 {
		t.Fatalf("%d builds made, want 50", len(seen))
	}
	// Every build appears once in the history.
	code, body := a.do(t, "GET", "/api/v1/builds?limit=100", "")
	var page struct{ Builds []builds.Build }
	if err := json.Unmarshal(body, &page); code != 200 || err != nil || len(page.Builds) != 50 {
		t.Fatalf("history = %d, %d builds", code, len(page.Builds))
	}
	mu.Lock()
	defer mu.Unlock()
	if most > 2 {
		t.Fatalf("%d builds ran at once; the limit is 2", most)
	}
	if most == 0 {
		t.Fatal("never saw a build running: the check did not look")
	}
}

// TestTwoHundredWatchersGetEveryEvent follows four running builds with 50
// watchers each: every watcher receives every stored event, in order, and
// the server's goroutines and database descriptors return to where they
// were once the watchers are gone.
func TestTwoHundredWatchersGetEveryEvent(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr(), "--concurrency", "4")
	baseG, baseFD := runtime.NumGoroutine(), dbDescriptors(t, a.Data)
	var ids []string
	for i := range 4 {
		ids = append(ids, a.startBuild(t, map[string]any{"dockerfile": fmt.Sprintf("FROM busybox:1\nRUN for i in $(seq 1 30); do echo build %d line $i; sleep 0.05; done\n", i),
			"platforms": []string{"linux/amd64"}, "no_cache": true}))
	}
	transport := &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}
	hc := &http.Client{Transport: transport}
	seqLine := regexp.MustCompile(`^id: (\d+)$`)
	got := make([][]int64, 200)
	var wg sync.WaitGroup
	for w := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(a.URL + "/api/v1/builds/" + ids[w%4] + "/events")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				if m := seqLine.FindStringSubmatch(sc.Text()); m != nil {
					n, _ := strconv.ParseInt(m[1], 10, 64)
					got[w] = append(got[w], n)
				}
				if sc.Text() == "event: done" {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if b := a.wait(t, id); b.Status != builds.StatusSucceeded {
			t.Fatalf("build %s: %s %s", id, b.Status, b.Error)
		}
		// The stored events, as a late watcher replays them.
		resp, err := hc.Get(a.URL + "/api/v1/builds/" + id + "/events")
		if err != nil {
			t.Fatal(err)
		}
		var stored []int64
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := seqLine.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.ParseInt(m[1], 10, 64)
				stored = append(stored, n)
			}
		}
		resp.Body.Close()
		for w := i; w < 200; w += 4 {
			if !slices.Equal(got[w], stored) {
				t.Fatalf("watcher %d of build %s got %d events %v…, the build stored %d", w, id, len(got[w]), head(got[w]), len(stored))
			}
		}
	}
	transport.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	var g, fds int
	for time.Now().Before(deadline) {
		g, fds = runtime.NumGoroutine(), dbDescriptors(t, a.Data)
		// The database's descriptors stay within its fixed pool (one
		// writer, db.Readers readers, each with its WAL, and the -shm map).
		if g <= baseG+10 && fds <= max(baseFD, 2*(db.Readers+1)+2) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after the watchers left: %d goroutines (%d before), %d database descriptors (%d before)", g, baseG, fds, baseFD)
}

func head(s []int64) []int64 { return s[:min(len(s), 8)] }

// TestConcurrentWritersNeverSeeLocked has 20 clients write at once —
// starting builds, making tokens (with audit records), storing secrets —
// while builds record their events: no request fails, and nothing reports
// the database as locked or busy.
func TestConcurrentWritersNeverSeeLocked(t *testing.T) {
	data := t.TempDir()
	tokens := users(t, data, 20)
	a := startApp(t, data, "--buildkit", env.Addr(), "--concurrency", "4")
	a.token = admin
	var wg sync.WaitGroup
	for u, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := apiClient{a, tok}
			for i := range 3 {
				if code, body := c.do(t, "POST", "/api/v1/builds", mustJSON(map[string]any{"dockerfile": fmt.Sprintf("FROM busybox:1\nRUN echo %d %d\n", u, i), "platforms": []string{"linux/amd64"}})); code != http.StatusCreated {
					t.Errorf("build: %d %s", code, body)
				}
				if code, body := c.do(t, "PUT", fmt.Sprintf("/api/v1/secrets/s%d", i), `{"value":"v"}`); code != http.StatusNoContent {
					t.Errorf("secret: %d %s", code, body)
				}
				if code, body := c.do(t, "POST", "/api/v1/tokens", fmt.Sprintf(`{"name":"t%d","scope":"read"}`, i)); code != http.StatusCreated {
					t.Errorf("token: %d %s", code, body)
				}
			}
		}()
	}
	wg.Wait()
	code, body := a.do(t, "GET", "/api/v1/builds?limit=100", "")
	var page struct{ Builds []builds.Build }
	if err := json.Unmarshal(body, &page); code != 200 || err != nil || len(page.Builds) != 60 {
		t.Fatalf("history = %d, %d builds", code, len(page.Builds))
	}
	for _, b := range page.Builds {
		if b := a.wait(t, b.ID); b.Status != builds.StatusSucceeded {
			t.Errorf("build %s: %s %s", b.ID, b.Status, b.Error)
		}
	}
	if logs := a.logs.String(); strings.Contains(logs, "database is locked") || strings.Contains(strings.ToLower(logs), "sqlite_busy") {
		t.Fatalf("the log reports a locked database:\n%s", logs)
	}
}
