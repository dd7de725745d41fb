package explore

import (
	"context"
	"encoding/json"
	"manifold/builds"
	"manifold/builds/content"
	"regexp"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxDiffFiles bounds each file list of a comparison.
const maxDiffFiles = 500

// Comparison sets two builds (platform by platform) or two manifests side by side.
type Comparison struct {
	A         string               `json:"a"`
	B         string               `json:"b"`
	Kind      string               `json:"kind"` // "builds" or "manifests"
	Platforms []PlatformComparison `json:"platforms"`
}

// PlatformComparison is one pair of manifests.
type PlatformComparison struct {
	Platform      string        `json:"platform"`
	A             *ManifestSide `json:"a"`
	B             *ManifestSide `json:"b"`
	Identical     bool          `json:"identical"`
	BaseA         []string      `json:"base_a,omitempty"`
	BaseB         []string      `json:"base_b,omitempty"`
	BaseChanged   bool          `json:"base_changed"`
	ConfigChanges []FieldChange `json:"config_changes"`
	LayersSame    []string      `json:"layers_same"`
	LayersAdded   []string      `json:"layers_added"`   // in B, not in A
	LayersRemoved []string      `json:"layers_removed"` // in A, not in B
	SizeDelta     int64         `json:"size_delta"`     // B − A, compressed
	FilesOnlyA    []FileEntry   `json:"files_only_a"`
	FilesOnlyB    []FileEntry   `json:"files_only_b"`
	FilesChanged  []FileChange  `json:"files_changed"`
	FilesNote     string        `json:"files_note,omitempty"`
}

// ManifestSide is one side of a comparison.
type ManifestSide struct {
	Digest       string   `json:"digest"`
	ConfigDigest string   `json:"config_digest"`
	Size         int64    `json:"size"` // config and layers, compressed
	Layers       []string `json:"layers"`
}

// FieldChange is a config field that differs.
type FieldChange struct {
	Field string `json:"field"`
	A     string `json:"a"`
	B     string `json:"b"`
}

// FileChange is a path on both sides whose size or type differs.
type FileChange struct {
	Path  string `json:"path"`
	SizeA int64  `json:"size_a"`
	SizeB int64  `json:"size_b"`
	TypeA string `json:"type_a"`
	TypeB string `json:"type_b"`
	// LinkA and LinkB are a link's targets (symlinks and hardlinks).
	LinkA string `json:"link_a,omitempty"`
	LinkB string `json:"link_b,omitempty"`
}

var fromStep = regexp.MustCompile(`^\[([a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?) [0-9]+/[0-9]+\] FROM (\S+)`)

// Compare compares two builds (ids) or two manifests (digests).
func (s *Service) Compare(ctx context.Context, a, b string) (*Comparison, error) {
	if a == "" || b == "" {
		return nil, builds.CodeErrorf(builds.EInvalid, "invalid_compare", "give two builds or two manifests: ?a=<id or digest>&b=<id or digest>")
	}
	c := &Comparison{A: a, B: b, Platforms: []PlatformComparison{}}
	switch {
	case builds.ValidID(a) && builds.ValidID(b):
		c.Kind = "builds"
		ba, ra, err := s.results.Result(ctx, a)
		if err != nil {
			return nil, err
		}
		bb, rb, err := s.results.Result(ctx, b)
		if err != nil {
			return nil, err
		}
		ia, err := s.indexView(ctx, ra)
		if err != nil {
			return nil, err
		}
		ib, err := s.indexView(ctx, rb)
		if err != nil {
			return nil, err
		}
		var plats []string
		for _, p := range ia.Platforms {
			plats = append(plats, p.Platform)
		}
		for _, p := range ib.Platforms {
			if !slices.Contains(plats, p.Platform) {
				plats = append(plats, p.Platform)
			}
		}
		for _, p := range plats {
			pc := PlatformComparison{Platform: p, BaseA: baseImages(ba, p), BaseB: baseImages(bb, p)}
			pc.BaseChanged = !slices.Equal(pc.BaseA, pc.BaseB)
			var da, db string
			for _, e := range ia.Platforms {
				if e.Platform == p {
					da = e.Digest
				}
			}
			for _, e := range ib.Platforms {
				if e.Platform == p {
					db = e.Digest
				}
			}
			if err := s.compareManifests(ctx, &pc, da, db); err != nil {
				return nil, err
			}
			c.Platforms = append(c.Platforms, pc)
		}
	default:
		c.Kind = "manifests"
		for _, x := range []string{a, b} {
			if _, err := digest.Parse(x); err != nil {
				return nil, builds.CodeErrorf(builds.EInvalid, "invalid_compare", "%q is neither a build id nor a manifest digest", x)
			}
		}
		pc := PlatformComparison{Platform: "a vs b"}
		if err := s.compareManifests(ctx, &pc, a, b); err != nil {
			return nil, err
		}
		c.Platforms = append(c.Platforms, pc)
	}
	return c, nil
}

// baseImages lists the images a build's FROM steps pulled for a platform.
func baseImages(b *builds.Build, platform string) []string {
	var out []string
	for _, st := range b.Steps {
		if m := fromStep.FindStringSubmatch(st.Name); m != nil && m[1] == platform && !slices.Contains(out, m[2]) {
			out = append(out, m[2])
		}
	}
	sort.Strings(out)
	return out
}

func (s *Service) side(ctx context.Context, ref string) (*ManifestSide, *ocispec.Image, error) {
	desc, err := s.statBlob(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	desc.MediaType = ocispec.MediaTypeImageManifest
	var man ocispec.Manifest
	if err := content.ReadJSON(ctx, s.blobs, desc, &man); err != nil {
		return nil, nil, err
	}
	if man.Config.Digest == "" {
		return nil, nil, builds.CodeErrorf(builds.EInvalid, "not_a_manifest", "%s is not an image manifest", ref)
	}
	side := &ManifestSide{Digest: desc.Digest.String(), ConfigDigest: man.Config.Digest.String(), Size: man.Config.Size, Layers: []string{}}
	for _, l := range man.Layers {
		side.Size += l.Size
		side.Layers = append(side.Layers, l.Digest.String())
	}
	var img ocispec.Image
	if err := content.ReadJSON(ctx, s.blobs, man.Config, &img); err != nil {
		return nil, nil, err
	}
	return side, &img, nil
}

func (s *Service) compareManifests(ctx context.Context, pc *PlatformComparison, a, b string) error {
	pc.ConfigChanges, pc.LayersSame, pc.LayersAdded, pc.LayersRemoved = []FieldChange{}, []string{}, []string{}, []string{}
	pc.FilesOnlyA, pc.FilesOnlyB, pc.FilesChanged = []FileEntry{}, []FileEntry{}, []FileChange{}
	var imgA, imgB *ocispec.Image
	var err error
	if a != "" {
		if pc.A, imgA, err = s.side(ctx, a); err != nil {
			return err
		}
	}
	if b != "" {
		if pc.B, imgB, err = s.side(ctx, b); err != nil {
			return err
		}
	}
	if pc.A == nil || pc.B == nil {
		return nil // a platform only one side has
	}
	pc.Identical = pc.A.Digest == pc.B.Digest
	pc.SizeDelta = pc.B.Size - pc.A.Size
	for _, l := range pc.A.Layers {
		if slices.Contains(pc.B.Layers, l) {
			pc.LayersSame = append(pc.LayersSame, l)
		} else {
			pc.LayersRemoved = append(pc.LayersRemoved, l)
		}
	}
	for _, l := range pc.B.Layers {
		if !slices.Contains(pc.A.Layers, l) {
			pc.LayersAdded = append(pc.LayersAdded, l)
		}
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	fields := []struct {
		name string
		a, b any
	}{
		{"os/arch", builds.FormatPlatform(imgA.OS, imgA.Architecture, imgA.Variant), builds.FormatPlatform(imgB.OS, imgB.Architecture, imgB.Variant)},
		{"Entrypoint", imgA.Config.Entrypoint, imgB.Config.Entrypoint}, {"Cmd", imgA.Config.Cmd, imgB.Config.Cmd},
		{"Env", imgA.Config.Env, imgB.Config.Env}, {"WorkingDir", imgA.Config.WorkingDir, imgB.Config.WorkingDir},
		{"User", imgA.Config.User, imgB.Config.User}, {"ExposedPorts", imgA.Config.ExposedPorts, imgB.Config.ExposedPorts},
		{"Volumes", imgA.Config.Volumes, imgB.Config.Volumes}, {"Labels", imgA.Config.Labels, imgB.Config.Labels},
		{"StopSignal", imgA.Config.StopSignal, imgB.Config.StopSignal},
	}
	for _, f := range fields {
		if x, y := js(f.a), js(f.b); x != y {
			pc.ConfigChanges = append(pc.ConfigChanges, FieldChange{Field: f.name, A: x, B: y})
		}
	}
	if pc.Identical || slices.Equal(pc.A.Layers, pc.B.Layers) {
		return nil
	}
	fa, ta, err := s.MergedFiles(ctx, pc.A.Digest)
	if err != nil {
		return err
	}
	fb, tb, err := s.MergedFiles(ctx, pc.B.Digest)
	if err != nil {
		return err
	}
	if ta.Truncated != "" || tb.Truncated != "" {
		pc.FilesNote = "a layer listing was cut short, so the file differences are partial"
	}
	byPath := map[string]FileEntry{}
	for _, f := range fb {
		byPath[f.Path] = f
	}
	seen := map[string]bool{}
	for _, f := range fa {
		seen[f.Path] = true
		g, ok := byPath[f.Path]
		switch {
		case !ok:
			if len(pc.FilesOnlyA) < maxDiffFiles {
				pc.FilesOnlyA = append(pc.FilesOnlyA, f)
			}
		case g.Size != f.Size || g.Type != f.Type || g.Link != f.Link:
			if len(pc.FilesChanged) < maxDiffFiles {
				pc.FilesChanged = append(pc.FilesChanged, FileChange{Path: f.Path, SizeA: f.Size, SizeB: g.Size, TypeA: f.Type, TypeB: g.Type, LinkA: f.Link, LinkB: g.Link})
			}
		}
	}
	for _, f := range fb {
		if !seen[f.Path] && len(pc.FilesOnlyB) < maxDiffFiles {
			pc.FilesOnlyB = append(pc.FilesOnlyB, f)
		}
	}
	return nil
}
