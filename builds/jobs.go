package builds

import (
	"context"
	"sync"
	"time"
)

// Jobs owns background work that is not a build: checksums of downloads,
// the periodic collection. Every job runs on one context that Shutdown
// cancels, and Shutdown waits for all of them, so none outlives the
// database it writes to.
type Jobs struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// NewJobs returns an empty Jobs.
func NewJobs() *Jobs {
	ctx, cancel := context.WithCancel(context.Background())
	return &Jobs{ctx: ctx, cancel: cancel}
}

// Go runs fn in the background; after Shutdown it does nothing and reports false.
func (j *Jobs) Go(fn func(ctx context.Context)) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return false
	}
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		fn(j.ctx)
	}()
	return true
}

// Every runs fn every interval until Shutdown.
func (j *Jobs) Every(interval time.Duration, fn func(ctx context.Context)) bool {
	return j.Go(func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	})
}

// Shutdown cancels every job and waits for them to return.
func (j *Jobs) Shutdown() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	j.wg.Wait()
}
