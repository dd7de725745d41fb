package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"manifold/builds"
	"manifold/builds/content"
)

// MetricsStore is what /metrics and /readyz read from the database (db.Metrics).
type MetricsStore interface {
	BuildCounts(ctx context.Context) ([]builds.BuildCount, error)
	StatusCounts(ctx context.Context) (map[builds.Status]int, error)
	Durations(ctx context.Context, kind string, bounds []float64) (map[string]builds.Histogram, error)
	Writable(ctx context.Context) error
}

// MetricsService is the live state /metrics reports: nodes (builds.Service) and the store (content.Service).
type MetricsService interface {
	Nodes(ctx context.Context) []builds.NodeStatus
	StorageUsage(ctx context.Context, page content.UsagePage) (content.Usage, error)
}

// Metrics is Manifold's Prometheus registry: figures read at scrape time
// from the database and the service, plus the HTTP counters this package
// keeps as requests pass.
type Metrics struct {
	store    MetricsStore
	svc      MetricsService
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	sse      prometheus.Gauge
	gcRuns   prometheus.Counter
	gcFreed  prometheus.Counter
	gcBlobs  prometheus.Counter
	// Open serves /metrics to anyone (--metrics-open); otherwise admins only.
	Open bool
	// lastNodes keeps the BuildKit probe for a second: scrapes and /readyz
	// together do not hammer the daemon.
	mu        sync.Mutex
	lastNodes []builds.NodeStatus
	lastAt    time.Time
}

var (
	durationBuckets = []float64{0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	stepBuckets     = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
	descBuilds      = prometheus.NewDesc("manifold_builds", "Builds recorded, by status and platform (a build of two platforms counts for each).", []string{"status", "platform"}, nil)
	descRunning     = prometheus.NewDesc("manifold_builds_running", "Builds running now.", nil, nil)
	descQueued      = prometheus.NewDesc("manifold_queue_length", "Builds waiting in the queue now.", nil, nil)
	descBuildDur    = prometheus.NewDesc("manifold_build_duration_seconds", "Build duration from start to finish, per platform and node.", []string{"platform", "node"}, nil)
	descStepDur     = prometheus.NewDesc("manifold_step_duration_seconds", "Duration of steps that ran (not cached), per platform and node.", []string{"platform", "node"}, nil)
	descQueueWait   = prometheus.NewDesc("manifold_queue_wait_seconds", "Time builds waited in the queue before they started, per platform.", []string{"platform"}, nil)
	descNodeUp      = prometheus.NewDesc("manifold_buildkit_node_up", "1 when the BuildKit node answers, else 0.", []string{"node", "addr"}, nil)
	descStoreBytes  = prometheus.NewDesc("manifold_store_bytes", "Bytes in the content store.", nil, nil)
	descStoreBlobs  = prometheus.NewDesc("manifold_store_blobs", "Blobs in the content store.", nil, nil)
)

// NewMetrics makes the registry; Go runtime and process collectors are included.
func NewMetrics(store MetricsStore, svc MetricsService, open bool) *Metrics {
	m := &Metrics{store: store, svc: svc, Open: open, registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "manifold_http_requests_total",
		Help: "HTTP requests answered, by route pattern, method and status."}, []string{"route", "method", "status"})
	m.sse = prometheus.NewGauge(prometheus.GaugeOpts{Name: "manifold_sse_clients", Help: "Event streams open now."})
	m.gcRuns = prometheus.NewCounter(prometheus.CounterOpts{Name: "manifold_gc_runs_total", Help: "Garbage collections run since start."})
	m.gcFreed = prometheus.NewCounter(prometheus.CounterOpts{Name: "manifold_gc_freed_bytes_total", Help: "Bytes garbage collection removed since start."})
	m.gcBlobs = prometheus.NewCounter(prometheus.CounterOpts{Name: "manifold_gc_removed_blobs_total", Help: "Blobs garbage collection removed since start."})
	m.registry.MustRegister(m.requests, m.sse, m.gcRuns, m.gcFreed, m.gcBlobs, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Collected counts a finished garbage collection (the service calls it).
func (m *Metrics) Collected(r content.GCReport) {
	m.gcRuns.Inc()
	m.gcFreed.Add(float64(r.FreedBytes))
	m.gcBlobs.Add(float64(r.RemovedBlobs))
}

// Describe sends nothing: the collector is unchecked (its label sets vary).
func (m *Metrics) Describe(chan<- *prometheus.Desc) {}

// nodes is the BuildKit probe, at most a second old.
func (m *Metrics) nodes(ctx context.Context) []builds.NodeStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastNodes == nil || time.Since(m.lastAt) > time.Second {
		m.lastNodes, m.lastAt = m.svc.Nodes(ctx), time.Now()
	}
	return m.lastNodes
}

// Collect reads the database and the service at scrape time.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node := ""
	for _, n := range m.nodes(ctx) {
		up := 0.0
		if n.OK {
			up = 1
		}
		if node == "" {
			node = n.Name
		}
		ch <- prometheus.MustNewConstMetric(descNodeUp, prometheus.GaugeValue, up, n.Name, n.Addr)
	}
	if counts, err := m.store.BuildCounts(ctx); err == nil {
		for _, c := range counts {
			ch <- prometheus.MustNewConstMetric(descBuilds, prometheus.GaugeValue, float64(c.Count), string(c.Status), c.Platform)
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descBuilds, err)
	}
	// Running and queued count whole builds, not platforms.
	if st, err := m.store.StatusCounts(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(st[builds.StatusRunning]))
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(st[builds.StatusQueued]))
	} else {
		ch <- prometheus.NewInvalidMetric(descQueued, err)
	}
	for _, h := range []struct {
		desc   *prometheus.Desc
		kind   string
		bounds []float64
		node   bool
	}{{descBuildDur, builds.DurationBuild, durationBuckets, true}, {descStepDur, builds.DurationStep, stepBuckets, true},
		{descQueueWait, builds.DurationQueueWait, durationBuckets, false}} {
		hs, err := m.store.Durations(ctx, h.kind, h.bounds)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(h.desc, err)
			continue
		}
		for platform, v := range hs {
			buckets := make(map[float64]uint64, len(h.bounds))
			for i, b := range h.bounds {
				buckets[b] = v.Buckets[i]
			}
			labels := []string{platform}
			if h.node {
				labels = append(labels, node)
			}
			ch <- prometheus.MustNewConstHistogram(h.desc, v.Count, v.Sum, buckets, labels...)
		}
	}
	if u, err := m.svc.StorageUsage(ctx, content.UsagePage{Limit: 1}); err == nil {
		ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, float64(u.TotalBytes))
		ch <- prometheus.MustNewConstMetric(descStoreBlobs, prometheus.GaugeValue, float64(u.Blobs))
	} else {
		ch <- prometheus.NewInvalidMetric(descStoreBytes, err)
	}
}

