package simulations_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
	"github.com/amsync/amsync/simulations"
)

// The classic cases, as scripts: each reads as the story it tells. A
// failing script prints its trace tail.

func TestSplitBrainBetweenTwoRelays(t *testing.T) {
	w := newWorld(t, simulations.WorldConfig{Seed: 11, Relays: 2, Clients: 4})
	w.Connect("r2", "r1") // the relays sync: r2 dials r1
	w.Connect("c1", "r1")
	w.Connect("c2", "r1")
	w.Connect("c3", "r2")
	w.Connect("c4", "r2")
	quiet(t, w)

	// A shared document, created on c1 and opened by everyone.
	doc := create(t, w, "c1", func(tx *crdt.Tx) error {
		return tx.Set(nil, map[string]any{"count": crdt.Counter(0), "items": []any{}, "owner": "c1"})
	})
	for _, c := range []string{"c2", "c3", "c4"} {
		w.Ask(c, doc)
	}
	quiet(t, w)
	for _, c := range []string{"c2", "c3", "c4"} {
		require.True(t, w.Node(c).Has(doc), c)
	}

	// The relays lose each other; each keeps serving its own clients.
	w.Partition([]string{"r1", "c1", "c2"}, []string{"r2", "c3", "c4"})
	require.NoError(t, w.RunFor(time.Minute)) // past the keepalive
	require.False(t, w.Node("r2").Online(), "the relay link is cut")

	// Both sides write: the same counter, the same field, the same list,
	// and new records.
	ids := map[string]string{}
	for i, c := range []string{"c1", "c2", "c3", "c4"} {
		change(t, w, c, doc, func(tx *crdt.Tx) error {
			if err := tx.Increment([]any{"count"}, int64(i+1)); err != nil {
				return err
			}
			if err := tx.Set([]any{"owner"}, c); err != nil {
				return err
			}
			return tx.Insert([]any{"items"}, 0, c)
		})
		ids[c] = put(t, w, c, "todos", map[string]any{"title": "from " + c})
	}
	require.NoError(t, w.RunFor(10*time.Second))
	acknowledged(t, w) // each client by its own relay
	assert.Equal(t, int64(1+2), value(t, w, "r1", doc)["count"], "r1 sees only its side")
	assert.Equal(t, int64(3+4), value(t, w, "r2", doc)["count"], "r2 sees only its side")

	w.Heal()
	quiet(t, w)
	states := converged(t, w)
	v := states[doc].Value
	assert.Equal(t, int64(1+2+3+4), v["count"], "no increment lost")
	assert.ElementsMatch(t, []any{"c1", "c2", "c3", "c4"}, v["items"])
	assert.Contains(t, []any{"c1", "c2", "c3", "c4"}, v["owner"], "one writer wins, the same everywhere")
	index := states[records.DerivedID("index", "todos")].Value
	for c, id := range ids {
		assert.Equal(t, true, index[id], "%s's record is in the index", c)
		assert.Equal(t, "from "+c, states[id].Value["title"])
	}
}

func TestClientOfflineForALongTime(t *testing.T) {
	w := newWorld(t, simulations.WorldConfig{
		Seed: 5, Relays: 1, Clients: 2, TickEvery: time.Hour,
		Engine: func(n *simulations.Node, c *engine.Config) { c.IdleTimeout = time.Minute },
	})
	w.Connect("c1", "r1")
	w.Connect("c2", "r1")
	quiet(t, w)
	doc := create(t, w, "c2", func(tx *crdt.Tx) error {
		return tx.Set(nil, map[string]any{"text": crdt.Text(""), "count": crdt.Counter(0)})
	})
	w.Ask("c1", doc)
	quiet(t, w)
	require.True(t, w.Node("c1").Has(doc))

	// c1 goes offline and keeps working: records and edits of the shared
	// document, all durable on c1 and all pending.
	w.Disconnect("c1")
	var mine []string
	for i := range 30 {
		mine = append(mine, put(t, w, "c1", "notes", map[string]any{"n": int64(i)}))
		change(t, w, "c1", doc, func(tx *crdt.Tx) error { return tx.Increment([]any{"count"}, 1) })
	}
	pending := w.Node("c1").Pending()
	assert.Contains(t, pending, doc)
	assert.Len(t, pending, 30+2, "every record, the index and the shared document")

	// c1's process restarts while offline: the pending set is on disk.
	w.Crash("c1")
	require.NoError(t, w.Restart("c1", false))
	assert.Equal(t, pending, w.Node("c1").Pending())

	// Meanwhile, for three days: c2 edits the same document, the relay
	// evicts everything idle, crashes and restarts.
	for range 10 {
		change(t, w, "c2", doc, func(tx *crdt.Tx) error {
			if err := tx.Splice([]any{"text"}, 0, 0, "c2 "); err != nil {
				return err
			}
			return tx.Increment([]any{"count"}, 10)
		})
	}
	require.NoError(t, w.RunFor(72*time.Hour))
	w.Crash("r1")
	require.NoError(t, w.Restart("r1", false))

	// c1 comes back: everything syncs, and the relay acknowledges it all.
	w.Connect("c1", "r1")
	quiet(t, w)
	acknowledged(t, w)
	states := converged(t, w)
	assert.Equal(t, int64(30+100), states[doc].Value["count"])
	index := states[records.DerivedID("index", "notes")].Value
	for _, id := range mine {
		assert.Equal(t, true, index[id])
	}
}

