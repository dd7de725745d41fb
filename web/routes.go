package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"manifold/handlers"
	"manifold/static"
)

// routes is the whole HTTP surface in one place.
func (s *Server) routes(h *handlers.Handlers) http.Handler {
	r := chi.NewRouter()
	r.Use(s.requestID, s.recoverer, s.logRequests, securityHeaders)
	r.NotFound(s.handle(notFound))
	r.MethodNotAllowed(s.handle(methodNotAllowed))

	r.Get("/healthz", s.handle(h.Health))
	r.Handle("/static/*", static.Handler())

	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/builds", s.handle(h.ListBuilds))
		r.Post("/builds", s.handle(h.CreateBuild))
		r.Get("/builds/{id}", s.handle(h.GetBuild))
		r.Post("/builds/{id}/cancel", s.handle(h.CancelBuild))
		r.Post("/builds/{id}/rebuild", s.handle(h.RebuildBuild))
		r.Get("/builds/{id}/log", s.handle(h.BuildLog))
		r.Get("/builds/{id}/events", s.handle(h.BuildEvents))
		r.Get("/builds/{id}/export", s.handle(h.Export))
		r.Head("/builds/{id}/export", s.handle(h.Export))
		r.Post("/builds/{id}/push", s.handle(h.PushBuild))
		r.Post("/builds/{id}/pin", s.handle(h.PinBuild))
		r.Delete("/builds/{id}/pin", s.handle(h.PinBuild))
		r.Delete("/builds/{id}", s.handle(h.DeleteBuild))
		r.Post("/gc", s.handle(h.CollectGarbage))
		r.Get("/storage", s.handle(h.Storage))
		r.Get("/registries", s.handle(h.ListRegistries))
		r.Put("/registries/{host}", s.handle(h.PutRegistry))
		r.Delete("/registries/{host}", s.handle(h.DeleteRegistry))
	})

	// The read-only OCI distribution API: repositories may hold slashes, so
	// the handler parses the rest of the path itself.
	r.Handle("/v2", http.RedirectHandler("/v2/", http.StatusMovedPermanently))
	r.Handle("/v2/*", s.handle(h.Registry))

	r.Get("/", s.handle(h.NewBuildPage))
	r.Post("/builds", s.handle(h.CreateBuildForm))
	r.Get("/builds", s.handle(h.BuildsPage))
	r.Get("/builds/{id}", s.handle(h.BuildPage))
	r.Post("/builds/{id}/cancel", s.handle(h.CancelBuildForm))
	r.Post("/builds/{id}/rebuild", s.handle(h.RebuildForm))
	r.Post("/builds/{id}/pin", s.handle(h.PinForm))
	r.Post("/builds/{id}/push", s.handle(h.PushForm))
	r.Get("/storage", s.handle(h.StoragePage))
	return r
}
