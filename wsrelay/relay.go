package wsrelay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/cluster"
	"github.com/amsync/amsync/engine/isolate"
	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/engine/store/badgerstore"
)

// Isolation modes: where the automerge core runs.
const (
	// IsolationProcess runs it in supervised worker processes: an input
	// that aborts the core kills a worker, never the relay.
	IsolationProcess = "process"
	// IsolationNone runs it in the relay process: for trusted peers only.
	IsolationNone = "none"
)

// RelayConfig configures OpenRelay: a whole relay (store, engine,
// WebSocket server, records) for an application server to embed.
type RelayConfig struct {
	// Dir is the Badger data directory. Required unless InMemory.
	Dir string
	// InMemory keeps the store in memory (tests only: nothing survives).
	InMemory bool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Isolation is IsolationProcess (default) or IsolationNone.
	Isolation string
	// CoreWorkers and CoreTimeout configure the worker processes (see
	// isolate.Config); zero takes its defaults.
	CoreWorkers int
	CoreTimeout time.Duration
	// Engine holds engine settings (PeerID, MaxLoadedDocs, MaxLoadedBytes,
	// IdleTimeout, …). Store, Core and Logger are set by OpenRelay.
	Engine engine.Config
	// Server holds WebSocket settings (MaxFrameBytes, AllowedOrigins, …).
	// Engine, Registry and Logger are set by OpenRelay.
	Server Config
	// Banner is the one line GET / answers. Default "amsync relay is
	// running".
	Banner string
	// Cluster, when set, joins the relays that share its NATS JetStream
	// stream (see package engine/cluster). Store and Logger are set by
	// OpenRelay. The relay accepts clients once it has caught up with the
	// stream; until then upgrades and GET /readyz answer 503.
	Cluster *cluster.Config
}

// Relay is a running relay: everything cmd/relay serves, as a library.
type Relay struct {
	Store    *badgerstore.Store
	Engine   *engine.Engine
	Server   *Server
	Records  *records.Store
	Registry *prometheus.Registry
	// Cluster links the relay to the others (nil: a relay on its own).
	Cluster *cluster.Cluster

	host   *isolate.Host
	log    *slog.Logger
	banner string
}

// OpenRelay opens the store and starts the engine. Serve Handler() on an
// http.Server, call Run in a goroutine, and Shutdown at the end.
func OpenRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Isolation == "" {
		cfg.Isolation = IsolationProcess
	}
	if cfg.Banner == "" {
		cfg.Banner = "amsync relay is running"
	}
	r := &Relay{log: cfg.Logger, Registry: prometheus.NewRegistry(), banner: cfg.Banner}
	var core engine.Core = engine.InProcess{}
	switch cfg.Isolation {
	case IsolationProcess:
		host, err := isolate.New(isolate.Config{Workers: cfg.CoreWorkers, CallTimeout: cfg.CoreTimeout, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		r.host, core = host, host
		registerHost(r.Registry, host)
	case IsolationNone:
		cfg.Logger.Warn("the automerge core runs in the relay process (isolation none): a malformed message can abort the relay; use only with trusted peers")
	default:
		return nil, fmt.Errorf("%w: isolation %q: want %s or %s", ErrConfig, cfg.Isolation, IsolationProcess, IsolationNone)
	}
	st, err := badgerstore.Open(badgerstore.Config{Dir: cfg.Dir, InMemory: cfg.InMemory, Logger: cfg.Logger})
	if err != nil {
		r.closeHost()
		return nil, err
	}
	r.Store = st
	ecfg := cfg.Engine
	ecfg.Store = InstrumentStore(st, r.Registry)
	ecfg.Core = core
	ecfg.Logger = cfg.Logger
	if cfg.Cluster != nil {
		ccfg := *cfg.Cluster
		ccfg.Store, ccfg.Logger = st, cfg.Logger
		cl, err := cluster.Open(context.Background(), ccfg)
		if err != nil {
			st.Close()
			r.closeHost()
			return nil, err
		}
		r.Cluster, ecfg.Replicator = cl, cl
		registerCluster(r.Registry, cl)
	}
	eng, err := engine.New(ecfg)
	if err == nil && r.Cluster != nil {
		if err = r.Cluster.Start(eng); err != nil {
			eng.Close(context.Background())
		}
	}
	if err != nil {
		r.closeCluster()
		st.Close()
		r.closeHost()
		return nil, err
	}
	r.Engine = eng
	scfg := cfg.Server
	scfg.Engine, scfg.Registry, scfg.Logger = eng, r.Registry, cfg.Logger
	srv, err := New(scfg)
	if err != nil {
		eng.Close(context.Background())
		r.closeCluster()
		st.Close()
		r.closeHost()
		return nil, err
	}
	r.Server = srv
	r.Records = records.New(eng)
	return r, nil
}

func (r *Relay) closeHost() {
	if r.host != nil {
		r.host.Close()
	}
}

func registerHost(reg *prometheus.Registry, h *isolate.Host) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "amsync", Name: "core_worker_crashes_total",
			Help: "Automerge worker processes that died on an input (or were killed for taking too long)."},
			func() float64 { return float64(h.Stats().Crashes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "amsync", Name: "core_worker_restarts_total",
			Help: "Automerge worker processes restarted."},
			func() float64 { return float64(h.Stats().Restarts) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "amsync", Name: "core_calls_total",
			Help: "Calls into automerge worker processes."},
			func() float64 { return float64(h.Stats().Calls) }),
	)
}

// Handler serves WebSocket upgrades on any path (as the Node sync server
// does), and GET / (one line of text), /healthz and /metrics.
func (r *Relay) Handler() http.Handler { return r.HandlerWith(nil) }

// HandlerWith is Handler with the application's own routes: requests that
// are not WebSocket upgrades go to app first (when it is not nil and has a
// route for them); /healthz and /metrics stay the relay's.
func (r *Relay) HandlerWith(app *http.ServeMux) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", r.Server.MetricsHandler())
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !r.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "catching up with the cluster\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, r.banner+"\n")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if websocket.IsWebSocketUpgrade(req) {
			if !r.Ready() {
				// Not caught up with the cluster yet: it would answer
				// doc-unavailable for documents it has not read. Clients
				// retry, or a load balancer picks a ready relay.
				w.Header().Set("Retry-After", "1")
				http.Error(w, "catching up with the cluster", http.StatusServiceUnavailable)
				return
			}
			r.Server.ServeHTTP(w, req)
			return
		}
		if app != nil && req.URL.Path != "/healthz" && req.URL.Path != "/metrics" && req.URL.Path != "/readyz" {
			if _, pattern := app.Handler(req); pattern != "" {
				app.ServeHTTP(w, req)
				return
			}
		}
		mux.ServeHTTP(w, req)
	})
}

// Run does the relay's housekeeping until ctx ends: idle documents are
// evicted every few seconds and the value log is garbage-collected every
// ten minutes.
func (r *Relay) Run(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	gc := time.NewTicker(10 * time.Minute)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.Engine.Tick(now)
		case <-gc.C:
			if n, err := r.Store.RunGC(ctx); err != nil {
				r.log.Warn("value log gc", "err", err)
			} else if n > 0 {
				r.log.Info("value log gc", "files_rewritten", n)
			}
		}
	}
}

// Shutdown closes every connection, lets document tasks land their
// writes (and publish them), stops the cluster feed, stops the workers and
// closes the store.
func (r *Relay) Shutdown(ctx context.Context) error {
	var errs []error
	if err := r.Server.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := r.Engine.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if r.Cluster != nil {
		if err := r.Cluster.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	r.closeHost()
	if err := r.Store.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
