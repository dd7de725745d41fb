package builds

import (
	"slices"
	"testing"
	"time"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/arm64", "linux/arm64", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/aarch64", "linux/arm64", true},
		{"linux/x86_64", "linux/amd64", true},
		{"linux/arm/v7", "linux/arm/v7", true},
		{"linux/arm", "linux/arm/v7", true},
		{" linux/riscv64 ", "linux/riscv64", true},
		{"windows/amd64", "windows/amd64", true},
		{"", "", false},
		{"linux", "", false},
		{"amd64", "", false},
		{"linux/amd65", "", false},
		{"Linux/amd64", "", false},
		{"linux/amd64/v9", "", false},
		{"linux/arm/v99", "", false},
		{"linux//amd64", "", false},
		{"linux/amd64/v2/extra", "", false},
		{"linux/*", "", false},
		{"plan10/amd64", "", false},
		{"linux/amd64,linux/arm64", "", false},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		if tt.ok != (err == nil) {
			t.Errorf("ParsePlatform(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if ErrorCode(err) != "invalid_platform" || ErrorKind(err) != EInvalid {
				t.Errorf("ParsePlatform(%q) error kind %s code %s, want invalid/invalid_platform", tt.in, ErrorKind(err), ErrorCode(err))
			}
			continue
		}
		if got != tt.want {
			t.Errorf("ParsePlatform(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParsePlatformsDeduplicates(t *testing.T) {
	got, err := ParsePlatforms([]string{"linux/arm64", "linux/amd64", "linux/arm64/v8", "linux/aarch64"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"linux/arm64", "linux/amd64"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestNewIDSortsByCreation(t *testing.T) {
	now := time.Now()
	var ids []string
	for i := range 2000 {
		ids = append(ids, NewID(now.Add(time.Duration(i/500)*time.Millisecond)))
	}
	if !slices.IsSorted(ids) {
		t.Fatal("ids made in order do not sort in order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !ValidID(id) {
			t.Fatalf("NewID made %q, which ValidID refuses", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "short", "01M8EVRP2R0004NY3XKNJD6VGD", "01m8evrp2r0004ny3xknjd6vg!", "../../../etc/passwd0000000"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		code string
	}{
		{"ok", Options{BuildArgs: map[string]string{"GO_VERSION": "1.26", "_x": ""}, Labels: map[string]string{"org.opencontainers.image.title": "clock"}, Target: "final-stage.1"}, ""},
		{"arg starts with digit", Options{BuildArgs: map[string]string{"1X": "a"}}, "invalid_build_arg"},
		{"arg with dash", Options{BuildArgs: map[string]string{"A-B": "a"}}, "invalid_build_arg"},
		{"arg with equals", Options{BuildArgs: map[string]string{"A=B": "a"}}, "invalid_build_arg"},
		{"label with space", Options{Labels: map[string]string{"a b": "c"}}, "invalid_label"},
		{"empty label key", Options{Labels: map[string]string{"": "c"}}, "invalid_label"},
		{"target with space", Options{Target: "a b"}, "invalid_target"},
		{"target injection", Options{Target: "--no-cache"}, "invalid_target"},
	}
	for _, tt := range tests {
		got, err := tt.opt.Validate()
		if ErrorCode(err) != tt.code && !(tt.code == "" && err == nil) {
			t.Errorf("%s: error %v (code %s), want code %q", tt.name, err, ErrorCode(err), tt.code)
		}
		if err == nil && (got.BuildArgs == nil || got.Labels == nil) {
			t.Errorf("%s: maps not filled in", tt.name)
		}
	}
}
