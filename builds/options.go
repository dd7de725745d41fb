package builds

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

var (
	argName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	targetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// Validate checks the options and returns a copy with empty maps filled in.
func (o Options) Validate() (Options, error) {
	if len(o.BuildArgs) > 200 {
		return o, CodeErrorf(EInvalid, "invalid_build_arg", "%d build args given; at most 200 are accepted", len(o.BuildArgs))
	}
	for _, k := range slices.Sorted(maps.Keys(o.BuildArgs)) {
		if !argName.MatchString(k) {
			return o, CodeErrorf(EInvalid, "invalid_build_arg", "build arg name %q is not valid; use letters, digits and _ and do not start with a digit", k)
		}
		if len(o.BuildArgs[k]) > 64<<10 || strings.ContainsRune(o.BuildArgs[k], 0) {
			return o, CodeErrorf(EInvalid, "invalid_build_arg", "build arg %s has a value over 64 KiB or with a NUL byte", k)
		}
	}
	if len(o.Labels) > 200 {
		return o, CodeErrorf(EInvalid, "invalid_label", "%d labels given; at most 200 are accepted", len(o.Labels))
	}
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		if k == "" || len(k) > 256 || strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '=' }) >= 0 {
			return o, CodeErrorf(EInvalid, "invalid_label", "label key %q is not valid; use up to 256 characters without spaces, '=' or control characters", k)
		}
		if len(o.Labels[k]) > 64<<10 || strings.ContainsRune(o.Labels[k], 0) {
			return o, CodeErrorf(EInvalid, "invalid_label", "label %s has a value over 64 KiB or with a NUL byte", k)
		}
	}
	if o.Target != "" && (!targetName.MatchString(o.Target) || len(o.Target) > 128) {
		return o, CodeErrorf(EInvalid, "invalid_target", "target %q is not a stage name; use letters, digits, '.', '_' and '-'", o.Target)
	}
	switch o.Provenance {
	case "", "min", "max":
	default:
		return o, CodeErrorf(EInvalid, "invalid_provenance", "provenance %q is not min or max", o.Provenance)
	}
	switch o.Placement {
	case "":
		o.Placement = PlacementPreferNative
	case PlacementPreferNative, PlacementNativeOnly, PlacementAny:
	default:
		return o, CodeErrorf(EInvalid, "invalid_placement", "placement %q is not prefer-native, native-only or any", o.Placement)
	}
	if o.Git != nil {
		g, err := o.Git.Validate()
		if err != nil {
			return o, err
		}
		o.Git = &g
	}
	p, err := CleanContextPath("dockerfile_path", o.DockerfilePath)
	if err != nil {
		return o, err
	}
	o.DockerfilePath = p
	if o.BuildArgs == nil {
		o.BuildArgs = map[string]string{}
	}
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	return o, nil
}

// FrontendAttrs turns the options into the Dockerfile frontend's attributes.
func (o Options) FrontendAttrs(attrs map[string]string) {
	for k, v := range o.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	for k, v := range o.Labels {
		attrs["label:"+k] = v
	}
	if o.Target != "" {
		attrs["target"] = o.Target
	}
	if o.NoCache {
		attrs["no-cache"] = ""
	}
	if o.Provenance != "" {
		attrs["attest:provenance"] = "mode=" + o.Provenance
	}
	if o.SBOM {
		attrs["attest:sbom"] = ""
	}
}
