package explore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"manifold/builds"
	"manifold/builds/content"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blob kinds the explorer tells apart.
const (
	KindIndex       = "index"
	KindManifest    = "manifest"
	KindConfig      = "config"
	KindAttestation = "attestation"
	KindLayer       = "layer"
	KindUnknown     = "unknown"
)

// PlatformEntry is one platform of an index, with its attestations.
type PlatformEntry struct {
	Platform         string            `json:"platform"`
	Digest           string            `json:"digest"`
	MediaType        string            `json:"media_type"`
	Size             int64             `json:"size"`
	ConfigDigest     string            `json:"config_digest"`
	Layers           int               `json:"layers"`
	CompressedSize   int64             `json:"compressed_size"`   // config and layers as stored
	UncompressedSize *int64            `json:"uncompressed_size"` // once every layer was listed
	Annotations      map[string]string `json:"annotations,omitempty"`
	Attestations     []Attestation     `json:"attestations"`
	// Index is the nested index this platform came from, when not the top one.
	Index string `json:"index,omitempty"`
}

// Attestation is an attestation manifest describing a platform's manifest.
type Attestation struct {
	Digest         string   `json:"digest"`
	MediaType      string   `json:"media_type"`
	Size           int64    `json:"size"`
	PredicateTypes []string `json:"predicate_types"`
	Layers         []string `json:"layers"` // the in-toto statements' digests
}

