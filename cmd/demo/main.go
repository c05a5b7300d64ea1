// Command demo is the embedding example: an application server that runs
// the relay (engine, Badger store, WebSocket handler) in its own binary and
// adds server-generated fields to records. Every new record of collection
// "todos" gets "no", the next number of a sequence (1, 2, 3, … never
// reused, also across restarts), and "createdAt", a server timestamp in
// milliseconds since the epoch.
//
// It also serves the application: a shared todo list at / (index.html,
// built on the browser bridge at /jsbridge.js, with a service worker that
// lets the page open while the server is down).
//
//	demo [-addr :3030] [-data ./data] [-log-level info]
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
	"os/signal"
	"syscall"
	"time"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/wsrelay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := ":3030"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	data := "./data"
	if d := os.Getenv("DATA_DIR"); d != "" {
		data = d
	}
	fs.StringVar(&addr, "addr", addr, "listen address host:port (env PORT sets the port)")
	fs.StringVar(&data, "data", data, "Badger data directory (env DATA_DIR)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	isolation := fs.String("isolation", wsrelay.IsolationProcess, "where the automerge core runs: process or none (trusted peers only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "demo: -log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if err := serve(ctx, addr, data, *isolation, log); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, addr, data, isolation string, log *slog.Logger) error {
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{
		Dir:       data,
		Logger:    log,
		Isolation: isolation,
		Engine:    engine.Config{PeerID: "amsync-demo"},
		Banner:    "amsync demo is running",
	})
	if err != nil {
		return err
	}
	r.Records.Hook("todos", todoHook(r.Records, time.Now))
	hookCtx, stopHooks := context.WithCancel(ctx)
	defer stopHooks()
	if err := r.Records.RunHooks(hookCtx, log); err != nil {
		log.Error("resume hooks", "err", err)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		r.Shutdown(sctx)
		return err
	}
	srv := &http.Server{Handler: r.HandlerWith(appRoutes()), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go r.Run(ctx)
	log.Info("relay listening", "addr", ln.Addr().String(), "peer_id", r.Engine.PeerID(), "storage_id", r.Engine.StorageID())
	<-ctx.Done()
	log.Info("shutting down")
	stopHooks()
	sctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	err = r.Shutdown(sctx)
	log.Info("stopped")
	return err
}
