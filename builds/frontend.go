package builds

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// FrontendPolicy decides which Dockerfile frontend images a `# syntax=` line
// or the BUILDKIT_SYNTAX build arg may name. The zero value allows none: every
// build runs on BuildKit's built-in Dockerfile frontend, because a frontend
// image is a program that runs inside BuildKit with the build's inputs.
type FrontendPolicy struct {
	allow []string // normalised references, e.g. docker.io/docker/dockerfile:1.7
}

// ParseFrontendAllowList reads --allow-frontends: comma-separated image
// references, compared exactly after normalisation (docker/dockerfile:1.7
// is docker.io/docker/dockerfile:1.7; a reference without a tag means :latest).
func ParseFrontendAllowList(s string) (FrontendPolicy, error) {
	var p FrontendPolicy
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := normaliseFrontend(f)
		if err != nil {
			return FrontendPolicy{}, fmt.Errorf("--allow-frontends: %q is not an image reference: %v", f, err)
		}
		if !slices.Contains(p.allow, n) {
			p.allow = append(p.allow, n)
		}
	}
	return p, nil
}

func normaliseFrontend(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(strings.TrimSpace(ref))
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(n).String(), nil
}

// List returns the allowed references, normalised.
func (p FrontendPolicy) List() []string { return slices.Clone(p.allow) }

// Allowed reports whether ref is on the allow-list.
func (p FrontendPolicy) Allowed(ref string) bool {
	n, err := normaliseFrontend(ref)
	return err == nil && slices.Contains(p.allow, n)
}

// Repositories lists the allowed references without tag or digest: the
// form buildkitd's own gateway allow-list compares.
func (p FrontendPolicy) Repositories() []string {
	var out []string
	for _, a := range p.allow {
		if n, err := reference.ParseNormalizedNamed(a); err == nil {
			if r := reference.TrimNamed(n).Name(); !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// refuse is the error for a frontend the policy does not allow; where says
// what named it ("line 1", "build arg BUILDKIT_SYNTAX").
func (p FrontendPolicy) refuse(where, ref, remove string) error {
	if r := []rune(ref); len(r) > 100 {
		ref = string(r[:100]) + "…"
	}
	return CodeErrorf(EInvalid, "frontend_not_allowed",
		"%s asks for the Dockerfile frontend %s, which this server does not run: %s: this server builds with its built-in Dockerfile frontend, or ask an admin to add %s to --allow-frontends",
		where, ref, remove, ref)
}

// CheckDockerfile refuses a Dockerfile whose `# syntax=` directive names a
// frontend that is not allowed. It uses BuildKit's own directive parser.
func (p FrontendPolicy) CheckDockerfile(df []byte) error {
	ref, _, loc, ok := parser.DetectSyntax(df)
	if !ok || p.Allowed(ref) {
		return nil
	}
	line := 1
	if len(loc) > 0 && loc[0].Start.Line > 0 {
		line = loc[0].Start.Line
	}
	return p.refuse(fmt.Sprintf("line %d", line), ref, "remove the `# syntax=` line")
}

// CheckBuildArgs refuses the BUILDKIT_SYNTAX build arg unless it names an
// allowed frontend ("ref [cmdline…]").
func (p FrontendPolicy) CheckBuildArgs(args map[string]string) error {
	v, ok := args["BUILDKIT_SYNTAX"]
	if !ok {
		return nil
	}
	ref, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	if ref != "" && p.Allowed(ref) {
		return nil
	}
	return p.refuse("build arg BUILDKIT_SYNTAX", ref, "remove the BUILDKIT_SYNTAX build arg")
}

// CheckRun checks a build's frontend again when it runs (the allow-list
// may have changed since it was queued, and an uploaded context's Dockerfile
// is read only now, from contextDir). noForward says the solve must not
// follow a `# syntax=` line at all: the Dockerfile comes from a git
// repository Manifold has not read, and no frontend is allowed.
func (p FrontendPolicy) CheckRun(b *Build, contextDir, name string) (noForward bool, err error) {
	if err := p.CheckBuildArgs(b.BuildArgs); err != nil {
		return false, err
	}
	switch {
	case b.Dockerfile != "":
		return false, p.CheckDockerfile([]byte(b.Dockerfile))
	case contextDir != "":
		if name == "" {
			name = "Dockerfile"
		}
		root, err := os.OpenRoot(contextDir) // a symlink cannot lead out of the context
		if err != nil {
			return false, err
		}
		defer root.Close()
		f, err := root.Open(name)
		if err != nil {
			return false, nil // BuildKit reports the missing Dockerfile in its own words
		}
		defer f.Close()
		head, err := io.ReadAll(io.LimitReader(f, MaxDockerfileSize))
		if err != nil {
			return false, err
		}
		return false, p.CheckDockerfile(head)
	}
	return len(p.allow) == 0, nil
}
