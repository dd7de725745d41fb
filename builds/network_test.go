package builds

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBuildNetwork(t *testing.T) {
	for in, want := range map[string]string{"": "bridge", "bridge": "bridge", "host": "host", "none": "none"} {
		if got, err := ParseBuildNetwork(in); err != nil || got != want {
			t.Errorf("ParseBuildNetwork(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"Bridge", "cni", "auto", "host "} {
		if _, err := ParseBuildNetwork(bad); err == nil || !strings.Contains(err.Error(), "bridge") {
			t.Errorf("ParseBuildNetwork(%q) = %v, want an error listing the modes", bad, err)
		}
	}
}

func TestFrontendPolicy(t *testing.T) {
	none := FrontendPolicy{}
	some, err := ParseFrontendAllowList(" docker/dockerfile:1.7 ,,docker.io/docker/dockerfile:1.7")
	if err != nil {
		t.Fatal(err)
	}
	if got := some.List(); len(got) != 1 || got[0] != "docker.io/docker/dockerfile:1.7" {
		t.Fatalf("allow-list %v", got)
	}
	if _, err := ParseFrontendAllowList("Docker/Dockerfile"); err == nil {
		t.Fatal("an invalid reference was accepted")
	}
	cases := []struct {
		df      string
		p       FrontendPolicy
		refused bool
		line    string
	}{
		{"FROM busybox:1\n", none, false, ""},
		{"# syntax=docker/dockerfile:1.7\nFROM busybox:1\n", none, true, "line 1"},
		{"#syntax=docker/dockerfile:1.7\nFROM busybox:1\n", some, false, ""},
		{"# syntax=docker.io/docker/dockerfile:1.7\nFROM busybox:1\n", some, false, ""},
		{"# syntax=docker/dockerfile:1\nFROM busybox:1\n", some, true, "line 1"},
		{"# syntax=docker/dockerfile:1.7@sha256:" + strings.Repeat("b", 64) + "\nFROM busybox:1\n", some, true, "line 1"},
		{"# escape=`\n# syntax=evil.example.com/fe:1\nFROM busybox:1\n", some, true, "line 2"},
		{"FROM busybox:1\n# syntax=docker/dockerfile:1.6\n", none, false, ""}, // not a directive after FROM
	}
	for _, c := range cases {
		err := c.p.CheckDockerfile([]byte(c.df))
		if (err != nil) != c.refused {
			t.Errorf("%q with %v: %v", c.df, c.p.List(), err)
			continue
		}
		if err == nil {
			continue
		}
		var e *Error
		msg := err.Error()
		if !errors.As(err, &e) || e.Kind != EInvalid || e.Code != "frontend_not_allowed" ||
			!strings.HasPrefix(msg, c.line+" ") || !strings.Contains(msg, "remove the `# syntax=` line") ||
			!strings.Contains(msg, "built-in Dockerfile frontend") || !strings.Contains(msg, "--allow-frontends") {
			t.Errorf("%q: %v", c.df, err)
		}
	}
	if err := none.CheckBuildArgs(map[string]string{"BUILDKIT_SYNTAX": "docker/dockerfile:1.7"}); err == nil ||
		!strings.Contains(err.Error(), "build arg BUILDKIT_SYNTAX") || !strings.Contains(err.Error(), "add docker/dockerfile:1.7 to --allow-frontends") {
		t.Errorf("BUILDKIT_SYNTAX without an allow-list: %v", err)
	}
	if err := none.CheckBuildArgs(map[string]string{"BUILDKIT_SYNTAX": ""}); err == nil {
		t.Error("an empty BUILDKIT_SYNTAX was accepted")
	}
	if err := some.CheckBuildArgs(map[string]string{"BUILDKIT_SYNTAX": "docker/dockerfile:1.7 --flag"}); err != nil {
		t.Errorf("an allowed BUILDKIT_SYNTAX: %v", err)
	}
	if err := none.CheckBuildArgs(map[string]string{"OTHER": "x"}); err != nil {
		t.Error(err)
	}
}
