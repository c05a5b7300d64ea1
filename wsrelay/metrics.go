package wsrelay

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/amsync/amsync/engine/store"
)

type metrics struct {
	reg         *prometheus.Registry
	connections prometheus.Gauge
	accepted    prometheus.Counter
	framesIn    prometheus.Counter
	framesOut   prometheus.Counter
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	slowClosed  prometheus.Counter
	readPauses  prometheus.Counter
	errors      *prometheus.CounterVec
}

// count updates metrics when there are any (client connections have none).
func (m *metrics) count(f func(m *metrics)) {
	if m != nil {
		f(m)
	}
}

func newMetrics(s *Server) *metrics {
	reg := s.cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "amsync", Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := &metrics{
		reg:         reg,
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "amsync", Name: "connections", Help: "Open WebSocket connections."}),
		accepted:    f("connections_accepted_total", "WebSocket connections accepted."),
		framesIn:    f("frames_received_total", "Frames received from peers."),
		framesOut:   f("frames_sent_total", "Frames written to peers."),
		bytesIn:     f("received_bytes_total", "Bytes of frames received from peers."),
		bytesOut:    f("sent_bytes_total", "Bytes of frames written to peers."),
		slowClosed:  f("slow_consumers_closed_total", "Connections closed because their send queue was full."),
		readPauses:  f("read_pauses_total", "Times a connection was not read because the bytes it had sent were not processed yet (in-flight budget spent)."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "amsync", Name: "connection_errors_total",
			Help: "Connections ended or refused by a fault, by kind."}, []string{"kind"}),
	}
	reg.MustRegister(m.connections, m.errors)
	for _, kind := range []string{"frame_too_large", "text_frame", "protocol", "upgrade", "origin_rejected",
		"unauthorized", "connection_limit", "principal_limit", "join_timeout", "token_expired"} {
		m.errors.WithLabelValues(kind) // export every kind from the start, at 0
	}
	eng := s.cfg.Engine
	gauge := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "amsync", Name: name, Help: help}, fn))
	}
	counter := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "amsync", Name: name, Help: help}, fn))
	}
	gauge("inflight_bytes", "Bytes of frames read from connections that the engine has not processed yet.", func() float64 { return float64(s.budget.inFlight()) })
	gauge("sessions", "Peers in the engine (joined or joining).", func() float64 { return float64(eng.Stats().SessionsOpen) })
	gauge("documents_active", "Documents with a running actor or connected peers.", func() float64 { return float64(eng.Stats().DocsActive) })
	gauge("documents_loaded", "Documents held in memory.", func() float64 { return float64(eng.Stats().DocsLoaded) })
	counter("document_loads_total", "Documents loaded from the store.", func() float64 { return float64(eng.Stats().DocLoads) })
	counter("acks_deferred_total", "Acknowledgements from clients held back to the document's next step instead of a step of their own.", func() float64 { return float64(eng.Stats().AcksDeferred) })
	counter("document_evictions_total", "Documents evicted from memory.", func() float64 { return float64(eng.Stats().Evictions) })
	counter("messages_received_total", "Protocol messages received.", func() float64 { return float64(eng.Stats().FramesIn) })
	counter("messages_sent_total", "Protocol messages queued to peers.", func() float64 { return float64(eng.Stats().FramesOut) })
	counter("protocol_errors_total", "Sessions closed for a protocol violation or a rejected message.", func() float64 { return float64(eng.Stats().ProtocolErrors) })
	counter("store_errors_total", "Failed durable writes.", func() float64 { return float64(eng.Stats().StoreErrors) })
	counter("document_saves_total", "Durable document writes.", func() float64 { return float64(eng.Stats().Saves) })
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Registry is the server's metrics registry, for extra collectors (the
// store's, say).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// MetricsHandler serves the registry in the Prometheus text format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}

// InstrumentStore wraps st so that every durable write is timed (the fsync
// latency operators watch) and counted in reg.
func InstrumentStore(st store.Store, reg prometheus.Registerer) store.Store {
	is := &instrumentedStore{
		Store: st,
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "amsync", Name: "store_apply_seconds",
			Help:    "Latency of durable (fsynced) store writes.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "amsync", Name: "store_written_bytes_total", Help: "Bytes written to the store."}),
		ops:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "amsync", Name: "store_ops_total", Help: "Puts and deletes written to the store."}),
	}
	reg.MustRegister(is.latency, is.bytes, is.ops)
	return is
}

type instrumentedStore struct {
	store.Store
	latency prometheus.Histogram
	bytes   prometheus.Counter
	ops     prometheus.Counter
}

func (s *instrumentedStore) Apply(ctx context.Context, ops []store.Op) error {
	start := time.Now()
	err := s.Store.Apply(ctx, ops)
	s.latency.Observe(time.Since(start).Seconds())
	n := 0
	for _, op := range ops {
		n += len(op.Data)
	}
	s.bytes.Add(float64(n))
	s.ops.Add(float64(len(ops)))
	return err
}
