package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// logReplicator is an in-memory replication log: what Publish accepted, in
// order. fail makes Publish refuse, as an unreachable JetStream does.
type logReplicator struct {
	h    *harness
	mu   sync.Mutex
	fail error
	log  []published
}

type published struct {
	doc  string
	data []byte
}

func (r *logReplicator) Publish(_ context.Context, docID string, changes []byte) error {
	r.h.record("publish " + docID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.log = append(r.log, published{doc: docID, data: append([]byte(nil), changes...)})
	return nil
}

func (r *logReplicator) entries() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]published(nil), r.log...)
}

// newReplicatedHarness is newHarness with a logReplicator.
func newReplicatedHarness(t *testing.T, mem *store.MemStore) (*harness, *logReplicator) {
	var rep *logReplicator
	h := newHarnessWith(t, mem, func(h *harness) Replicator {
		rep = &logReplicator{h: h}
		return rep
	})
	return h, rep
}

// newHarnessWith is newHarness with the Replicator mk makes.
func newHarnessWith(t *testing.T, mem *store.MemStore, mk func(*harness) Replicator) *harness {
	h := &harness{t: t, now: time.Unix(1700000000, 0), log: &[]string{}}
	h.st = &recordingStore{Store: mem, h: h}
	rep := mk(h)
	eng, err := New(Config{
		Store:      h.st,
		PeerID:     "server",
		Rand:       newRand(2),
		Now:        func() time.Time { return h.now },
		Replicator: rep,
		Go: func(f func()) {
			h.mu.Lock()
			h.tasks = append(h.tasks, f)
			h.mu.Unlock()
		},
	})
	require.NoError(t, err)
	h.eng = eng
	t.Cleanup(func() { eng.stop() })
	return h
}

// applyRemote calls ApplyRemote and runs the document's task; it returns
// what done reported.
func (h *harness) applyRemote(docID string, data []byte) error {
	var got error
	called := 0
	h.eng.ApplyRemote(docID, data, func(err error) { got = err; called++ })
	h.drain()
	require.Equal(h.t, 1, called, "done called once")
	return got
}

// changesOf returns every change of d, concatenated.
func changesOf(t *testing.T, d *crdt.Doc) []byte {
	b, err := d.ChangesSince(nil)
	require.NoError(t, err)
	return b
}

// docFrom loads published bytes into a fresh document.
func docFrom(t *testing.T, entries []published) *crdt.Doc {
	d, err := crdt.New("bb")
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, d.ApplyChanges(e.data))
	}
	return d
}

func TestReplicatorPublishesBeforeWriteAndSend(t *testing.T) {
	h, rep := newReplicatedHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	b.sync(docA, wire.TypeRequest)
	h.settle(a, b)
	*h.log = nil

	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)

	var order []string
	for _, l := range *h.log {
		switch {
		case strings.HasPrefix(l, "publish "):
			order = append(order, "publish")
		case strings.HasPrefix(l, "apply "+docA+"/snapshot"), strings.HasPrefix(l, "apply "+docA+"/incremental"):
			order = append(order, "write")
		case strings.HasPrefix(l, "send "):
			order = append(order, "send")
		}
	}
	// The first message may be the sync handshake (no changes yet); from
	// the publish on: publish, write, then the messages.
	i := 0
	for i < len(order) && order[i] != "publish" {
		require.Equal(t, "send", order[i])
		i++
	}
	require.Greater(t, len(order), i+2, "full log: %v", *h.log)
	assert.Equal(t, []string{"publish", "write", "send"}, order[i:i+3], "full log: %v", *h.log)
	assert.Equal(t, 1, strings.Count(strings.Join(order, " "), "publish"), "one publish for one change: %v", order)

	entries := rep.entries()
	require.Len(t, entries, 1)
	assert.Equal(t, docA, entries[0].doc)
	d := docFrom(t, entries)
	assert.Equal(t, map[string]any{"k": "v"}, value(t, d))
	assert.Equal(t, a.docs[docA].Heads(), d.Heads())
	assert.Equal(t, map[string]any{"k": "v"}, value(t, b.docs[docA]))
}

