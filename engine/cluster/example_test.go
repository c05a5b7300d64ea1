package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/cluster"
	"github.com/amsync/amsync/engine/store"
)

// Two relays' engines share documents through one JetStream server: a
// change made on one reaches the other.
func Example() {
	dir, _ := os.MkdirTemp("", "amsync-example-")
	defer os.RemoveAll(dir)
	ns, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	relay := func() *engine.Engine {
		st := store.NewMemStore()
		cl, err := cluster.Open(context.Background(), cluster.Config{URL: ns.ClientURL(), Store: st, Logger: quiet})
		if err != nil {
			panic(err)
		}
		eng, _ := engine.New(engine.Config{Store: st, Replicator: cl, Logger: quiet})
		cl.Start(eng)
		cl.WaitReady(context.Background())
		return eng
	}
	a, b := relay(), relay()

	// Create returns once the change is in JetStream; Find on the other
	// relay waits for its feed to bring the document.
	doc, _ := a.Create(context.Background(), func(tx *crdt.Tx) error { return tx.Set([]any{"title"}, "hello") })
	if err := b.Find(context.Background(), doc); err != nil {
		panic(err)
	}
	b.Read(context.Background(), doc, func(d *crdt.Doc) error {
		v, _ := d.Value()
		fmt.Println(v["title"])
		return nil
	})
	// Output: hello
}
