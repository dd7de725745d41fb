// Package static holds the CSS, JS and icons, embedded into the binary and
// served under content-hashed names with long cache headers.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed files
var files embed.FS

// names maps "app.css" to "app.3f2a1b9c0d1e.css" and back, computed once from the embedded bytes.
var names = sync.OnceValue(func() (n struct{ hashed, reverse map[string]string }) {
	n.hashed, n.reverse = map[string]string{}, map[string]string{}
	_ = fs.WalkDir(files, "files", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "files/")
		ext := path.Ext(name)
		h := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:])[:12] + ext
		n.hashed[name] = h
		n.reverse[h] = name
		return nil
	})
	return n
})

// Path returns the URL of a static file under its content-hashed name.
func Path(name string) string {
	if h, ok := names().hashed[name]; ok {
		return "/static/" + h
	}
	return "/static/" + name
}

// Handler serves /static/<hashed name> with a year-long immutable cache.
func Handler() http.Handler {
	sub, _ := fs.Sub(files, "files")
	fileServer := http.FileServerFS(sub)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := names().reverse[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		r2 := r.Clone(r.Context())
		r2.URL.Path = name
		fileServer.ServeHTTP(w, r2)
	}))
}