func TestPublishFailureAcknowledgesNothing(t *testing.T) {
	mem := store.NewMemStore()
	h, rep := newReplicatedHarness(t, mem)
	a := h.connect("a", "sa")
	rep.fail = errors.New("jetstream unreachable")
	heads := countSentHeads(t, a)
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a)
	assert.Zero(t, *heads, "nothing unpublished may be acknowledged")
	assert.True(t, a.conn.closed)
	assert.Equal(t, CloseInternalError, a.conn.code)
	chunks, err := mem.LoadRange(context.Background(), store.DocPrefix(docA))
	require.NoError(t, err)
	assert.Empty(t, chunks, "an unpublished change is not written locally")
	assert.Equal(t, int64(1), h.eng.Stats().PublishErrors)

	// The replicator is back; the client reconnects and syncs again: now
	// the change is published, written and acknowledged.
	rep.mu.Lock()
	rep.fail = nil
	rep.mu.Unlock()
	a2 := h.connect("a", "sa")
	a2.docs, a2.syncs = a.docs, map[string]*crdt.SyncState{docA: crdt.NewSyncState(a.docs[docA])}
	a2.sync(docA, wire.TypeSync)
	h.settle(a2)
	require.Len(t, rep.entries(), 1)
	assert.Equal(t, map[string]any{"k": "v"}, value(t, docFrom(t, rep.entries())))
	chunks, err = mem.LoadRange(context.Background(), store.DocPrefix(docA))
	require.NoError(t, err)
	assert.NotEmpty(t, chunks)
}

func TestLocalChangeFailsWhenNotPublished(t *testing.T) {
	mem := store.NewMemStore()
	h, rep := newReplicatedHarness(t, mem)
	rep.fail = errors.New("no PubAck")
	res := make(chan error, 1)
	go func() {
		_, err := h.eng.Change(context.Background(), docA, func(tx *crdt.Tx) error { return tx.Set([]any{"k"}, "v") })
		res <- err
	}()
	require.Eventually(t, func() bool { return h.queued() > 0 }, 5*time.Second, time.Millisecond)
	h.drain()
	err := <-res
	require.ErrorIs(t, err, ErrNotPublished)
	chunks, err := mem.LoadRange(context.Background(), store.DocPrefix(docA))
	require.NoError(t, err)
	assert.Empty(t, chunks)
}

func TestApplyRemoteFansOutWithoutRepublishing(t *testing.T) {
	h, rep := newReplicatedHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	a.edit(docA, "base", "x")
	a.sync(docA, wire.TypeSync)
	h.settle(a)
	require.Len(t, rep.entries(), 1)

	// Another relay's client changed the document; its changes arrive
	// through the feed.
	other, err := crdt.New("cc")
	require.NoError(t, err)
	require.NoError(t, other.ApplyChanges(changesOf(t, a.docs[docA])))
	before := other.Heads()
	_, err = other.Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"remote"}, "y") })
	require.NoError(t, err)
	inc, err := other.ChangesSince(before)
	require.NoError(t, err)

	heard := 0
	cancel := h.eng.Subscribe(func(string, crdt.Heads, bool) { heard++ })
	defer cancel()
	require.NoError(t, h.applyRemote(docA, inc))
	h.settle(a)
	assert.Equal(t, map[string]any{"base": "x", "remote": "y"}, value(t, a.docs[docA]))
	assert.Zero(t, heard, "subscribers hear of what this engine accepted, not of the feed")
	assert.Len(t, rep.entries(), 1, "changes from the feed are never published again")
	assert.Equal(t, int64(1), h.eng.Stats().RemoteApplied)

	// The same input again is a no-op.
	require.NoError(t, h.applyRemote(docA, inc))
	assert.Empty(t, a.conn.take())
	assert.Len(t, rep.entries(), 1)
}

func TestApplyRemoteStoresIdleDocumentWithoutLoading(t *testing.T) {
	mem := store.NewMemStore()
	h, _ := newReplicatedHarness(t, mem)
	src, err := crdt.New("dd")
	require.NoError(t, err)
	var parts [][]byte
	for i, k := range []string{"one", "two", "three"} {
		before := src.Heads()
		_, err := src.Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{k}, int64(i)) })
		require.NoError(t, err)
		inc, err := src.ChangesSince(before)
		require.NoError(t, err)
		parts = append(parts, inc)
	}
	for _, p := range parts {
		require.NoError(t, h.applyRemote(docA, p))
	}
	require.NoError(t, h.applyRemote(docA, parts[1]), "a duplicate is harmless")
	st := h.eng.Stats()
	assert.Equal(t, int64(4), st.RemoteStored)
	assert.Zero(t, st.DocLoads, "an idle document is not loaded to take remote changes")

	c := h.connect("c", "sc")
	c.sync(docA, wire.TypeRequest)
	h.settle(c)
	assert.Equal(t, map[string]any{"one": int64(0), "two": int64(1), "three": int64(2)}, value(t, c.docs[docA]))
	assert.Equal(t, src.Heads(), c.docs[docA].Heads())
}

