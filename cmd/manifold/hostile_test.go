package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostileInputs(t *testing.T) {
	a := startApp(t, "", "--buildkit", env.Addr(), "--context-max-bytes", "65536", "--context-max-files", "50")
	df := tarEntry{name: "Dockerfile", body: "FROM busybox:1\nCOPY . /\n"}
	many := []tarEntry{df}
	for i := range 60 {
		many = append(many, tarEntry{name: "f/" + strings.Repeat("x", i+1), body: "x"})
	}
	random := bytes.Repeat([]byte("not an archive at all "), 40)
	gz := makeTar(t, true, df, tarEntry{name: "big", body: strings.Repeat("z", 40000)})
	truncated := gz[:len(gz)/2]
	opts := map[string]any{"platforms": []string{"linux/amd64"}}
	tests := []struct {
		name    string
		options map[string]any
		archive []byte
		code    string
	}{
		{"dot-dot entry", opts, makeTar(t, false, df, tarEntry{name: "../escape", body: "x"}), "invalid_context"},
		{"dot-dot inside", opts, makeTar(t, false, df, tarEntry{name: "a/../../escape", body: "x"}), "invalid_context"},
		{"absolute path", opts, makeTar(t, false, df, tarEntry{name: "/etc/cron.d/x", body: "x"}), "invalid_context"},
		{"symlink to absolute", opts, makeTar(t, false, df, tarEntry{name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"}), "invalid_context"},
		{"symlink climbing out", opts, makeTar(t, false, df, tarEntry{name: "a/l", typ: tar.TypeSymlink, link: "../../outside"}), "invalid_context"},
		{"write through a link", opts, makeTar(t, false, df, tarEntry{name: "d", typ: tar.TypeSymlink, link: "sub"}, tarEntry{name: "d/x", body: "x"}), "invalid_context"},
		{"hard link outside", opts, makeTar(t, false, df, tarEntry{name: "h", typ: tar.TypeLink, link: "../etc/passwd"}), "invalid_context"},
		{"hard link to nothing", opts, makeTar(t, false, df, tarEntry{name: "h", typ: tar.TypeLink, link: "missing"}), "invalid_context"},
		{"char device", opts, makeTar(t, false, df, tarEntry{name: "dev", typ: tar.TypeChar}), "invalid_context"},
		{"block device", opts, makeTar(t, false, df, tarEntry{name: "dev", typ: tar.TypeBlock}), "invalid_context"},
		{"fifo", opts, makeTar(t, false, df, tarEntry{name: "pipe", typ: tar.TypeFifo}), "invalid_context"},
		{"too many files", opts, makeTar(t, false, many...), "invalid_context"},
		{"unpacks too large", opts, makeTar(t, true, df, tarEntry{name: "big", body: strings.Repeat("z", 70000)}), "invalid_context"},
		{"archive too large", opts, append(makeTar(t, false, df), make([]byte, 70000)...), "context_too_large"},
		{"not an archive", opts, random, "invalid_context"},
		{"truncated gzip", opts, truncated, "invalid_context"},
		{"empty archive", opts, []byte{}, "invalid_context"},
		{"no Dockerfile in context", opts, makeTar(t, false, tarEntry{name: "x", body: "x"}), "invalid_path"},
		{"dockerfile_path outside", map[string]any{"dockerfile_path": "../Dockerfile"}, makeTar(t, false, df), "invalid_path"},
		{"dockerfile_path absolute", map[string]any{"dockerfile_path": "/etc/passwd"}, makeTar(t, false, df), "invalid_path"},
		{"dockerfile_path missing", map[string]any{"dockerfile_path": "build/Dockerfile"}, makeTar(t, false, df), "invalid_path"},
		{"git and upload", map[string]any{"git": map[string]string{"url": "https://example.com/r.git"}}, makeTar(t, false, df), "invalid_context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := a.postContext(t, tt.options, tt.archive)
			var e struct{ Error, Code string }
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Code != tt.code || len(e.Error) < 20 {
				t.Fatalf("= %d %s, want 400 %s with a sentence", code, body, tt.code)
			}
		})
	}

	jsonTests := []struct{ name, body, code string }{
		{"file:// git", `{"git":{"url":"file:///etc"}}`, "invalid_git"},
		{"local path git", `{"git":{"url":"/srv/repo.git"}}`, "invalid_git"},
		{"ext transport", `{"git":{"url":"ext::sh -c touch% /tmp/pwned"}}`, "invalid_git"},
		{"http git", `{"git":{"url":"http://example.com/r.git"}}`, "invalid_git"},
		{"option as URL", `{"git":{"url":"--upload-pack=touch /tmp/x"}}`, "invalid_git"},
		{"option in ref", `{"git":{"url":"https://example.com/r.git","ref":"--upload-pack=touch /tmp/x"}}`, "invalid_git"},
		{"dash ref", `{"git":{"url":"https://example.com/r.git","ref":"-x"}}`, "invalid_git"},
		{"ref with spaces", `{"git":{"url":"https://example.com/r.git","ref":"main; rm -rf /"}}`, "invalid_git"},
		{"ref climbing", `{"git":{"url":"https://example.com/r.git","ref":"a/../b"}}`, "invalid_git"},
		{"fragment smuggled in URL", `{"git":{"url":"https://example.com/r.git#main:../../"}}`, "invalid_git"},
		{"subdir climbing", `{"git":{"url":"https://example.com/r.git","subdir":"../.."}}`, "invalid_git"},
		{"password in URL", `{"git":{"url":"https://user:secret@example.com/r.git"}}`, "invalid_git"},
		{"empty git URL", `{"git":{"url":""}}`, "invalid_git"},
		{"dockerfile_path without context", `{"dockerfile_path":"Dockerfile"}`, "invalid_path"},
		{"both dockerfile and path", `{"dockerfile":"FROM busybox:1","dockerfile_path":"Dockerfile","git":{"url":"https://example.com/r.git"}}`, "invalid_path"},
		{"build arg with space", `{"dockerfile":"FROM busybox:1","build_args":{"A B":"x"}}`, "invalid_build_arg"},
		{"build arg empty name", `{"dockerfile":"FROM busybox:1","build_args":{"":"x"}}`, "invalid_build_arg"},
		{"target with slash", `{"dockerfile":"FROM busybox:1","target":"a/b"}`, "invalid_target"},
	}
	for _, tt := range jsonTests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := a.do(t, "POST", "/api/v1/builds", tt.body)
			var e struct{ Error, Code string }
			_ = json.Unmarshal(body, &e)
			if code != 400 || e.Code != tt.code || len(e.Error) < 20 {
				t.Fatalf("= %d %s, want 400 %s with a sentence", code, body, tt.code)
			}
		})
	}

	multipartTests := []struct {
		name  string
		parts map[string]string
		code  string
	}{
		{"no options part", map[string]string{"context": string(makeTar(t, false, df))}, "invalid_multipart"},
		{"no context part", map[string]string{"options": `{"dockerfile":"FROM busybox:1"}`}, "invalid_multipart"},
		{"unknown part", map[string]string{"options": `{}`, "junk": "x"}, "invalid_multipart"},
		{"bad options JSON", map[string]string{"context": string(makeTar(t, false, df)), "options": `{"platforms":`}, "invalid_json"},
	}
	for _, tt := range multipartTests {
		t.Run(tt.name, func(t *testing.T) {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			for _, k := range []string{"context", "options", "junk"} {
				if v, ok := tt.parts[k]; ok {
					w, _ := mw.CreateFormFile(k, k)
					io.WriteString(w, v)
				}
			}
			mw.Close()
			resp, err := http.Post(a.URL+"/api/v1/builds", mw.FormDataContentType(), &body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct{ Error, Code string }
			_ = json.Unmarshal(b, &e)
			if resp.StatusCode != 400 || e.Code != tt.code {
				t.Fatalf("= %d %s, want 400 %s", resp.StatusCode, b, tt.code)
			}
		})
	}

	// Nothing refused stays behind: no build, no stored upload, no partial ingest, no scratch.
	_, list := a.do(t, "GET", "/api/v1/builds", "")
	if !strings.Contains(string(list), `"builds": []`) {
		t.Fatalf("refused requests left builds: %s", list)
	}
	var blobs []string
	_ = filepath.Walk(filepath.Join(a.Data, "content"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			blobs = append(blobs, p)
		}
		return nil
	})
	if len(blobs) > 0 {
		t.Fatalf("refused uploads left files in the content store: %v", blobs)
	}
	if left, _ := filepath.Glob(filepath.Join(a.Data, "tmp", "*")); len(left) > 0 {
		t.Fatalf("scratch left behind: %v", left)
	}
}
