package builds

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func FuzzParsePlatforms(f *testing.F) {
	for _, s := range []string{"linux/amd64,linux/arm64", "linux/arm/v7", "linux/aarch64", "windows/amd64", "linux", "linux//x", "linux/amd64/v9/x", "Linux/AMD64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParsePlatforms(strings.Split(s, ","))
		if err != nil {
			if ErrorKind(err) != EInvalid || ErrorMessage(err) == "" {
				t.Fatalf("bad platform %q gave an error without kind or sentence: %v", s, err)
			}
			return
		}
		for _, p := range out {
			again, err := ParsePlatform(p)
			if err != nil || again != p {
				t.Fatalf("normalized %q does not parse to itself: %q, %v", p, again, err)
			}
			if strings.Count(p, "/") < 1 || strings.ContainsAny(p, " \t,") {
				t.Fatalf("normalized platform %q has a bad shape", p)
			}
		}
	})
}

func fuzzTar(entries ...tarEntryF) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		_ = tw.WriteHeader(h)
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

type tarEntryF struct {
	name, body, link string
	typ              byte
}

func FuzzContextArchive(f *testing.F) {
	f.Add(fuzzTar(tarEntryF{name: "Dockerfile", body: "FROM busybox:1", typ: tar.TypeReg}))
	f.Add(fuzzTar(tarEntryF{name: "a/", typ: tar.TypeDir}, tarEntryF{name: "a/b", body: "x", typ: tar.TypeReg}, tarEntryF{name: "l", link: "a/b", typ: tar.TypeSymlink}))
	f.Add(fuzzTar(tarEntryF{name: "../x", body: "x", typ: tar.TypeReg}))
	f.Add(fuzzTar(tarEntryF{name: "d", link: "/etc", typ: tar.TypeSymlink}, tarEntryF{name: "d/passwd", body: "x", typ: tar.TypeReg}))
	f.Add(fuzzTar(tarEntryF{name: "f", body: "x", typ: tar.TypeReg}, tarEntryF{name: "h", link: "f", typ: tar.TypeLink}))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	// One store for every input (each is its own digest): opening a store
	// per input made each run slow enough that minimizing an input could
	// outlast -fuzztime.
	s, err := local.NewStore(filepath.Join(f.TempDir(), "store"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		ctx := context.Background()
		if len(data) == 0 {
			return
		}
		dg := digest.FromBytes(data)
		if err := content.WriteBlob(ctx, s, "fuzz", bytes.NewReader(data), ocispec.Descriptor{Digest: dg, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		limits := ContextLimits{MaxBytes: 1 << 20, MaxFiles: 200}
		if _, _, err := ScanContext(ctx, s, dg.String(), limits); err != nil {
			if ErrorKind(err) != EInvalid {
				t.Fatalf("scan error without kind: %v", err)
			}
			return
		}
		out := filepath.Join(dir, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := ExtractContext(ctx, s, dg.String(), out, limits); err != nil {
			return // refused midway is fine; escaping is not
		}
		// Nothing was written outside the folder, and no link leads out of it.
		_ = filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return nil
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				target, _ := os.Readlink(p)
				resolved := filepath.Join(filepath.Dir(p), target)
				if filepath.IsAbs(target) || !strings.HasPrefix(resolved+"/", out+"/") && resolved != out {
					t.Fatalf("link %s → %s leaves the context", p, target)
				}
			}
			return nil
		})
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "out" {
				t.Fatalf("extraction wrote %s outside its folder", e.Name())
			}
		}
	})
}

func FuzzGitSource(f *testing.F) {
	f.Add("https://github.com/moby/buildkit.git", "v0.34.2", "frontend")
	f.Add("git@github.com:org/repo.git", "main", "")
	f.Add("file:///etc", "", "")
	f.Add("https://h/r.git", "--upload-pack=x", "../..")
	f.Add("ext::sh -c x", "", "")
	f.Fuzz(func(t *testing.T, u, ref, sub string) {
		g, err := GitSource{URL: u, Ref: ref, Subdir: sub}.Validate()
		if err != nil {
			if ErrorCode(err) != "invalid_git" {
				t.Fatalf("git error code %q: %v", ErrorCode(err), err)
			}
			return
		}
		if strings.HasPrefix(g.URL, "-") || strings.HasPrefix(g.Ref, "-") || strings.Contains(g.Ref, "..") {
			t.Fatalf("accepted an option-looking value: %+v", g)
		}
		if strings.ContainsAny(g.URL+g.Ref+g.Subdir, "\x00\n\r#") {
			t.Fatalf("accepted a control character or fragment: %+v", g)
		}
		if strings.HasPrefix(g.URL, "file:") || strings.HasPrefix(g.URL, "/") || strings.HasPrefix(g.URL, "ext:") {
			t.Fatalf("accepted a local transport: %+v", g)
		}
		for _, part := range strings.Split(g.Subdir, "/") {
			if part == ".." {
				t.Fatalf("accepted a climbing subdir: %+v", g)
			}
		}
	})
}