func TestRelayCrashBetweenReceiveAndPersist(t *testing.T) {
	for _, act := range []simulations.DiskAction{simulations.DiskCrashBefore, simulations.DiskCrashAfter, simulations.DiskError} {
		t.Run(act.String(), func(t *testing.T) {
			w := newWorld(t, simulations.WorldConfig{Seed: 3, Relays: 1, Clients: 2})
			w.Connect("c1", "r1")
			w.Connect("c2", "r1")
			quiet(t, w)
			doc := create(t, w, "c2", func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, int64(0)) })
			w.Ask("c1", doc)
			quiet(t, w)

			// The relay's next write of the document fails: it has
			// applied c1's change in memory and not on disk.
			r1 := w.Node("r1")
			armed := true
			r1.ApplyFault = func(ops []store.Op) simulations.DiskAction {
				if armed && writes(ops, doc) {
					armed = false
					return act
				}
				return simulations.DiskWrite
			}
			heads := change(t, w, "c1", doc, func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, int64(1)) })
			for armed {
				require.True(t, w.Step(), "the relay writes the change")
			}

			// No acknowledgement came before the write: c1 still holds
			// the change as pending, and c2 has not seen it.
			assert.Contains(t, w.Node("c1").Pending(), doc)
			assert.Equal(t, int64(0), value(t, w, "c2", doc)["v"])
			onDisk, err := r1.DiskHas(doc, heads)
			require.NoError(t, err)
			assert.Equal(t, act == simulations.DiskCrashAfter, onDisk)
			assert.Equal(t, act == simulations.DiskError, r1.Up(), "a write error is not a crash")
			if !r1.Up() {
				require.NoError(t, w.Restart("r1", false))
			}

			// c1 reconnects (or, after a write error, the relay closed
			// its connection to resync): the change is sent again,
			// persisted, acknowledged and fanned out.
			quiet(t, w)
			acknowledged(t, w)
			onDisk, err = r1.DiskHas(doc, heads)
			require.NoError(t, err)
			assert.True(t, onDisk)
			assert.Equal(t, int64(1), converged(t, w)[doc].Value["v"])
		})
	}
}

// A disk that reports a write it never made: the relay then announces
// heads its disk lacks, and the checks must catch it (as they catch an
// engine that sends before it writes).
func TestLyingDiskIsCaught(t *testing.T) {
	w, err := simulations.NewWorld(simulations.WorldConfig{Seed: 9, Relays: 1, Clients: 1})
	require.NoError(t, err)
	w.Connect("c1", "r1")
	_, err = w.RunUntilQuiet(10_000)
	require.NoError(t, err)
	lie := true
	w.Node("r1").ApplyFault = func(ops []store.Op) simulations.DiskAction {
		if lie && len(ops) > 0 {
			lie = false
			return simulations.DiskLie
		}
		return simulations.DiskWrite
	}
	require.NoError(t, w.Do("c1", func(ctx context.Context, h *simulations.Handle) error {
		_, err := h.Docs.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"x"}, "y") })
		return err
	}))
	_, err = w.RunUntilQuiet(10_000)
	require.ErrorIs(t, err, simulations.ErrNotDurable)
	assert.Contains(t, err.Error(), "r1 sent heads of")
}

// A client that loses its disk loses only what no relay acknowledged.
func TestWipedClientKeepsAcknowledgedChanges(t *testing.T) {
	w := newWorld(t, simulations.WorldConfig{Seed: 21, Relays: 1, Clients: 2})
	w.Connect("c1", "r1")
	w.Connect("c2", "r1")
	quiet(t, w)
	acked := put(t, w, "c1", "todos", map[string]any{"title": "synced"})
	quiet(t, w)
	require.Empty(t, w.Node("c1").Pending())
	w.Disconnect("c1")
	unacked := put(t, w, "c1", "todos", map[string]any{"title": "never synced"})
	w.Crash("c1")
	require.NoError(t, w.Restart("c1", true))
	w.Connect("c1", "r1")
	quiet(t, w)
	w.Ask("c1", acked)
	w.Ask("c2", acked)
	quiet(t, w)
	states := converged(t, w)
	assert.Equal(t, "synced", states[acked].Value["title"])
	assert.NotContains(t, states, unacked, "it was on the wiped disk only")
}

