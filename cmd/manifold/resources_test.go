package main

import (
	"bufio"
	"manifold/db"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// dbDescriptors counts this process's open descriptors on data's database files.
func dbDescriptors(t *testing.T, data string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, filepath.Join(data, "manifold.db")) {
			n++
		}
	}
	return n
}

// TestWatchersGiveBackDescriptors: 200 event streams on running builds open
// and close; the database's descriptors and the goroutines come back to
// where they were, and never grow past the bounded pool.
func TestWatchersGiveBackDescriptors(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	ids := []string{
		a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN for i in $(seq 1 40); do echo line $i; sleep 0.1; done\n", "platforms": []string{"linux/amd64"}, "no_cache": true}),
		a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN for i in $(seq 1 40); do echo other $i; sleep 0.1; done\n", "platforms": []string{"linux/amd64"}, "no_cache": true}),
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}
	var wg sync.WaitGroup
	peak := 0
	var mu sync.Mutex
	watch := func(n int) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(a.URL + "/api/v1/builds/" + ids[i%2] + "/events")
				if err != nil {
					t.Error(err)
					return
				}
				sc := bufio.NewScanner(resp.Body)
				lines := 0
				for sc.Scan() && lines < 20 { // read a little, then hang up mid-stream
					lines++
				}
				mu.Lock()
				peak = max(peak, dbDescriptors(t, a.Data))
				mu.Unlock()
				resp.Body.Close()
			}()
		}
	}
	// Two rounds of 200 watchers: the first grows the connection pool to
	// what the load needs, never past its fixed size; the second must not
	// end above it. Leaked descriptors would add up past the bound.
	settle := func(baseG int) (fds, g int) {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			fds, g = dbDescriptors(t, a.Data), runtime.NumGoroutine()
			if baseG == 0 || g <= baseG+10 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		return fds, g
	}
	baseG := runtime.NumGoroutine()
	watch(200)
	wg.Wait()
	firstFDs, firstG := settle(baseG)
	watch(200)
	wg.Wait()
	for _, id := range ids {
		a.wait(t, id)
	}
	fds, g := settle(baseG)
	// Each SQLite connection holds the database and its WAL: the pool is
	// one writer and db.Readers readers, plus the -shm mapping.
	bound := 2*(db.Readers+1) + 2
	t.Logf("database descriptors: %d after the first 200 watchers, %d after the second, at most %d at once (bound %d); goroutines %d before, %d after",
		firstFDs, fds, peak, bound, baseG, g)
	if fds > max(firstFDs, bound) {
		t.Errorf("database descriptors grew from one round of watchers to the next: %d, then %d (the pool holds at most %d)", firstFDs, fds, bound)
	}
	if peak > bound {
		t.Errorf("the pool is not bounded: %d descriptors on the database at once, more than %d", peak, bound)
	}
	if g > baseG+10 || firstG > baseG+10 {
		t.Errorf("goroutines did not come back: %d before, %d and %d after", baseG, firstG, g)
	}
}

// TestShutdownWithOpenStreams: 100 event streams on a running build do not
// hold up a shutdown: it ends them, and manifold exits cleanly at once.
func TestShutdownWithOpenStreams(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr())
	id := a.startBuild(t, map[string]any{"dockerfile": "FROM busybox:1\nRUN sleep 60\n", "platforms": []string{"linux/amd64"}, "no_cache": true})
	a.waitStatus(t, id, "running", nil)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: -1}}
	var bodies []*bufio.Reader
	var closers []func() error
	for range 100 {
		resp, err := client.Get(a.URL + "/api/v1/builds/" + id + "/events")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, resp.Body.Close)
		bodies = append(bodies, bufio.NewReader(resp.Body))
	}
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for _, b := range bodies { // every stream is live: it got its first lines
		if _, err := b.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	a.stop() // fails the test if run returns an error
	took := time.Since(start)
	t.Logf("shutdown with 100 open streams took %v", took)
	if took > 2*time.Second {
		t.Fatalf("shutdown with 100 open streams took %v", took)
	}
	if strings.Contains(a.logs.String(), "deadline exceeded") {
		t.Fatalf("the HTTP shutdown timed out:\n%s", a.logs)
	}
}
