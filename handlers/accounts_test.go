package handlers

import "testing"

func TestSafeNext(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/builds/abc", "/builds/abc"},
		{"/builds?status=failed&limit=5", "/builds?status=failed&limit=5"},
		{"/blobs/sha256:abc#layers", "/blobs/sha256:abc#layers"},
		{"//evil.example/x", "/"},
		{"/\t/evil.example/x", "/"},
		{"/\n/evil.example/x", "/"},
		{"/\r\n/evil.example", "/"},
		{"/\\evil.example", "/"},
		{"\\\\evil.example", "/"},
		{"/%09/evil.example", "/"},
		{"/%2F/evil.example", "/"},
		{"/%5Cevil.example", "/"},
		{"https://evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"evil.example", "/"},
		{"/\u0085/evil.example", "/"},
		{"/\x00", "/"},
		{"/x\x7f", "/"},
	}
	for _, tt := range tests {
		if got := safeNext(tt.in); got != tt.want {
			t.Errorf("safeNext(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBlobContentType(t *testing.T) {
	tests := []struct{ in, want string }{
		{"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.manifest.v1+json"},
		{"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"},
		{"application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"application/vnd.in-toto+json", "application/vnd.in-toto+json"},
		{"application/json", "application/json"},
		{"text/html", "application/octet-stream"},
		{"text/html; charset=utf-8", "application/octet-stream"},
		{"TEXT/HTML", "application/octet-stream"},
		{"image/svg+xml", "application/octet-stream"},
		{"application/xhtml+xml", "application/octet-stream"},
		{"application/vnd.oci.image.manifest.v1+json; x=<script>", "application/octet-stream"},
		{"", "application/octet-stream"},
		{"text/html\r\nX: y", "application/octet-stream"},
	}
	for _, tt := range tests {
		if got := blobContentType(tt.in); got != tt.want {
			t.Errorf("blobContentType(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