func newWorld(t *testing.T, cfg simulations.WorldConfig) *simulations.World {
	t.Helper()
	if cfg.Trace == nil {
		cfg.Trace = traceOut()
	}
	w, err := simulations.NewWorld(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d, last steps:\n%s", cfg.Seed, strings.Join(w.TraceTail(), "\n"))
		}
	})
	return w
}

// acknowledged requires every client's changes to be acknowledged by its
// relay (no pending document), but for a known engine bug, which is logged.
func acknowledged(t *testing.T, w *simulations.World) {
	t.Helper()
	err := w.CheckAcknowledged()
	if b, ok := simulations.Known(err); ok {
		t.Logf("known engine bug: %s: %v", b.Summary, err)
		return
	}
	require.NoError(t, err)
}

func quiet(t *testing.T, w *simulations.World) {
	t.Helper()
	_, err := w.RunUntilQuiet(200_000)
	require.NoError(t, err)
}

// converged makes every client open every document (as a user listing
// everything would), then checks that every node holds the same documents
// and that no acknowledged change is lost.
func converged(t *testing.T, w *simulations.World) map[string]simulations.DocState {
	t.Helper()
	docs := w.Documents()
	for _, n := range w.Clients() {
		for _, id := range docs {
			w.Ask(n.Name, id)
		}
	}
	quiet(t, w)
	states, err := w.CheckConverged(w.Documents())
	require.NoError(t, err)
	lost, err := w.CheckLedger(states)
	require.NoError(t, err)
	require.Zero(t, lost)
	return states
}

func create(t *testing.T, w *simulations.World, node string, init func(*crdt.Tx) error) string {
	t.Helper()
	var id string
	require.NoError(t, w.Do(node, func(ctx context.Context, h *simulations.Handle) (err error) {
		id, err = h.Docs.Create(ctx, init)
		return err
	}))
	return id
}

func change(t *testing.T, w *simulations.World, node, id string, fn func(*crdt.Tx) error) crdt.Heads {
	t.Helper()
	var heads crdt.Heads
	require.NoError(t, w.Do(node, func(ctx context.Context, h *simulations.Handle) (err error) {
		heads, err = h.Docs.Change(ctx, id, fn)
		return err
	}))
	return heads
}

// put creates a record with an id drawn from the World's generator.
func put(t *testing.T, w *simulations.World, node, coll string, fields map[string]any) string {
	t.Helper()
	id, err := wire.NewDocumentID(randReader{w})
	require.NoError(t, err)
	require.NoError(t, w.Do(node, func(ctx context.Context, h *simulations.Handle) error {
		return h.Records.Collection(coll).PutID(ctx, id, fields)
	}))
	return id
}

func value(t *testing.T, w *simulations.World, node, id string) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, w.Do(node, func(ctx context.Context, h *simulations.Handle) error {
		return h.Docs.Read(ctx, id, func(d *crdt.Doc) (err error) {
			v, err = d.Value()
			return err
		})
	}))
	return v
}

func writes(ops []store.Op, doc string) bool {
	return slices.ContainsFunc(ops, func(o store.Op) bool { return len(o.Key) == 3 && o.Key[0] == doc && o.Key[1] != store.KindSyncState })
}

type randReader struct{ w *simulations.World }

func (r randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.w.Rand().Uint32())
	}
	return len(p), nil
}

// A Find that waits: c2 looks for a document only c1 and the relay have,
// and Find returns once it has arrived.
func TestFindWaitsForTheNetwork(t *testing.T) {
	w := newWorld(t, simulations.WorldConfig{Seed: 8, Relays: 1, Clients: 2})
	w.Connect("c1", "r1")
	w.Connect("c2", "r1")
	quiet(t, w)
	doc := create(t, w, "c1", func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, "here") })
	quiet(t, w)
	require.False(t, w.Node("c2").Has(doc))
	require.NoError(t, w.DoWait("c2", func(ctx context.Context, h *simulations.Handle) error { return h.Docs.Find(ctx, doc) }))
	assert.True(t, w.Node("c2").Has(doc))
	assert.Equal(t, "here", value(t, w, "c2", doc)["v"])

	// A document only an offline client has: Find says it is unavailable,
	// and finds it once the client is back.
	w.Disconnect("c1")
	offline := create(t, w, "c1", func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, "offline") })
	find := func(ctx context.Context, h *simulations.Handle) error { return h.Docs.Find(ctx, offline) }
	require.ErrorIs(t, w.DoWait("c2", find), engine.ErrUnavailable)
	w.Connect("c1", "r1")
	quiet(t, w)
	require.NoError(t, w.DoWait("c2", find))
	assert.Equal(t, "offline", value(t, w, "c2", offline)["v"])
}
