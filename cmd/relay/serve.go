package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/isolate"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/wsrelay"
)

// serveOptions are the flags of the serve command.
type serveOptions struct {
	addr           string
	data           string
	logLevel       string
	logFormat      string
	peerID         string
	maxFrameBytes  int64
	maxLoadedDocs  int
	maxLoadedBytes int64
	idleTimeout    time.Duration
	allowedOrigins string
	compression    bool
	shutdownWait   time.Duration
	isolation      string
	coreWorkers    int
	coreTimeout    time.Duration
}

func serveFlags(fs *flag.FlagSet, o *serveOptions, getenv func(string) string) {
	addr := ":3030"
	if p := getenv("PORT"); p != "" {
		addr = ":" + p
	}
	data := "./data"
	if d := getenv("DATA_DIR"); d != "" {
		data = d
	}
	host, _ := os.Hostname()
	fs.StringVar(&o.addr, "addr", addr, "listen address host:port (env PORT sets the port)")
	fs.StringVar(&o.data, "data", data, "Badger data directory (env DATA_DIR)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.peerID, "peer-id", "storage-server-"+host, "peer id announced to clients")
	fs.Int64Var(&o.maxFrameBytes, "max-frame-bytes", 64<<20, "largest frame accepted; larger closes the connection with 1009")
	fs.IntVar(&o.maxLoadedDocs, "max-loaded-docs", 10000, "documents held in memory at most (least recently used are evicted)")
	fs.Int64Var(&o.maxLoadedBytes, "max-loaded-bytes", 512<<20, "stored bytes of documents held in memory at most")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 2*time.Minute, "evict a document from memory after this long without activity")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated browser origins allowed to connect (default: all)")
	fs.BoolVar(&o.compression, "compression", false, "negotiate permessage-deflate with clients that offer it")
	fs.StringVar(&o.isolation, "isolation", "process", "where the automerge core runs: process (supervised worker processes; a malformed input kills a worker, never the relay) or none (in the relay process: trusted peers only)")
	fs.IntVar(&o.coreWorkers, "core-workers", 0, "worker processes for -isolation process (default 2 x GOMAXPROCS)")
	fs.DurationVar(&o.coreTimeout, "core-timeout", 30*time.Second, "longest one document operation may run in a worker before it is killed and the input rejected")
	fs.DurationVar(&o.shutdownWait, "shutdown-timeout", 8*time.Second, "how long a graceful shutdown may take")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// serve runs the relay until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, o serveOptions, stderr io.Writer) error {
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return usageError{err}
	}
	st, err := badgerstore.Open(badgerstore.Config{Dir: o.data, Logger: log})
	if err != nil {
		return fmt.Errorf("open data directory %s: %w", o.data, err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()

	var origins []string
	for _, s := range strings.Split(o.allowedOrigins, ",") {
		if s = strings.TrimSpace(s); s != "" {
			origins = append(origins, s)
		}
	}

	eng, srv, closeCore, err := build(st, o, origins, log)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.addr, err)
	}
	httpSrv := &http.Server{
		Handler:           handler(srv),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("relay listening", "addr", ln.Addr().String(), "data", o.data, "peer_id", eng.PeerID(), "storage_id", eng.StorageID())

	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	gc := time.NewTicker(10 * time.Minute)
	defer gc.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-serveErr:
			return fmt.Errorf("serve: %w", err)
		case now := <-tick.C:
			eng.Tick(now)
		case <-gc.C:
			if n, err := st.RunGC(ctx); err != nil {
				log.Warn("value log gc", "err", err)
			} else if n > 0 {
				log.Info("value log gc", "files_rewritten", n)
			}
		}
	}

	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownWait)
	defer cancel()
	// Stop accepting, close every connection, let document tasks land
	// their writes, then close the store (deferred above).
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("websocket shutdown", "err", err)
	}
	if err := eng.Close(sctx); err != nil {
		log.Warn("engine shutdown", "err", err)
	}
	closeCore()
	log.Info("stopped")
	return nil
}

func build(st *badgerstore.Store, o serveOptions, origins []string, log *slog.Logger) (*engine.Engine, *wsrelay.Server, func(), error) {
	closeCore := func() {}
	reg := prometheus.NewRegistry()
	var core engine.Core = engine.InProcess{}
	switch o.isolation {
	case "process":
		host, err := isolate.New(isolate.Config{Workers: o.coreWorkers, CallTimeout: o.coreTimeout, Logger: log})
		if err != nil {
			return nil, nil, nil, usageError{err}
		}
		core = host
		closeCore = func() { host.Close() }
		registerHost(reg, host)
	case "none":
		log.Warn("the automerge core runs in the relay process (-isolation none): a malformed message can abort the relay; use only with trusted peers")
	default:
		return nil, nil, nil, usageError{fmt.Errorf("-isolation %q: want process or none", o.isolation)}
	}
	eng, err := engine.New(engine.Config{
		Core:           core,
		Store:          wsrelay.InstrumentStore(st, reg),
		PeerID:         o.peerID,
		Logger:         log,
		MaxLoadedDocs:  o.maxLoadedDocs,
		MaxLoadedBytes: o.maxLoadedBytes,
		IdleTimeout:    o.idleTimeout,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	srv, err := wsrelay.New(wsrelay.Config{
		Engine:            eng,
		Registry:          reg,
		Logger:            log,
		MaxFrameBytes:     o.maxFrameBytes,
		AllowedOrigins:    origins,
		EnableCompression: o.compression,
	})
	if err != nil {
		return nil, nil, nil, usageError{err}
	}
	return eng, srv, closeCore, nil
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

// handler routes WebSocket upgrades on any path to the relay, as the Node
// sync server does, and serves the plain HTTP endpoints.
func handler(srv *wsrelay.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "amsync relay is running\n")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", srv.MetricsHandler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			srv.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// usageError marks errors caused by bad flags (exit status 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o serveOptions
	serveFlags(fs, &o, os.Getenv)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: relay [flags]\n\nRuns the amsync WebSocket sync server.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relay: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if err := serve(ctx, o, stderr); err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}
