package wsrelay_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/amsync/amsync/peer"
	"github.com/amsync/amsync/wsrelay"
)

// An application server embeds the relay and mounts its handler; a Go peer
// syncs a record through it.
func ExampleOpenRelay() {
	ctx := context.Background()
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{InMemory: true, Isolation: wsrelay.IsolationNone})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(r.Handler())
	defer func() { ts.Close(); r.Shutdown(ctx) }()

	p, _ := peer.Open(peer.Config{URL: "ws" + strings.TrimPrefix(ts.URL, "http")})
	defer p.Close()
	id, _ := p.Records().Collection("todos").Put(ctx, map[string]any{"title": "milk"})
	p.WaitSynced(ctx)

	rec, _ := r.Records.Collection("todos").Get(ctx, id)
	fmt.Println(rec.Fields["title"])
	// Output: milk
}