// handler serves the registry in Prometheus's text format.
func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// count is middleware that counts each answer by its route pattern (never
// the raw path: ids would make a series each) and keeps the open event streams.
func (m *Metrics) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/builds/") && strings.HasSuffix(r.URL.Path, "/events") {
			m.sse.Inc()
			defer m.sse.Dec()
		}
		next.ServeHTTP(sw, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
	})
}

// statusWriter remembers the status; Unwrap keeps http.ResponseController
// (flushes and write deadlines of event streams) working through it.
type statusWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.status, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom keeps sendfile for blobs copied from their files.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	w.written = true
	return readFrom(w.ResponseWriter, r)
}

func (w *statusWriter) Flush() {
	w.written = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countRequests counts answers when metrics are on.
func (s *Server) countRequests(next http.Handler) http.Handler {
	if s.metrics == nil {
		return next
	}
	return s.metrics.count(next)
}

// readyz answers GET /readyz: 200 when the database takes a write and at
// least one BuildKit node answers, else 503 saying which is missing.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	out := map[string]any{"status": "ready", "database": "ok"}
	code := http.StatusOK
	if err := s.metrics.store.Writable(ctx); err != nil {
		s.log.Warn("readyz: database", "err", err)
		out["database"], out["status"], code = "the database does not take a write", "not ready", http.StatusServiceUnavailable
	}
	up := 0
	for _, n := range s.metrics.nodes(ctx) {
		if n.OK {
			up++
		}
	}
	out["buildkit_nodes_up"] = up
	if up == 0 {
		out["status"], code = "not ready", http.StatusServiceUnavailable
		out["error"] = "no BuildKit node answers"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(out)
}
