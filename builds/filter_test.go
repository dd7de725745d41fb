package builds

import (
	"errors"
	"testing"
	"time"
)

func TestParseFilter(t *testing.T) {
	get := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	f, err := ParseFilter(get(map[string]string{"status": "failed", "platform": "linux/aarch64", "tag": "registry.example.com/team/app:v1",
		"user": "bob", "since": "2026-11-01", "until": "2026-11-02", "q": "busybox"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != StatusFailed || f.Platform != "linux/arm64" || f.Repo != "registry.example.com/team/app" || f.TagName != "v1" ||
		f.Name != "registry.example.com/team/app" || f.User != "bob" || f.Query != "busybox" {
		t.Fatalf("filter = %+v", f)
	}
	if !f.Until.Equal(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("until a day includes the day: %v", f.Until)
	}
	if repo, _ := ParseFilter(get(map[string]string{"tag": "busybox"})); repo.Repo != "docker.io/library/busybox" || repo.TagName != "" {
		t.Fatalf("a repository without a tag: %+v", repo)
	}
	for _, bad := range []map[string]string{
		{"status": "done"}, {"platform": "linux/z80"}, {"tag": "team/app:bad tag"}, {"tag": "app@sha256:" + "0000000000000000000000000000000000000000000000000000000000000000"},
		{"since": "yesterday"}, {"since": "2026-11-02", "until": "2026-11-01"}, {"q": "ab"}, {"user": string(make([]byte, 300))},
	} {
		_, err := ParseFilter(get(bad))
		var e *Error
		if !errors.As(err, &e) || e.Kind != EInvalid {
			t.Errorf("%v: err = %v, want EInvalid", bad, err)
		}
	}
}

func TestIDFloorOrdersWithNewID(t *testing.T) {
	at := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)
	id := NewID(at)
	if !(IDFloor(at) <= id && id < IDFloor(at.Add(time.Millisecond))) || !ValidID(IDFloor(at)) {
		t.Fatalf("IDFloor(%v) = %s, NewID = %s", at, IDFloor(at), id)
	}
}