// IndexView is an image index as the explorer shows it.
type IndexView struct {
	Digest      string            `json:"digest"`
	MediaType   string            `json:"media_type"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platforms   []PlatformEntry   `json:"platforms"`
}

// LayerEntry is one layer of a manifest with the instruction that made it.
type LayerEntry struct {
	Digest           string `json:"digest"`
	MediaType        string `json:"media_type"`
	Size             int64  `json:"size"`
	CreatedBy        string `json:"created_by"`
	UncompressedSize *int64 `json:"uncompressed_size"`
}

// ManifestView is an image manifest as the explorer shows it.
type ManifestView struct {
	Digest       string              `json:"digest"`
	MediaType    string              `json:"media_type"`
	Size         int64               `json:"size"`
	ArtifactType string              `json:"artifact_type,omitempty"`
	Config       ocispec.Descriptor  `json:"config"`
	Layers       []LayerEntry        `json:"layers"`
	Annotations  map[string]string   `json:"annotations,omitempty"`
	Subject      *ocispec.Descriptor `json:"subject,omitempty"`
}

// ConfigView is an image config with its history read back as a Dockerfile.
type ConfigView struct {
	Digest     string        `json:"digest"`
	Size       int64         `json:"size"`
	Platform   string        `json:"platform"`
	Image      ocispec.Image `json:"image"`
	Dockerfile string        `json:"dockerfile"`
}

// BlobView is any blob, parsed by what it is.
type BlobView struct {
	Kind        string          `json:"kind"`
	Digest      string          `json:"digest"`
	Size        int64           `json:"size"`
	MediaType   string          `json:"media_type"`
	Index       *IndexView      `json:"index,omitempty"`
	Manifest    *ManifestView   `json:"manifest,omitempty"`
	Config      *ConfigView     `json:"config,omitempty"`
	Attestation json.RawMessage `json:"attestation,omitempty"`
	// Provenance is the attestation read: builder, materials, args, or SBOM packages.
	Provenance *Provenance `json:"provenance,omitempty"`
	// Note says what was found when the blob is not what a viewer expects.
	Note string `json:"note,omitempty"`
	// Raw is the JSON blob's bytes (at most 4 MiB), for the page to print.
	Raw json.RawMessage `json:"-"`
}

func (s *Service) statBlob(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	d, err := digest.Parse(ref)
	if err != nil {
		return ocispec.Descriptor{}, builds.CodeErrorf(builds.EInvalid, "invalid_digest", "%q is not a digest like sha256:<64 hex digits>", ref)
	}
	info, err := s.blobs.Info(ctx, d)
	if err != nil {
		// A layer of an explored remote image is fetched when first opened.
		if ferr := s.fetchOrigin(ctx, d.String()); ferr != nil {
			if builds.ErrorKind(ferr) == builds.EInvalid {
				return ocispec.Descriptor{}, ferr
			}
			return ocispec.Descriptor{}, builds.CodeErrorf(builds.EUpstream, "registry_error", "blob %s is not stored, and fetching it failed: %v", d, ferr)
		}
		info, err = s.blobs.Info(ctx, d)
	}
	if err != nil {
		return ocispec.Descriptor{}, builds.CodeErrorf(builds.ENotFound, "blob_not_found", "no blob %s is stored here", d)
	}
	return ocispec.Descriptor{Digest: d, Size: info.Size}, nil
}

// sniff reads the start of a blob and says what it is.
func (s *Service) sniff(ctx context.Context, desc ocispec.Descriptor) (kind, mediaType string, body []byte, err error) {
	f, err := s.blobs.OpenBlob(desc.Digest)
	if err != nil {
		return "", "", nil, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	trimmed := bytes.TrimLeft(head, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		if desc.Size > content.MaxManifestSize {
			return KindUnknown, "application/json", nil, nil
		}
		body = make([]byte, desc.Size)
		if _, err := f.ReadAt(body, 0); err != nil && !errors.Is(err, io.EOF) {
			return "", "", nil, err
		}
		var probe struct {
			MediaType     string          `json:"mediaType"`
			Manifests     json.RawMessage `json:"manifests"`
			Layers        json.RawMessage `json:"layers"`
			Config        json.RawMessage `json:"config"`
			Architecture  string          `json:"architecture"`
			RootFS        json.RawMessage `json:"rootfs"`
			Type          string          `json:"_type"`
			PredicateType string          `json:"predicateType"`
		}
		if json.Unmarshal(body, &probe) != nil {
			return KindUnknown, "application/json", body, nil
		}
		switch {
		case probe.Manifests != nil:
			return KindIndex, orDefault(probe.MediaType, ocispec.MediaTypeImageIndex), body, nil
		case probe.Layers != nil && probe.Config != nil:
			return KindManifest, orDefault(probe.MediaType, ocispec.MediaTypeImageManifest), body, nil
		case strings.Contains(probe.Type, "in-toto.io/Statement"):
			return KindAttestation, "application/vnd.in-toto+json", body, nil
		case probe.RootFS != nil || probe.Architecture != "":
			return KindConfig, ocispec.MediaTypeImageConfig, body, nil
		}
		return KindUnknown, "application/json", body, nil
	}
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return KindLayer, ocispec.MediaTypeImageLayerGzip, nil, nil
	case len(head) >= 4 && bytes.Equal(head[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return KindLayer, ocispec.MediaTypeImageLayerZstd, nil, nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return KindLayer, ocispec.MediaTypeImageLayer, nil, nil
	}
	return KindUnknown, "application/octet-stream", nil, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Blob parses any stored blob by what it is.
func (s *Service) Blob(ctx context.Context, ref string) (*BlobView, error) {
	desc, err := s.statBlob(ctx, ref)
	if err != nil {
		return nil, err
	}
	kind, mt, body, err := s.sniff(ctx, desc)
	if err != nil {
		return nil, err
	}
	desc.MediaType = mt
	v := &BlobView{Kind: kind, Digest: desc.Digest.String(), Size: desc.Size, MediaType: mt, Raw: body}
	switch kind {
	case KindIndex:
		v.Index, err = s.indexView(ctx, desc)
	case KindManifest:
		v.Manifest, err = s.manifestView(ctx, desc)
	case KindConfig:
		v.Config, err = configView(desc, body)
	case KindAttestation:
		v.Attestation = body
		v.Provenance, err = ParseStatement(body)
	case KindUnknown:
		if desc.Size > content.MaxManifestSize && body == nil {
			v.Note = fmt.Sprintf("a JSON document of %d bytes, over the %d byte limit for manifests", desc.Size, content.MaxManifestSize)
		} else {
			v.Note = "neither an index, a manifest, a config, an attestation nor a layer archive"
		}
	}
	if err != nil {
		v.Note = "this blob could not be read as a " + kind + ": " + err.Error()
		v.Index, v.Manifest, v.Config = nil, nil, nil
	}
	return v, nil
}

// RawBlob opens a stored blob with the media type it appears to have.
func (s *Service) RawBlob(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	desc, err := s.statBlob(ctx, ref)
	if err != nil {
		return desc, err
	}
	_, desc.MediaType, _, err = s.sniff(ctx, desc)
	return desc, err
}

// BuildIndex is the index view of a build's result.
func (s *Service) BuildIndex(ctx context.Context, id string) (*IndexView, error) {
	_, root, err := s.results.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.indexView(ctx, root)
}

func (s *Service) indexView(ctx context.Context, desc ocispec.Descriptor) (*IndexView, error) {
	var idx ocispec.Index
	if err := content.ReadJSON(ctx, s.blobs, desc, &idx); err != nil {
		return nil, err
	}
	v := &IndexView{Digest: desc.Digest.String(), MediaType: orDefault(idx.MediaType, desc.MediaType), Size: desc.Size, Annotations: idx.Annotations, Platforms: []PlatformEntry{}}
	if err := s.collectPlatforms(ctx, idx, "", v, 0); err != nil {
		return nil, err
	}
	return v, nil
}

func (s *Service) collectPlatforms(ctx context.Context, idx ocispec.Index, from string, v *IndexView, depth int) error {
	if depth > 4 {
		return fmt.Errorf("indexes nested more than 4 deep")
	}
	var attestations []ocispec.Descriptor
	for _, m := range idx.Manifests {
		switch {
		case content.IsAttestation(m):
			attestations = append(attestations, m)
		case content.IsIndex(m.MediaType):
			var nested ocispec.Index
			if err := content.ReadJSON(ctx, s.blobs, m, &nested); err != nil {
				return err
			}
			if err := s.collectPlatforms(ctx, nested, m.Digest.String(), v, depth+1); err != nil {
				return err
			}
		default:
			e := PlatformEntry{Digest: m.Digest.String(), MediaType: m.MediaType, Size: m.Size, Annotations: m.Annotations, Index: from, Attestations: []Attestation{}}
			if m.Platform != nil {
				e.Platform = builds.FormatPlatform(m.Platform.OS, m.Platform.Architecture, m.Platform.Variant)
			}
			var man ocispec.Manifest
			if err := content.ReadJSON(ctx, s.blobs, m, &man); err != nil {
				return err
			}
			e.ConfigDigest, e.Layers, e.CompressedSize = man.Config.Digest.String(), len(man.Layers), man.Config.Size
			var total int64
			known := true
			for _, l := range man.Layers {
				e.CompressedSize += l.Size
				if u, ok := s.uncompressedSize(ctx, l); ok {
					total += u
				} else {
					known = false
				}
			}
			if known {
				e.UncompressedSize = &total
			}
			v.Platforms = append(v.Platforms, e)
		}
	}
	// Attestations go under the platform whose manifest they describe.
	for _, a := range attestations {
		subject := a.Annotations["vnd.docker.reference.digest"]
		att := Attestation{Digest: a.Digest.String(), MediaType: a.MediaType, Size: a.Size, PredicateTypes: []string{}, Layers: []string{}}
		var man ocispec.Manifest
		if err := content.ReadJSON(ctx, s.blobs, a, &man); err == nil {
			for _, l := range man.Layers {
				att.Layers = append(att.Layers, l.Digest.String())
				if pt := l.Annotations["in-toto.io/predicate-type"]; pt != "" {
					att.PredicateTypes = append(att.PredicateTypes, pt)
				}
			}
		}
		for i := range v.Platforms {
			if v.Platforms[i].Digest == subject {
				v.Platforms[i].Attestations = append(v.Platforms[i].Attestations, att)
			}
		}
	}
	return nil
}

// autoListSize: layers up to this size are listed on first view, so their
// unpacked size is known; larger ones wait until someone opens them.
const autoListSize = 32 << 20

func (s *Service) uncompressedSize(ctx context.Context, layer ocispec.Descriptor) (int64, bool) {
	l, err := s.records.LayerListing(ctx, layer.Digest.String(), false)
	if err == nil && l != nil {
		return l.UncompressedSize, true
	}
	if layer.Size > autoListSize {
		return 0, false
	}
	if _, err := s.blobs.Info(ctx, layer.Digest); err != nil {
		return 0, false // a remote image's layer not fetched yet
	}
	full, err := s.ListLayer(ctx, layer.Digest.String())
	if err != nil {
		return 0, false
	}
	return full.UncompressedSize, true
}

func (s *Service) manifestView(ctx context.Context, desc ocispec.Descriptor) (*ManifestView, error) {
	var man ocispec.Manifest
	if err := content.ReadJSON(ctx, s.blobs, desc, &man); err != nil {
		return nil, err
	}
	v := &ManifestView{Digest: desc.Digest.String(), MediaType: orDefault(man.MediaType, desc.MediaType), Size: desc.Size,
		ArtifactType: man.ArtifactType, Config: man.Config, Annotations: man.Annotations, Subject: man.Subject, Layers: []LayerEntry{}}
	var history []ocispec.History
	if man.Config.MediaType == ocispec.MediaTypeImageConfig || man.Config.MediaType == "application/vnd.docker.container.image.v1+json" {
		var img ocispec.Image
		if err := content.ReadJSON(ctx, s.blobs, man.Config, &img); err == nil {
			for _, h := range img.History {
				if !h.EmptyLayer {
					history = append(history, h)
				}
			}
		}
	}
	for i, l := range man.Layers {
		e := LayerEntry{Digest: l.Digest.String(), MediaType: l.MediaType, Size: l.Size}
		if i < len(history) {
			e.CreatedBy = instruction(history[i].CreatedBy)
		}
		if u, ok := s.uncompressedSize(ctx, l); ok {
			e.UncompressedSize = &u
		}
		v.Layers = append(v.Layers, e)
	}
	return v, nil
}

// instruction turns a history entry's created_by back into a Dockerfile line.
func instruction(createdBy string) string {
	s := strings.TrimSpace(strings.TrimSuffix(createdBy, " # buildkit"))
	if rest, ok := strings.CutPrefix(s, "/bin/sh -c #(nop) "); ok {
		return execForm(strings.TrimSpace(rest))
	}
	if rest, ok := strings.CutPrefix(s, "|"); ok { // "|1 ARG=x /bin/sh -c …": build args in use
		if i := strings.Index(rest, "/bin/sh -c "); i >= 0 {
			return "RUN " + rest[i+len("/bin/sh -c "):]
		}
	}
	if rest, ok := strings.CutPrefix(s, "/bin/sh -c "); ok {
		return "RUN " + rest
	}
	if rest, ok := strings.CutPrefix(s, "RUN /bin/sh -c "); ok { // BuildKit's form
		return "RUN " + rest
	}
	return execForm(s)
}

// execForm rewrites BuildKit's history text for exec-form instructions,
// `CMD ["cat" "/app/a"]` (Go's %q of a list), as the Dockerfile's JSON
// form, `CMD ["cat", "/app/a"]`. Other lines pass unchanged.
func execForm(line string) string {
	kw, rest, ok := strings.Cut(line, " ")
	switch kw {
	case "CMD", "ENTRYPOINT", "SHELL", "VOLUME", "RUN":
	default:
		return line
	}
	rest = strings.TrimSpace(rest)
	if !ok || !strings.HasPrefix(rest, "[") || !strings.HasSuffix(rest, "]") {
		return line
	}
	var args []string
	if err := json.Unmarshal([]byte(rest), &args); err != nil {
		args = nil
		body := strings.TrimSpace(rest[1 : len(rest)-1])
		for body != "" {
			q, err := strconv.QuotedPrefix(body)
			if err != nil {
				return line
			}
			a, err := strconv.Unquote(q)
			if err != nil {
				return line
			}
			args = append(args, a)
			body = strings.TrimLeft(body[len(q):], " ,")
		}
	}
	var b strings.Builder
	b.WriteString(kw + " [")
	for i, a := range args {
		if i > 0 {
			b.WriteString(", ")
		}
		j, _ := json.Marshal(a)
		b.Write(j)
	}
	b.WriteString("]")
	return b.String()
}

func configView(desc ocispec.Descriptor, body []byte) (*ConfigView, error) {
	var img ocispec.Image
	if err := json.Unmarshal(body, &img); err != nil {
		return nil, err
	}
	v := &ConfigView{Digest: desc.Digest.String(), Size: desc.Size, Image: img, Platform: builds.FormatPlatform(img.OS, img.Architecture, img.Variant)}
	var b strings.Builder
	b.WriteString("# rebuilt from the image's history; the base image's own steps come first\n")
	for _, h := range img.History {
		if line := instruction(h.CreatedBy); line != "" {
			b.WriteString(line + "\n")
		}
	}
	v.Dockerfile = b.String()
	return v, nil
}

// FileEntry is one entry of a layer (or of a platform's merged filesystem).
type FileEntry struct {
	Path string `json:"path"`
	// Type is file, dir, symlink, hardlink, char, block, fifo, whiteout (the
	// path is deleted) or opaque (the folder's lower contents are hidden).
	Type string `json:"type"`
	Size int64  `json:"size"`
	Mode int64  `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Link string `json:"link,omitempty"`
}

