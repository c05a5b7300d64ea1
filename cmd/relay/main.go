// Command relay runs the amsync WebSocket sync server: a drop-in, durable
// replacement for the automerge-repo Node sync server, storing documents in
// an embedded Badger database.
//
//	relay [-addr :3030] [-data ./data] [-log-level info]
//
// Run "relay -h" for every flag. PORT and DATA_DIR are honoured as the Node
// server honours them; flags win over them.
//
// Subcommands work with documents from the command line (relay doc
// create|get|set|watch|sync) and with a stopped relay's store (relay
// inspect, export, import); docs/cli.md describes them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
