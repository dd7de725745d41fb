package templates

import "context"

// PageContext is what every page shows of the viewer: who they are, what they
// may do, and the CSRF token its forms carry.
type PageContext struct {
	User  string
	Role  string
	CSRF  string
	Setup bool // no accounts yet: this machine's own requests act as admin
}

type pageKey struct{}

// WithPage returns ctx carrying the page context.
func WithPage(ctx context.Context, p PageContext) context.Context {
	return context.WithValue(ctx, pageKey{}, p)
}

// Page returns the page context of ctx.
func Page(ctx context.Context) PageContext {
	p, _ := ctx.Value(pageKey{}).(PageContext)
	return p
}

// CanBuild reports whether the viewer may start, cancel and push builds.
func CanBuild(ctx context.Context) bool {
	r := Page(ctx).Role
	return r == "builder" || r == "admin"
}

// IsAdmin reports whether the viewer is an admin.
func IsAdmin(ctx context.Context) bool { return Page(ctx).Role == "admin" }

// CSRFQuery is "?csrf=…" for form actions whose bodies are streamed (multipart).
func CSRFQuery(ctx context.Context) string { return "?csrf=" + Page(ctx).CSRF }
