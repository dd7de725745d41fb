package builds

import "testing"

func TestHubDropsASlowWatcherAndKeepsOthers(t *testing.T) {
	h := NewHub()
	slow := h.Subscribe("b1")
	fast := h.Subscribe("b1")
	other := h.Subscribe("b2")
	got := 0
	for i := range subBuffer + 10 {
		h.Publish("b1", []Event{{Seq: int64(i + 1), Type: EventLog}})
		for range len(fast.C) {
			<-fast.C
			got++
		}
	}
	if got != subBuffer+10 {
		t.Fatalf("the reading watcher got %d events, want %d", got, subBuffer+10)
	}
	// The slow one has its buffer, then is closed: bounded memory, and it knows to reconnect.
	n := 0
	for range slow.C {
		n++
	}
	if n != subBuffer {
		t.Fatalf("the slow watcher kept %d events, want its buffer of %d", n, subBuffer)
	}
	if h.Watchers("b1") != 1 || h.Watchers("b2") != 1 {
		t.Fatalf("watchers b1=%d b2=%d, want 1 and 1", h.Watchers("b1"), h.Watchers("b2"))
	}
	if len(other.C) != 0 {
		t.Fatal("another build's watcher got b1's events")
	}
	h.Unsubscribe(fast)
	h.Unsubscribe(fast) // twice is fine
	h.Unsubscribe(slow)
	if h.Watchers("b1") != 0 {
		t.Fatal("unsubscribed watchers remain")
	}
}
