package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"manifold/builds/accounts"
	"manifold/handlers"
	"manifold/static"
)

// routes is the whole HTTP surface in one place, grouped by the role each part needs.
func (s *Server) routes(h *handlers.Handlers) http.Handler {
	r := chi.NewRouter()
	s.mux = r
	r.Use(s.countRequests, middleware.GetHead, s.requestID, s.recoverer, s.logRequests, securityHeaders, s.guardSetup, s.authenticate, s.requireJSON)
	r.NotFound(s.handle(notFound))
	r.MethodNotAllowed(s.methodNotAllowed)

	// Open to everyone.
	r.Get("/healthz", s.handle(h.Health))
	r.Get("/readyz", s.readyz)
	if s.metrics != nil && s.metrics.Open {
		r.Handle("/metrics", s.metrics.handler())
	}
	r.Handle("/static/*", static.Handler())
	r.Get("/login", s.handle(h.LoginPage))
	r.Post("/login", s.handle(h.Login))
	r.Get("/setup", s.handle(h.SetupPage))
	r.Post("/setup", s.handle(h.Setup))

	// Webhooks authenticate by the project's signature, not by login (see isHook).
	r.Post("/hooks/github/{project}", s.handle(h.GitHubHook))
	r.Post("/hooks/gitea/{project}", s.handle(h.GiteaHook))
	r.Post("/hooks/gitlab/{project}", s.handle(h.GitLabHook))

	// The read-only OCI distribution API: repositories may hold slashes, so
	// the handler parses the rest of the path itself.
	r.Handle("/v2", http.RedirectHandler("/v2/", http.StatusMovedPermanently))
	if s.anonymousPull {
		r.Handle("/v2/*", s.handle(h.Registry))
	} else {
		r.With(s.require(accounts.RoleViewer)).Handle("/v2/*", s.handle(h.Registry))
	}

	// Viewers read everything.
	r.Group(func(r chi.Router) {
		r.Use(s.require(accounts.RoleViewer))
		r.Post("/logout", s.handle(h.Logout))
		r.Get("/api/v1/me", s.handle(h.Me))
		r.Get("/api/v1/builds", s.handle(h.ListBuilds))
		r.Get("/api/v1/builds/{id}", s.handle(h.GetBuild))
		r.Get("/api/v1/builds/{id}/log", s.handle(h.BuildLog))
		r.Get("/api/v1/builds/{id}/log/search", s.handle(h.SearchLog))
		r.Get("/api/v1/builds/{id}/steps/{n}/log", s.handle(h.StepLog))
		r.Get("/api/v1/builds/{id}/events", s.handle(h.BuildEvents))
		r.Get("/api/v1/builds/{id}/export", s.handle(h.Export))
		r.Head("/api/v1/builds/{id}/export", s.handle(h.Export))
		r.Get("/api/v1/storage", s.handle(h.Storage))
		r.Get("/api/v1/builds/{id}/index", s.handle(h.BuildIndexJSON))
		r.Get("/api/v1/blobs/{digest}", s.handle(h.BlobJSON))
		r.Get("/api/v1/blobs/{digest}/raw", s.handle(h.BlobRaw))
		r.Get("/api/v1/blobs/{digest}/files", s.handle(h.FilesJSON))
		r.Get("/api/v1/compare", s.handle(h.CompareJSON))
		r.Get("/api/v1/trends", s.handle(h.TrendsJSON))
		r.Get("/api/v1/tokens", s.handle(h.ListTokens))
		r.Get("/api/v1/projects", s.handle(h.ListProjects))
		r.Get("/api/v1/projects/{name}", s.handle(h.GetProject))
		r.Get("/projects", s.handle(h.ProjectsPage))
		r.Get("/projects/{name}", s.handle(h.ProjectPage))
		r.Post("/api/v1/tokens", s.handle(h.CreateToken))
		r.Delete("/api/v1/tokens/{tid}", s.handle(h.RevokeToken))

		r.Get("/", s.handle(h.NewBuildPage))
		r.Get("/builds", s.handle(h.BuildsPage))
		r.Get("/builds/{id}", s.handle(h.BuildPage))
		r.Get("/storage", s.handle(h.StoragePage))
		r.Get("/builds/{id}/index", s.handle(h.IndexPage))
		r.Get("/blobs/{digest}", s.handle(h.BlobPage))
		r.Get("/blobs/{digest}/files", s.handle(h.FilesPage))
		r.Get("/compare", s.handle(h.ComparePage))
		r.Get("/trends", s.handle(h.TrendsPage))
		r.Get("/api/v1/remote", s.handle(h.RemoteJSON))
		r.Get("/remote", s.handle(h.RemotePage))
		r.Get("/account", s.handle(h.AccountPage))
		r.Post("/account/tokens", s.handle(h.CreateTokenForm))
		r.Post("/account/tokens/{tid}/revoke", s.handle(h.RevokeTokenForm))
		r.Get("/api/v1/builder-certs", s.handle(h.ListBuilderCerts))
		r.Delete("/api/v1/builder-certs/{serial}", s.handle(h.RevokeBuilderCert))
		r.Post("/account/builder-certs/{serial}/revoke", s.handle(h.RevokeBuilderCertForm))
	})

	// Builders start, cancel, push, pin and delete builds, and keep build secrets.
	r.Group(func(r chi.Router) {
		r.Use(s.require(accounts.RoleBuilder))
		r.Post("/api/v1/builds", s.handle(h.CreateBuild))
		r.Post("/api/v1/builder-certs", s.handle(h.CreateBuilderCert))
		r.Post("/account/builder-certs", s.handle(h.CreateBuilderCertForm))
		r.Post("/api/v1/builds/{id}/cancel", s.handle(h.CancelBuild))
		r.Post("/api/v1/builds/{id}/rebuild", s.handle(h.RebuildBuild))
		r.Post("/api/v1/builds/{id}/retry", s.handle(h.RetryBuild))
		r.Post("/api/v1/builds/{id}/push", s.handle(h.PushBuild))
		r.Post("/api/v1/builds/{id}/pin", s.handle(h.PinBuild))
		r.Delete("/api/v1/builds/{id}/pin", s.handle(h.PinBuild))
		r.Delete("/api/v1/builds/{id}", s.handle(h.DeleteBuild))
		r.Get("/api/v1/secrets", s.handle(h.ListSecrets))
		r.Put("/api/v1/secrets/{name}", s.handle(h.PutSecret))
		r.Delete("/api/v1/secrets/{name}", s.handle(h.DeleteSecret))

		r.Post("/api/v1/projects", s.handle(h.CreateProject))
		r.Post("/api/v1/projects/{name}/build", s.handle(h.BuildProject))
		r.Post("/projects", s.handle(h.CreateProjectForm))
		r.Post("/projects/{name}", s.handle(h.UpdateProjectForm))
		r.Post("/projects/{name}/build", s.handle(h.BuildProjectForm))

		r.Post("/builds", s.handle(h.CreateBuildForm))
		r.Post("/builds/{id}/cancel", s.handle(h.CancelBuildForm))
		r.Post("/builds/{id}/rebuild", s.handle(h.RebuildForm))
		r.Post("/builds/{id}/retry", s.handle(h.RetryForm))
		r.Post("/builds/{id}/pin", s.handle(h.PinForm))
		r.Post("/builds/{id}/push", s.handle(h.PushForm))
	})

	// Admins manage users, tokens, registries, collection, and read the audit log.
	r.Group(func(r chi.Router) {
		r.Use(s.require(accounts.RoleAdmin))
		r.Post("/api/v1/gc", s.handle(h.CollectGarbage))
		if s.metrics != nil && !s.metrics.Open {
			r.Handle("/metrics", s.metrics.handler())
		}
		r.Get("/api/v1/registries", s.handle(h.ListRegistries))
		r.Put("/api/v1/registries/{host}", s.handle(h.PutRegistry))
		r.Delete("/api/v1/registries/{host}", s.handle(h.DeleteRegistry))
		r.Get("/api/v1/users", s.handle(h.ListUsers))
		r.Post("/api/v1/users", s.handle(h.CreateUser))
		r.Patch("/api/v1/users/{name}", s.handle(h.UpdateUser))
		r.Delete("/api/v1/users/{name}", s.handle(h.DeleteUser))
		r.Get("/api/v1/audit", s.handle(h.Audit))
		r.Get("/api/v1/nodes", s.handle(h.Nodes))
		r.Get("/admin/nodes", s.handle(h.NodesPage))

		r.Get("/admin/users", s.handle(h.UsersPage))
		r.Post("/admin/users", s.handle(h.CreateUserForm))
		r.Post("/admin/users/{name}", s.handle(h.UpdateUserForm))
		r.Get("/admin/audit", s.handle(h.AuditPage))
	})
	return r
}