func TestApplyRemoteSkipsWhatThisEnginePublished(t *testing.T) {
	h, rep := newReplicatedHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a)
	entries := rep.entries()
	require.Len(t, entries, 1)
	a.conn.take()
	require.NoError(t, h.applyRemote(docA, entries[0].data))
	assert.Equal(t, int64(1), h.eng.Stats().RemoteSkipped)
	assert.Zero(t, h.eng.Stats().RemoteApplied)
}

func TestApplyRemoteRejectsInvalidInput(t *testing.T) {
	h, _ := newReplicatedHarness(t, store.NewMemStore())
	require.ErrorIs(t, h.applyRemote(docA, []byte("not automerge")), ErrRejected)
	require.ErrorIs(t, h.applyRemote("not-a-doc-id", []byte{1}), ErrRejected)
	assert.Zero(t, h.eng.Stats().RemoteStored)
}

func TestApplyRemoteReachesPeerToldUnavailable(t *testing.T) {
	h, _ := newReplicatedHarness(t, store.NewMemStore())
	src, err := crdt.New("ee")
	require.NoError(t, err)
	_, err = src.Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"k"}, "v") })
	require.NoError(t, err)

	// A reader on this engine waits for the document; it arrives from the
	// feed while it waits.
	c := h.connect("c", "sc")
	c.sync(docA, wire.TypeRequest)
	h.drain()
	got := c.conn.take()
	require.Len(t, got, 1)
	require.Equal(t, wire.TypeDocUnavailable, got[0].Type)
	require.NoError(t, h.applyRemote(docA, changesOf(t, src)))
	h.settle(c)
	assert.Equal(t, map[string]any{"k": "v"}, value(t, c.docs[docA]))
}

// awaitingReplicator is a logReplicator that also holds documents this
// engine has not applied yet, as a relay behind its cluster's feed does:
// Await delivers them through ApplyRemote (queued on the document before
// Await returns, as the feed would have applied them) and reports them.
type awaitingReplicator struct {
	*logReplicator
	eng     *Engine
	mu      sync.Mutex
	held    map[string][]byte
	awaited []string
}

func (r *awaitingReplicator) Await(_ context.Context, docID string) (bool, error) {
	r.mu.Lock()
	data, ok := r.held[docID]
	delete(r.held, docID)
	r.awaited = append(r.awaited, docID)
	r.mu.Unlock()
	if ok {
		r.eng.ApplyRemote(docID, data, func(err error) {})
	}
	return ok, nil
}

func (r *awaitingReplicator) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.awaited...)
}

func TestUnavailableWaitsForTheReplicator(t *testing.T) {
	rep := &awaitingReplicator{held: map[string][]byte{}}
	h := newHarnessWith(t, store.NewMemStore(), func(h *harness) Replicator {
		rep.logReplicator = &logReplicator{h: h}
		return rep
	})
	rep.eng = h.eng
	src, err := crdt.New("ff")
	require.NoError(t, err)
	_, err = src.Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"k"}, "v") })
	require.NoError(t, err)
	rep.held[docA] = changesOf(t, src)

	// A document the replicator holds but has not delivered: the asker is
	// not told doc-unavailable, and gets the document.
	c := h.connect("c", "sc")
	c.sync(docA, wire.TypeRequest)
	h.settle(c)
	assert.Equal(t, []string{docA}, rep.calls())
	assert.False(t, c.unav[docA], "no doc-unavailable for a document the replicator had")
	assert.Equal(t, map[string]any{"k": "v"}, value(t, c.docs[docA]))

	// A document the replicator does not have: doc-unavailable, once it
	// said so.
	docB := newDocID(t, 7)
	c.sync(docB, wire.TypeRequest)
	h.settle(c)
	assert.True(t, c.unav[docB])
	assert.Equal(t, []string{docA, docB}, rep.calls())

	// A later request asks again (the document may have been created
	// elsewhere since).
	c2 := h.connect("c2", "sc2")
	c2.sync(docB, wire.TypeRequest)
	h.settle(c2)
	assert.True(t, c2.unav[docB])
	assert.Equal(t, []string{docA, docB, docB}, rep.calls())
}
