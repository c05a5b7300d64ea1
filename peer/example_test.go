package peer_test

import (
	"context"
	"fmt"

	"github.com/amsync/amsync/peer"
)

// A peer works offline: records are written to its local store at once and
// synced with the relay (Config.URL) whenever it is reachable.
func Example() {
	ctx := context.Background()
	p, err := peer.Open(peer.Config{}) // no URL, in-memory store: offline only
	if err != nil {
		panic(err)
	}
	defer p.Close()
	todos := p.Records().Collection("todos")
	id, _ := todos.Put(ctx, map[string]any{"title": "milk", "done": false})
	todos.Set(ctx, id, map[string]any{"done": true})
	rec, _ := todos.Get(ctx, id)
	fmt.Println(rec.Fields["title"], rec.Fields["done"], len(p.Pending()) > 0)
	// Output: milk true true
}
