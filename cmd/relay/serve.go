package main

import (
	"bytes"
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

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/cluster"
	"github.com/amsync/amsync/jsbridge"
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
	validateSync   bool
	jwtSecretFile  string
	tlsCert        string
	tlsKey         string
	maxConns       int
	maxConnsPer    int
	maxDocsPerConn int
	messageRate    float64
	messageBurst   int
	joinTimeout    time.Duration
	inflightConn   int64
	inflight       int64
	debugAddr      string
	cluster        clusterOptions
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
	fs.IntVar(&o.coreWorkers, "core-workers", 0, "worker processes for -isolation process (default GOMAXPROCS, at least 2)")
	fs.DurationVar(&o.coreTimeout, "core-timeout", 30*time.Second, "longest one document operation may run in a worker before it is killed and the input rejected")
	fs.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "require an HS256 JWT (token query parameter, Authorization: Bearer, or relay_token cookie) signed with the key in this file; its docs claim grants per-document access")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve TLS (wss://) with this PEM certificate (needs -tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key for -tls-cert")
	fs.IntVar(&o.maxConns, "max-connections", 100000, "open connections at most (503 beyond)")
	fs.IntVar(&o.maxConnsPer, "max-connections-per-principal", 1000, "connections of one authenticated principal at most (429 beyond)")
	fs.IntVar(&o.maxDocsPerConn, "max-docs-per-connection", 100000, "documents one connection may take part in")
	fs.Float64Var(&o.messageRate, "message-rate", 10000, "frames per second one connection may send (sustained; excess is read later)")
	fs.IntVar(&o.messageBurst, "message-burst", 50000, "frames one connection may send in a burst")
	fs.DurationVar(&o.joinTimeout, "join-timeout", 10*time.Second, "close connections that have not sent join within this time")
	fs.Int64Var(&o.inflightConn, "max-inflight-bytes-per-connection", 16<<20, "bytes one connection may have sent that are not processed yet; beyond, it is not read until they are (a connection with nothing in flight may always send one frame)")
	fs.Int64Var(&o.inflight, "max-inflight-bytes", 256<<20, "bytes all connections together may have sent that are not processed yet; beyond, connections are read one frame at a time")
	fs.BoolVar(&o.validateSync, "validate-sync", true, "parse and bound every sync message in Go before the automerge core sees it (false leaves process isolation as the only defence)")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "serve Go's profiler (/debug/pprof/) on this separate address, e.g. 127.0.0.1:6060 (default: off; never expose it publicly)")
	fs.DurationVar(&o.shutdownWait, "shutdown-timeout", 8*time.Second, "how long a graceful shutdown may take")
	clusterFlags(fs, &o.cluster, getenv)
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
	var origins []string
	for _, s := range strings.Split(o.allowedOrigins, ",") {
		if s = strings.TrimSpace(s); s != "" {
			origins = append(origins, s)
		}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageError{errors.New("-tls-cert and -tls-key go together")}
	}
	var authenticate func(*http.Request) (*engine.Principal, error)
	if o.jwtSecretFile != "" {
		secret, err := os.ReadFile(o.jwtSecretFile)
		if err != nil {
			return usageError{fmt.Errorf("-jwt-secret-file: %w", err)}
		}
		secret = bytes.TrimRight(secret, "\r\n")
		if len(secret) == 0 {
			return usageError{fmt.Errorf("-jwt-secret-file %s is empty", o.jwtSecretFile)}
		}
		authenticate = (&wsrelay.JWT{Secret: secret}).Authenticate
	}
	ccfg := o.cluster.config()
	if ccfg != nil {
		ccfg.Name = "amsync relay " + o.peerID
	}
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{
		Cluster:     ccfg,
		Dir:         o.data,
		Logger:      log,
		Isolation:   o.isolation,
		CoreWorkers: o.coreWorkers,
		CoreTimeout: o.coreTimeout,
		Engine: engine.Config{
			PeerID:            o.peerID,
			MaxLoadedDocs:     o.maxLoadedDocs,
			MaxLoadedBytes:    o.maxLoadedBytes,
			IdleTimeout:       o.idleTimeout,
			NoSyncValidation:  !o.validateSync,
			MaxDocsPerSession: o.maxDocsPerConn,
		},
		Server: wsrelay.Config{
			MaxFrameBytes:                 o.maxFrameBytes,
			AllowedOrigins:                origins,
			EnableCompression:             o.compression,
			Authenticate:                  authenticate,
			MaxConnections:                o.maxConns,
			MaxConnectionsPerPrincipal:    o.maxConnsPer,
			MessageRate:                   o.messageRate,
			MessageBurst:                  o.messageBurst,
			JoinTimeout:                   o.joinTimeout,
			MaxInflightBytesPerConnection: o.inflightConn,
			MaxInflightBytes:              o.inflight,
		},
	})
	if err != nil {
		if errors.Is(err, wsrelay.ErrConfig) || errors.Is(err, engine.ErrConfig) || errors.Is(err, cluster.ErrConfig) {
			return usageError{err}
		}
		return fmt.Errorf("open relay on %s: %w", o.data, err)
	}
	if r.Cluster != nil {
		go func() {
			if r.WaitReady(ctx) == nil {
				log.Info("caught up with the cluster; accepting clients", "stream", ccfg.Stream, "position", r.Cluster.Stats().Position)
			}
		}()
	}
	return listenAndServe(ctx, r, r.HandlerWith(jsbridge.Mux()), o, log)
}

// listenAndServe serves h on addr until ctx ends, then shuts the relay
// down within wait.
func listenAndServe(ctx context.Context, r *wsrelay.Relay, h http.Handler, o serveOptions, log *slog.Logger) error {
	addr, wait := o.addr, o.shutdownWait
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		r.Shutdown(sctx)
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	httpSrv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			serveErr <- httpSrv.ServeTLS(ln, o.tlsCert, o.tlsKey)
			return
		}
		serveErr <- httpSrv.Serve(ln)
	}()
	if o.debugAddr != "" {
		dln, err := net.Listen("tcp", o.debugAddr)
		if err != nil {
			_ = httpSrv.Close()
			sctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			r.Shutdown(sctx)
			return fmt.Errorf("listen -debug-addr %s: %w", o.debugAddr, err)
		}
		debugSrv := &http.Server{Handler: debugMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = debugSrv.Serve(dln) }()
		defer debugSrv.Close()
		log.Info("profiler listening", "addr", dln.Addr().String())
	}
	log.Info("relay listening", "addr", ln.Addr().String(), "peer_id", r.Engine.PeerID(), "storage_id", r.Engine.StorageID())
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go r.Run(runCtx)

	var failed error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		failed = fmt.Errorf("serve: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// Stop accepting, close every connection, let document tasks land
	// their writes, stop the workers, close the store.
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := r.Shutdown(sctx); err != nil {
		log.Warn("relay shutdown", "err", err)
	}
	log.Info("stopped")
	return failed
}

// usageError marks errors caused by bad flags (exit status 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isSubcommand(args[0]) {
		return runSubcommand(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o serveOptions
	serveFlags(fs, &o, os.Getenv)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\nserver flags:\n", usageText)
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
