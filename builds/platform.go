package builds

import (
	"slices"
	"strings"

	"github.com/containerd/platforms"
)

var knownOS = map[string]bool{
	"linux": true, "windows": true, "darwin": true, "freebsd": true, "netbsd": true,
	"openbsd": true, "illumos": true, "solaris": true, "aix": true, "android": true,
	"dragonfly": true, "ios": true, "js": true, "plan9": true, "wasip1": true,
}

var knownArch = map[string]bool{
	"386": true, "amd64": true, "arm": true, "arm64": true, "loong64": true,
	"mips": true, "mipsle": true, "mips64": true, "mips64le": true, "ppc64": true,
	"ppc64le": true, "riscv64": true, "s390x": true, "wasm": true,
	// aliases that platforms.Normalize turns into the names above
	"x86_64": true, "x86-64": true, "aarch64": true, "i386": true, "armhf": true, "armel": true,
}

// ParsePlatform checks one platform string of the form os/arch[/variant] and
// returns its normalized form ("linux/aarch64" → "linux/arm64").
func ParsePlatform(s string) (string, error) {
	s = strings.TrimSpace(s)
	hint := "write it as os/arch or os/arch/variant, for example linux/amd64 or linux/arm64"
	if s == "" {
		return "", CodeErrorf(EInvalid, "invalid_platform", "a platform is empty; %s", hint)
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return "", CodeErrorf(EInvalid, "invalid_platform", "%q is not a platform; %s", s, hint)
	}
	for _, p := range parts {
		if p == "" || p != strings.ToLower(p) || strings.ContainsAny(p, " \t*,") {
			return "", CodeErrorf(EInvalid, "invalid_platform", "%q is not a platform; %s (lower case, no spaces)", s, hint)
		}
	}
	if !knownOS[parts[0]] {
		return "", CodeErrorf(EInvalid, "invalid_platform", "%q has an unknown operating system %q; %s", s, parts[0], hint)
	}
	if !knownArch[parts[1]] {
		return "", CodeErrorf(EInvalid, "invalid_platform", "%q has an unknown architecture %q; %s", s, parts[1], hint)
	}
	if len(parts) == 3 && !validVariant(parts[1], parts[2]) {
		return "", CodeErrorf(EInvalid, "invalid_platform", "%q has an unknown variant %q for %s", s, parts[2], parts[1])
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return "", CodeErrorf(EInvalid, "invalid_platform", "%q is not a platform; %s", s, hint)
	}
	n := platforms.Normalize(p)
	return FormatPlatform(n.OS, n.Architecture, n.Variant), nil
}

func validVariant(arch, variant string) bool {
	switch arch {
	case "arm", "armhf", "armel":
		return slices.Contains([]string{"v5", "v6", "v7", "v8"}, variant)
	case "arm64", "aarch64":
		return slices.Contains([]string{"v8", "v8.0", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9", "v9.0", "v9.1", "v9.2", "v9.3", "v9.4", "v9.5"}, variant)
	case "amd64", "x86_64", "x86-64":
		return slices.Contains([]string{"v1", "v2", "v3", "v4"}, variant)
	case "386", "i386":
		return false
	}
	return len(variant) <= 8
}

// FormatPlatform joins os, arch and variant the way Manifold shows platforms.
// The arm64 "v8" variant is the default and is left out, as BuildKit does.
func FormatPlatform(os, arch, variant string) string {
	if variant == "" || (arch == "arm64" && variant == "v8") || (arch == "amd64" && variant == "v1") {
		return os + "/" + arch
	}
	return os + "/" + arch + "/" + variant
}

// ParsePlatforms checks and normalizes a list of platforms, dropping duplicates
// and keeping the caller's order.
func ParsePlatforms(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		p, err := ParsePlatform(s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}
