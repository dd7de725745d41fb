package builds

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestJobsShutdownWaitsAndRefusesMore(t *testing.T) {
	j := NewJobs()
	var ended, ticks atomic.Int32
	started := make(chan struct{})
	j.Go(func(ctx context.Context) {
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // still winding down when Shutdown is called
		ended.Add(1)
	})
	j.Every(time.Millisecond, func(context.Context) { ticks.Add(1) })
	<-started
	time.Sleep(20 * time.Millisecond)
	j.Shutdown()
	if ended.Load() != 1 {
		t.Fatal("Shutdown returned before the job ended")
	}
	if ticks.Load() == 0 {
		t.Fatal("the periodic job never ran")
	}
	n := ticks.Load()
	time.Sleep(10 * time.Millisecond)
	if ticks.Load() != n {
		t.Fatal("the periodic job ran after Shutdown")
	}
	if j.Go(func(context.Context) { t.Error("a job started after Shutdown") }) {
		t.Fatal("Go after Shutdown reported true")
	}
}