// LayerListing is a layer's file list, as computed once and cached.
type LayerListing struct {
	Digest           string      `json:"digest"`
	UncompressedSize int64       `json:"uncompressed_size"`
	Entries          int         `json:"entries"`
	Truncated        string      `json:"truncated,omitempty"`
	Files            []FileEntry `json:"files"`
}

// ListingLimits bound a layer listing.
type ListingLimits struct {
	MaxEntries      int   // 200,000 by default
	MaxUncompressed int64 // 32 GiB by default: past it, a decompression bomb is cut off
}

func (l ListingLimits) withDefaults() ListingLimits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = 200_000
	}
	if l.MaxUncompressed <= 0 {
		l.MaxUncompressed = 32 << 30
	}
	return l
}

// countingReader counts bytes and stops past a limit.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

var errTooBig = errors.New("uncompressed size limit reached")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		return 0, errTooBig
	}
	if int64(len(p)) > c.limit-c.n {
		p = p[:c.limit-c.n]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ListLayer lists a layer's files, streaming the blob once and caching the
// result in the database; later calls read the cache.
func (s *Service) ListLayer(ctx context.Context, ref string) (*LayerListing, error) {
	desc, err := s.statBlob(ctx, ref)
	if err != nil {
		return nil, err
	}
	if l, err := s.records.LayerListing(ctx, desc.Digest.String(), true); err != nil {
		return nil, err
	} else if l != nil {
		return l, nil
	}
	l, err := s.listLayer(ctx, desc)
	if err != nil {
		return nil, err
	}
	if err := s.records.SaveLayerListing(ctx, l); err != nil {
		return nil, err
	}
	return l, nil
}

func (s *Service) listLayer(ctx context.Context, desc ocispec.Descriptor) (*LayerListing, error) {
	limits := s.listing.withDefaults()
	f, err := s.blobs.OpenBlob(desc.Digest)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(4)
	var r io.Reader = br
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, builds.CodeErrorf(builds.EInvalid, "not_a_layer", "blob %s is not a readable gzip layer: %v", desc.Digest, err)
		}
		zr.Multistream(true)
		r = zr
	case len(head) >= 4 && bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, builds.CodeErrorf(builds.EInvalid, "not_a_layer", "blob %s is not a readable zstd layer: %v", desc.Digest, err)
		}
		defer zr.Close()
		r = zr
	}
	counted := &countingReader{r: r, limit: limits.MaxUncompressed}
	tr := tar.NewReader(counted)
	l := &LayerListing{Digest: desc.Digest.String(), Files: []FileEntry{}}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTooBig) {
			l.Truncated = fmt.Sprintf("the layer unpacks to more than %d bytes; the listing stops there", limits.MaxUncompressed)
			break
		}
		if err != nil {
			if len(l.Files) == 0 {
				return nil, builds.CodeErrorf(builds.EInvalid, "not_a_layer", "blob %s is not a layer archive: %v", desc.Digest, err)
			}
			l.Truncated = "the archive is damaged after this point: " + err.Error()
			break
		}
		if len(l.Files) >= limits.MaxEntries {
			l.Truncated = fmt.Sprintf("the layer has more than %d entries; the listing stops there", limits.MaxEntries)
			break
		}
		l.Files = append(l.Files, fileEntry(hdr))
	}
	// Drain, so the uncompressed size counts file contents too.
	if l.Truncated == "" {
		_, _ = io.Copy(io.Discard, counted)
	}
	l.UncompressedSize, l.Entries = counted.n, len(l.Files)
	return l, nil
}

