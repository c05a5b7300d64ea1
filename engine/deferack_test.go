package engine

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// countingCore counts the steps of the replicas it loads and records the
// heads of every message they receive, in order.
type countingCore struct {
	steps    atomic.Int64
	mu       sync.Mutex
	received []crdt.Heads
}

func (c *countingCore) Load(id string, actor crdt.ActorID, chunks []store.Chunk) (CoreReplica, error) {
	r, err := InProcess{}.Load(id, actor, chunks)
	if err != nil {
		return nil, err
	}
	return countingReplica{CoreReplica: r, c: c}, nil
}

type countingReplica struct {
	CoreReplica
	c *countingCore
}

func (r countingReplica) Step(in ReplicaInput) (ReplicaOutput, error) {
	r.c.steps.Add(1)
	r.c.mu.Lock()
	for _, m := range in.Receive {
		hs, _ := crdt.SyncMessageHeads(m.Data)
		r.c.received = append(r.c.received, hs)
	}
	r.c.mu.Unlock()
	return r.CoreReplica.Step(in)
}

func TestReadersAcknowledgementsFoldIntoTheNextStep(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	core := &countingCore{}
	h.eng.core = core
	w := h.connect("w", "sw")
	readers := []*client{h.connect("r1", "s1"), h.connect("r2", "s2"), h.connect("r3", "s3")}
	all := append([]*client{w}, readers...)
	w.edit(docA, "n", int64(0))
	w.sync(docA, wire.TypeSync)
	h.settle(all...)
	for _, r := range readers {
		r.sync(docA, wire.TypeRequest)
	}
	h.settle(all...)

	for i := int64(1); i <= 5; i++ {
		deferred, steps := h.eng.Stats().AcksDeferred, core.steps.Load()
		w.edit(docA, "n", i)
		w.sync(docA, wire.TypeSync)
		h.settle(all...)
		for _, c := range all {
			require.Equal(t, map[string]any{"n": i}, value(t, c.docs[docA]), c.id)
			require.Equal(t, w.docs[docA].Heads(), c.docs[docA].Heads(), c.id)
		}
		// The three readers' acknowledgements (and the writer's of our
		// acknowledgement, if it sends one) wait: the change took one step,
		// which received the acknowledgements of the change before.
		assert.GreaterOrEqual(t, h.eng.Stats().AcksDeferred-deferred, int64(3), "change %d", i)
		assert.Equal(t, int64(1), core.steps.Load()-steps, "change %d: steps", i)
	}

	// A reader that leaves has its sync state persisted at once, as of
	// its last (held back) acknowledgement: the heads it left with.
	heads := w.docs[docA].Heads()
	readers[0].sess.Closed()
	h.drain()
	st, err := mem.Load(context.Background(), store.Key{docA, store.KindSyncState, "s1"})
	require.NoError(t, err)
	for _, hd := range heads {
		assert.True(t, bytes.Contains(st, hd[:]), "persisted sync state of the departed reader holds the heads it left with")
	}

	// Eviction receives what is held back before it persists.
	w.edit(docA, "n", int64(6))
	w.sync(docA, wire.TypeSync)
	h.settle(all...)
	evictions := h.eng.Stats().Evictions
	h.now = h.now.Add(h.eng.cfg.IdleTimeout + 1)
	h.eng.Tick(h.now)
	h.drain()
	require.Equal(t, evictions+1, h.eng.Stats().Evictions)
	st, err = mem.Load(context.Background(), store.Key{docA, store.KindSyncState, "s2"})
	require.NoError(t, err)
	for _, hd := range w.docs[docA].Heads() {
		assert.True(t, bytes.Contains(st, hd[:]), "sync state persisted at eviction holds the current heads")
	}
}

// A reader's two messages in one batch, the first not an acknowledgement
// of our current heads and the second one: the second may not be held
// back ahead of the first (simulation seed 133).
func TestHeldBackAcknowledgementKeepsItsSendersOrder(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	core := &countingCore{}
	h.eng.core = core
	w, r := h.connect("w", "sw"), h.connect("r", "sr")
	w.edit(docA, "n", int64(0))
	w.sync(docA, wire.TypeSync)
	h.settle(w, r)
	r.sync(docA, wire.TypeRequest)
	h.settle(w, r)

	// Two changes reach the reader before it answers either.
	var heads []crdt.Heads
	for i := int64(1); i <= 2; i++ {
		w.edit(docA, "n", i)
		w.sync(docA, wire.TypeSync)
		heads = append(heads, w.docs[docA].Heads())
		h.drain()
		w.pump()
		h.drain()
	}
	core.mu.Lock()
	core.received = nil
	core.mu.Unlock()
	r.pump() // two answers, now queued together at the server
	h.settle(w, r)
	// The core received the reader's answer to the first change before
	// its answer to the second (an acknowledgement of our heads, which
	// may wait, but not ahead of its sender's earlier message).
	core.mu.Lock()
	var order []int
	for _, hs := range core.received {
		for i := range heads {
			if hs.Equal(heads[i]) {
				order = append(order, i)
			}
		}
	}
	core.mu.Unlock()
	require.NotEmpty(t, order)
	assert.True(t, slices.IsSorted(order), "reader's messages received out of order: %v", order)

	// The reader writes; the server must take it and pass it on.
	r.edit(docA, "m", "from r")
	r.sync(docA, wire.TypeSync)
	h.settle(w, r)
	for _, c := range []*client{w, r} {
		assert.Equal(t, map[string]any{"n": int64(2), "m": "from r"}, value(t, c.docs[docA]), c.id)
	}
}

// At shutdown the departures that closing the connections makes receive
// the acknowledgements held back, then persist the sync states, before
// Close returns.
func TestCloseDetachesAndPersistsAtOnce(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	w, r := h.connect("w", "sw"), h.connect("r", "sr")
	w.edit(docA, "n", int64(1))
	w.sync(docA, wire.TypeSync)
	h.settle(w, r)
	r.sync(docA, wire.TypeRequest)
	h.settle(w, r)
	w.edit(docA, "n", int64(2))
	w.sync(docA, wire.TypeSync)
	h.settle(w, r) // the reader's acknowledgement of n=2 is held back

	done := make(chan error, 1)
	go func() { done <- h.eng.Close(context.Background()) }()
	// The harness runs document tasks by hand: run them until Close returns.
	for {
		select {
		case err := <-done:
			require.NoError(t, err)
			st, err := mem.Load(context.Background(), store.Key{docA, store.KindSyncState, "sr"})
			require.NoError(t, err)
			for _, hd := range w.docs[docA].Heads() {
				assert.True(t, bytes.Contains(st, hd[:]), "the reader's sync state is persisted with the heads it acknowledged")
			}
			return
		default:
			h.drain()
			runtime.Gosched()
		}
	}
}
