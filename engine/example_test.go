package engine_test

import (
	"context"
	"fmt"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// An application server reads and writes documents through the engine; the
// same engine serves WebSocket peers (see wsrelay.OpenRelay).
func Example() {
	ctx := context.Background()
	eng, err := engine.New(engine.Config{Store: store.NewMemStore(), PeerID: "my-server"})
	if err != nil {
		panic(err)
	}
	defer eng.Close(ctx)

	id, _ := eng.Create(ctx, func(tx *crdt.Tx) error {
		return tx.Set([]any{"title"}, "hello")
	})
	eng.Change(ctx, id, func(tx *crdt.Tx) error { return tx.Set([]any{"count"}, int64(2)) })
	eng.Read(ctx, id, func(doc *crdt.Doc) error {
		v, _ := doc.Value()
		fmt.Println(v["title"], v["count"])
		return nil
	})
	// Output: hello 2
}