func fileEntry(h *tar.Header) FileEntry {
	p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
	e := FileEntry{Path: p, Size: h.Size, Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid}
	dir, base := path.Split(p)
	switch {
	case base == ".wh..wh..opq":
		e.Type, e.Path, e.Size = "opaque", strings.TrimSuffix(dir, "/"), 0
	case strings.HasPrefix(base, ".wh."):
		e.Type, e.Path, e.Size = "whiteout", dir+strings.TrimPrefix(base, ".wh."), 0
	default:
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type, e.Size = "dir", 0
		case tar.TypeSymlink:
			e.Type, e.Link, e.Size = "symlink", h.Linkname, 0
		case tar.TypeLink:
			e.Type, e.Link, e.Size = "hardlink", strings.TrimPrefix(path.Clean("/"+h.Linkname), "/"), 0
		case tar.TypeChar:
			e.Type = "char"
		case tar.TypeBlock:
			e.Type = "block"
		case tar.TypeFifo:
			e.Type = "fifo"
		default:
			e.Type = "file"
		}
	}
	return e
}

// MergedFiles applies a platform manifest's layers in order, honouring
// whiteouts and opaque folders: the filesystem a container of it starts with.
// The summary's UncompressedSize is the sum of the layers' unpacked sizes
// (what the image takes unpacked, as `docker image ls` counts it), and its
// Truncated the first layer's reason for stopping short, if any.
func (s *Service) MergedFiles(ctx context.Context, manifestRef string) ([]FileEntry, LayerListing, error) {
	var sum LayerListing
	desc, err := s.statBlob(ctx, manifestRef)
	if err != nil {
		return nil, sum, err
	}
	sum.Digest = desc.Digest.String()
	desc.MediaType = ocispec.MediaTypeImageManifest
	var man ocispec.Manifest
	if err := content.ReadJSON(ctx, s.blobs, desc, &man); err != nil {
		return nil, sum, err
	}
	if len(man.Layers) == 0 && man.Config.Digest == "" {
		return nil, sum, builds.CodeErrorf(builds.EInvalid, "not_a_manifest", "%s is not an image manifest", desc.Digest)
	}
	files := map[string]FileEntry{}
	for _, l := range man.Layers {
		listing, err := s.ListLayer(ctx, l.Digest.String())
		if err != nil {
			return nil, sum, err
		}
		sum.UncompressedSize += listing.UncompressedSize
		if listing.Truncated != "" && sum.Truncated == "" {
			sum.Truncated = listing.Truncated
		}
		for _, f := range listing.Files {
			switch f.Type {
			case "whiteout":
				delete(files, f.Path)
				prefix := f.Path + "/"
				for p := range files {
					if strings.HasPrefix(p, prefix) {
						delete(files, p)
					}
				}
			case "opaque":
				prefix := f.Path + "/"
				for p := range files {
					if strings.HasPrefix(p, prefix) {
						delete(files, p)
					}
				}
			default:
				files[f.Path] = f
			}
		}
	}
	out := make([]FileEntry, 0, len(files))
	for _, f := range files {
		if f.Path != "" {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	sum.Entries = len(out)
	return out, sum, nil
}

// SortFiles orders a listing: by path (default) or largest first.
// It never returns nil: an empty layer lists "files": [].
func SortFiles(files []FileEntry, by string) []FileEntry {
	out := append(make([]FileEntry, 0, len(files)), files...)
	if by == "size" {
		sort.SliceStable(out, func(i, j int) bool { return out[i].Size > out[j].Size })
	} else {
		sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	}
	return out
}
