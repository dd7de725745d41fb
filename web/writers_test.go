package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readerFromWriter records whether ReadFrom was used.
type readerFromWriter struct {
	*httptest.ResponseRecorder
	used bool
}

func (w *readerFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.used = true
	return io.Copy(w.ResponseRecorder, r)
}

// TestWrappersKeepReadFrom: the middleware's response wrappers pass
// ReadFrom through, so net/http can send a blob's file with sendfile.
func TestWrappersKeepReadFrom(t *testing.T) {
	for name, wrap := range map[string]func(http.ResponseWriter) http.ResponseWriter{
		"startedWriter": func(w http.ResponseWriter) http.ResponseWriter { return &startedWriter{ResponseWriter: w} },
		"statusWriter":  func(w http.ResponseWriter) http.ResponseWriter { return &statusWriter{ResponseWriter: w} },
	} {
		inner := &readerFromWriter{ResponseRecorder: httptest.NewRecorder()}
		w := wrap(inner)
		rf, ok := w.(io.ReaderFrom)
		if !ok {
			t.Fatalf("%s hides ReadFrom", name)
		}
		if n, err := rf.ReadFrom(strings.NewReader("blob bytes")); err != nil || n != 10 || !inner.used || inner.Body.String() != "blob bytes" {
			t.Fatalf("%s: %d %v used=%v %q", name, n, err, inner.used, inner.Body.String())
		}
	}
}
