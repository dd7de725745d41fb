package content

import (
	"bytes"
	"context"
	"io"
	"testing"

	ccontent "github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// memProvider serves blobs from memory, for decoding fuzzed manifests.
type memProvider map[digest.Digest][]byte

type memReaderAt struct{ *bytes.Reader }

func (memReaderAt) Close() error  { return nil }
func (m memReaderAt) Size() int64 { return m.Reader.Size() }

func (m memProvider) ReaderAt(_ context.Context, d ocispec.Descriptor) (ccontent.ReaderAt, error) {
	b, ok := m[d.Digest]
	if !ok {
		return nil, io.ErrUnexpectedEOF
	}
	return memReaderAt{bytes.NewReader(b)}, nil
}

func FuzzManifestDecoding(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2,"platform":{"os":"linux","architecture":"arm64"}}]}`), true)
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`), false)
	f.Add([]byte(`{}`), false)
	f.Add([]byte(`not json`), true)
	f.Fuzz(func(t *testing.T, data []byte, index bool) {
		p := memProvider{digest.FromBytes(data): data, digest.FromString("{}"): []byte("{}")}
		mt := ocispec.MediaTypeImageManifest
		if index {
			mt = ocispec.MediaTypeImageIndex
		}
		root := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
		// Errors are fine; panics and hangs are not.
		_, _ = ReadManifests(context.Background(), p, root)
		_, _ = Reachable(context.Background(), p, root)
		_, _ = PlatformManifest(context.Background(), p, root, "linux/arm64")
	})
}
