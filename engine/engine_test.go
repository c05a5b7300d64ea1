package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// seqRand is a deterministic byte source for ids.
type seqRand struct{ r *rand.Rand }

func (s seqRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s.r.Uint32())
	}
	return len(p), nil
}

func newRand(seed uint64) seqRand {
	return seqRand{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// harness runs an engine with a deterministic task queue: tasks run only
// when drain is called, one at a time, in order.
type harness struct {
	t     *testing.T
	eng   *Engine
	st    *recordingStore
	tasks []func()
	now   time.Time
	log   *[]string // ordered record of applies and sends
	mu    sync.Mutex
}

type recordingStore struct {
	store.Store
	h       *harness
	fail    error
	onApply func()
}

func (r *recordingStore) Apply(ctx context.Context, ops []store.Op) error {
	if r.fail != nil {
		return r.fail
	}
	if err := r.Store.Apply(ctx, ops); err != nil {
		return err
	}
	if r.onApply != nil {
		r.onApply()
	}
	for _, op := range ops {
		r.h.record("apply " + op.Key.String())
	}
	return nil
}

func newHarness(t *testing.T, mem *store.MemStore) *harness {
	h := &harness{t: t, now: time.Unix(1700000000, 0), log: &[]string{}}
	h.st = &recordingStore{Store: mem, h: h}
	eng, err := New(Config{
		Store:  h.st,
		PeerID: "server",
		Rand:   newRand(1),
		Now:    func() time.Time { return h.now },
		Go: func(f func()) {
			h.mu.Lock()
			h.tasks = append(h.tasks, f)
			h.mu.Unlock()
		},
	})
	require.NoError(t, err)
	h.eng = eng
	return h
}

func (h *harness) record(s string) {
	h.mu.Lock()
	*h.log = append(*h.log, s)
	h.mu.Unlock()
}

func (h *harness) drain() {
	for i := 0; ; i++ {
		h.mu.Lock()
		if len(h.tasks) == 0 {
			h.mu.Unlock()
			return
		}
		f := h.tasks[0]
		h.tasks = h.tasks[1:]
		h.mu.Unlock()
		require.Less(h.t, i, 10000, "tasks did not settle")
		f()
	}
}

func (h *harness) queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.tasks)
}

// fakeConn records frames; it is the engine's view of a socket.
type fakeConn struct {
	h      *harness
	name   string
	frames []wire.Message
	closed bool
	code   int
	reason string
	onSend func(wire.Message)
}

func (c *fakeConn) Send(frame []byte) error {
	if c.closed {
		return errors.New("closed")
	}
	m, err := wire.Decode(frame)
	if err != nil {
		c.h.t.Fatalf("engine sent an undecodable frame: %v", err)
	}
	c.h.record("send " + c.name + " " + m.Type)
	if c.onSend != nil {
		c.onSend(m)
	}
	c.frames = append(c.frames, m)
	return nil
}

func (c *fakeConn) Close(code int, reason string) {
	if !c.closed {
		c.closed, c.code, c.reason = true, code, reason
	}
}

func (c *fakeConn) take() []wire.Message {
	f := c.frames
	c.frames = nil
	return f
}

// client is a minimal automerge-repo peer speaking the wire protocol.
type client struct {
	h     *harness
	id    string
	conn  *fakeConn
	sess  *Session
	docs  map[string]*crdt.Doc
	syncs map[string]*crdt.SyncState
	unav  map[string]bool
}

func (h *harness) connect(id string, storageID string) *client {
	c := &client{h: h, id: id, docs: map[string]*crdt.Doc{}, syncs: map[string]*crdt.SyncState{}, unav: map[string]bool{}}
	c.conn = &fakeConn{h: h, name: id}
	c.sess = h.eng.Open(c.conn)
	c.send(wire.Message{Type: wire.TypeJoin, SenderID: id, PeerMetadata: &wire.PeerMetadata{StorageID: storageID}, SupportedProtocolVersions: []string{"1"}})
	got := c.conn.take()
	require.Len(h.t, got, 1)
	require.Equal(h.t, wire.TypePeer, got[0].Type)
	return c
}

func (c *client) send(m wire.Message) error {
	f, err := wire.Encode(m)
	require.NoError(c.h.t, err)
	return c.sess.HandleFrame(f)
}

func (c *client) doc(docID string) *crdt.Doc {
	d := c.docs[docID]
	if d == nil {
		var err error
		d, err = crdt.New(crdt.ActorID(hexID(c.id)))
		require.NoError(c.h.t, err)
		c.docs[docID] = d
		c.syncs[docID] = crdt.NewSyncState(d)
	}
	return d
}

func hexID(s string) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, hexd[s[i]>>4], hexd[s[i]&15])
	}
	return string(out)
}

// sync sends a sync (or request, for an empty doc) message if one is due.
func (c *client) sync(docID string, typ string) {
	c.doc(docID)
	msg, ok := c.syncs[docID].Generate()
	if !ok {
		return
	}
	require.NoError(c.h.t, c.send(wire.Message{Type: typ, SenderID: c.id, TargetID: "server", DocumentID: docID, Data: msg}))
}

// pump delivers every frame the server sent to c, answering each sync.
func (c *client) pump() int {
	n := 0
	for _, m := range c.conn.take() {
		n++
		switch m.Type {
		case wire.TypeSync:
			c.doc(m.DocumentID)
			_, err := c.syncs[m.DocumentID].Receive(m.Data)
			require.NoError(c.h.t, err)
			c.sync(m.DocumentID, wire.TypeSync)
		case wire.TypeDocUnavailable:
			c.unav[m.DocumentID] = true
		}
	}
	return n
}

// settle runs tasks and pumps clients until nobody has anything to say.
func (h *harness) settle(cs ...*client) {
	for i := 0; i < 100; i++ {
		h.drain()
		n := 0
		for _, c := range cs {
			n += c.pump()
		}
		h.drain()
		if n == 0 {
			return
		}
	}
	h.t.Fatal("no quiescence")
}

func (c *client) edit(docID, key string, v any) {
	_, err := c.doc(docID).Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{key}, v) })
	require.NoError(c.h.t, err)
}

func value(t *testing.T, d *crdt.Doc) map[string]any {
	v, err := d.Value()
	require.NoError(t, err)
	return v
}

const docA = "25gQkE3hoP2bJikoQWmNSo2vm1CY"

func newDocID(t *testing.T, seed uint64) string {
	id, err := wire.NewDocumentID(newRand(seed))
	require.NoError(t, err)
	return id
}

func TestJoinAnsweredWithPeer(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	c := &client{h: h}
	c.conn = &fakeConn{h: h, name: "a"}
	c.sess = h.eng.Open(c.conn)
	require.NoError(t, c.send(wire.Message{Type: wire.TypeJoin, SenderID: "peer-a", PeerMetadata: &wire.PeerMetadata{StorageID: "sa"}, SupportedProtocolVersions: []string{"1"}}))
	got := c.conn.take()
	require.Len(t, got, 1)
	assert.Equal(t, wire.TypePeer, got[0].Type)
	assert.Equal(t, "server", got[0].SenderID)
	assert.Equal(t, "peer-a", got[0].TargetID)
	assert.Equal(t, "1", got[0].SelectedProtocolVersion)
	require.NotNil(t, got[0].PeerMetadata)
	assert.Equal(t, h.eng.StorageID(), got[0].PeerMetadata.StorageID)
	assert.NotEmpty(t, h.eng.StorageID())
	assert.False(t, got[0].PeerMetadata.IsEphemeral)
}

func TestUnsupportedProtocolVersion(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	conn := &fakeConn{h: h, name: "a"}
	s := h.eng.Open(conn)
	f, _ := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "p", SupportedProtocolVersions: []string{"2"}})
	require.ErrorIs(t, s.HandleFrame(f), ErrProtocolVersion)
	got := conn.take()
	require.Len(t, got, 1)
	assert.Equal(t, wire.TypeError, got[0].Type)
	assert.Equal(t, "unsupported protocol version", got[0].ErrorMessage)
	assert.True(t, conn.closed)
}

func TestMessageBeforeJoinIsRejected(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	conn := &fakeConn{h: h, name: "a"}
	s := h.eng.Open(conn)
	f, _ := wire.Encode(wire.Message{Type: wire.TypeRequest, SenderID: "p", TargetID: "server", DocumentID: docA, Data: []byte{0x42, 0, 0, 1, 0, 0, 0}})
	require.ErrorIs(t, s.HandleFrame(f), ErrNotJoined)
	got := conn.take()
	require.Len(t, got, 1)
	assert.Equal(t, wire.TypeError, got[0].Type)
	assert.True(t, conn.closed)
	assert.Equal(t, ClosePolicyViolation, conn.code)
}

func TestMalformedFrameClosesOnlyThatSession(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	b := h.connect("b", "sb")
	require.Error(t, a.sess.HandleFrame([]byte{0xf6})) // CBOR null
	assert.True(t, a.conn.closed)
	assert.Equal(t, CloseUnsupportedData, a.conn.code)
	got := a.conn.take()
	require.Len(t, got, 1)
	assert.Equal(t, wire.TypeError, got[0].Type)

	b.edit(docA, "x", "1")
	b.sync(docA, wire.TypeSync)
	h.settle(b)
	assert.False(t, b.conn.closed)
}

func TestSenderMismatchRejected(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	err := a.send(wire.Message{Type: wire.TypeRequest, SenderID: "someone-else", TargetID: "server", DocumentID: docA, Data: []byte{0x42, 0, 0, 1, 0, 0, 0}})
	require.ErrorIs(t, err, ErrSenderMismatch)
	assert.True(t, a.conn.closed)
}

func TestUnknownDocumentIsUnavailableThenPushedWhenItAppears(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	b := h.connect("b", "sb")
	a.sync(docA, wire.TypeRequest)
	h.drain()
	got := a.conn.take()
	require.Len(t, got, 1, "only doc-unavailable, no empty sync")
	assert.Equal(t, wire.TypeDocUnavailable, got[0].Type)
	assert.Equal(t, docA, got[0].DocumentID)

	// b creates the document; a, who asked for it before, gets it pushed.
	b.edit(docA, "title", "hello")
	b.sync(docA, wire.TypeSync)
	h.settle(a, b)
	assert.Equal(t, map[string]any{"title": "hello"}, value(t, a.docs[docA]))
	assert.Equal(t, b.docs[docA].Heads(), a.docs[docA].Heads())
}

func TestFanOutToEveryPeerOfTheDocument(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	cs := []*client{h.connect("a", "sa"), h.connect("b", "sb"), h.connect("c", "")}
	cs[0].edit(docA, "n", int64(1))
	cs[0].sync(docA, wire.TypeSync)
	h.settle(cs...)
	cs[1].sync(docA, wire.TypeRequest)
	cs[2].sync(docA, wire.TypeRequest)
	h.settle(cs...)
	for _, c := range cs {
		assert.Equal(t, map[string]any{"n": int64(1)}, value(t, c.docs[docA]), c.id)
	}
	// One writer; every other peer receives the change.
	cs[1].edit(docA, "n", int64(2))
	cs[1].sync(docA, wire.TypeSync)
	h.settle(cs...)
	for _, c := range cs {
		assert.Equal(t, map[string]any{"n": int64(2)}, value(t, c.docs[docA]), c.id)
		assert.Equal(t, cs[1].docs[docA].Heads(), c.docs[docA].Heads(), c.id)
	}
}

func TestConcurrentEditsMerge(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	a.edit(docA, "base", "x")
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)
	b.sync(docA, wire.TypeRequest)
	h.settle(a, b)
	a.edit(docA, "fromA", "1")
	b.edit(docA, "fromB", "2")
	a.sync(docA, wire.TypeSync)
	b.sync(docA, wire.TypeSync)
	h.settle(a, b)
	want := map[string]any{"base": "x", "fromA": "1", "fromB": "2"}
	assert.Equal(t, want, value(t, a.docs[docA]))
	assert.Equal(t, want, value(t, b.docs[docA]))
	assert.Equal(t, a.docs[docA].Heads(), b.docs[docA].Heads())
}

// msgHeads returns the heads a sync message announces.
func msgHeads(t *testing.T, data []byte) crdt.Heads {
	d, err := crdt.New("aa")
	require.NoError(t, err)
	heads, err := crdt.NewSyncState(d).Receive(data)
	require.NoError(t, err)
	return heads
}

// countSentHeads counts the heads announced in the sync messages the
// engine sends to c from now on.
func countSentHeads(t *testing.T, c *client) *int {
	var heads int
	c.conn.onSend = func(m wire.Message) {
		if m.Type == wire.TypeSync {
			heads += len(msgHeads(t, m.Data))
		}
	}
	return &heads
}

// The durability rule: no message announcing heads that include a change
// is handed to any connection before the change's write returned.
func TestPersistBeforeSend(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	b.sync(docA, wire.TypeRequest)
	h.settle(a, b)
	*h.log = nil
	var announced []string // "heads" or "apply", in order
	h.st.onApply = func() { announced = append(announced, "apply") }
	for _, c := range []*client{a, b} {
		c.conn.onSend = func(m wire.Message) {
			if m.Type == wire.TypeSync && len(msgHeads(t, m.Data)) > 0 {
				announced = append(announced, "heads")
			}
		}
	}
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)
	require.NotEmpty(t, announced)
	require.Equal(t, "apply", announced[0], "heads announced before the write: %v", announced)
	assert.Contains(t, announced, "heads")

	// What was acknowledged is in the store: a fresh engine on the same
	// store serves it.
	h2 := newHarness(t, mem)
	c := h2.connect("c", "sc")
	c.sync(docA, wire.TypeRequest)
	h2.settle(c)
	assert.Equal(t, map[string]any{"k": "v"}, value(t, c.docs[docA]))
}

func TestStoreFailureSendsNothingAndDisconnects(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	h.st.fail = errors.New("disk full")
	heads := countSentHeads(t, a)
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a)
	assert.Zero(t, *heads, "no heads may be announced after a failed write")
	assert.True(t, a.conn.closed)
	assert.Equal(t, CloseInternalError, a.conn.code)
}

func TestSyncStatePersistedAndResumed(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	a := h.connect("a", "storage-a")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a)
	a.sess.Closed()
	h.drain()
	st, err := mem.Load(context.Background(), store.Key{docA, store.KindSyncState, "storage-a"})
	require.NoError(t, err)
	require.NotEmpty(t, st, "sync state persisted for the client's storage id")
	// An ephemeral peer or one without storage id leaves nothing behind.
	c := h.connect("c", "")
	c.sync(docA, wire.TypeRequest)
	h.settle(c)
	chunks, err := mem.LoadRange(context.Background(), store.Key{docA, store.KindSyncState})
	require.NoError(t, err)
	assert.Len(t, chunks, 1)
}

func TestRequestForMissingDocLeavesNoLitter(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	a := h.connect("a", "sa")
	a.sync(docA, wire.TypeRequest)
	h.settle(a)
	a.sess.Closed()
	h.drain()
	chunks, err := mem.LoadRange(context.Background(), store.Key{docA})
	require.NoError(t, err)
	assert.Empty(t, chunks)
}

func TestSamePeerReconnectReplacesOldSocket(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a1 := h.connect("a", "sa")
	a2 := h.connect("a", "sa")
	assert.True(t, a1.conn.closed)
	assert.False(t, a2.conn.closed)
	a2.edit(docA, "k", "v")
	a2.sync(docA, wire.TypeSync)
	h.settle(a2)
	assert.NotEmpty(t, a2.docs[docA].Heads())
}

func TestEphemeralRelayedUnchangedButTarget(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)
	b.sync(docA, wire.TypeRequest)
	h.settle(a, b)
	require.NoError(t, a.send(wire.Message{Type: wire.TypeEphemeral, SenderID: "a", TargetID: "server", DocumentID: docA, Count: 7, SessionID: "sess1", Data: []byte{0xa0}}))
	h.drain()
	got := b.conn.take()
	require.Len(t, got, 1)
	m := got[0]
	assert.Equal(t, wire.TypeEphemeral, m.Type)
	assert.Equal(t, "a", m.SenderID)
	assert.Equal(t, "b", m.TargetID)
	assert.Equal(t, uint64(7), m.Count)
	assert.Equal(t, "sess1", m.SessionID)
	assert.Equal(t, []byte{0xa0}, m.Data)
	assert.Empty(t, a.conn.take(), "not echoed to the sender")
	// A repeat (same count) is dropped.
	require.NoError(t, a.send(wire.Message{Type: wire.TypeEphemeral, SenderID: "a", TargetID: "server", DocumentID: docA, Count: 7, SessionID: "sess1", Data: []byte{0xa0}}))
	h.drain()
	assert.Empty(t, b.conn.take())
}

func TestEvictionAndReloadKeepSyncing(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	a.edit(docA, "n", int64(1))
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)
	b.sync(docA, wire.TypeRequest)
	h.settle(a, b)
	require.EqualValues(t, 1, h.eng.Stats().DocsLoaded)

	h.now = h.now.Add(time.Hour)
	h.eng.Tick(h.now)
	h.drain()
	require.EqualValues(t, 0, h.eng.Stats().DocsLoaded)
	require.EqualValues(t, 1, h.eng.Stats().Evictions)

	// Both peers still connected: a change from a reaches b after reload.
	a.edit(docA, "n", int64(2))
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)
	assert.Equal(t, map[string]any{"n": int64(2)}, value(t, b.docs[docA]))
}

func TestMaxLoadedDocsCap(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	h.eng.cfg.MaxLoadedDocs = 3
	a := h.connect("a", "sa")
	for i := range 10 {
		id := newDocID(t, uint64(100+i))
		a.edit(id, "i", int64(i))
		a.sync(id, wire.TypeSync)
		h.settle(a)
	}
	assert.LessOrEqual(t, h.eng.Stats().DocsLoaded, int64(3))
	n := 0
	require.NoError(t, mem.Documents(context.Background(), func(string) bool { n++; return true }))
	assert.Equal(t, 10, n)
}

func TestLocalChangeAndRead(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a := h.connect("a", "sa")
	a.sync(docA, wire.TypeRequest)
	h.settle(a)
	done := make(chan error, 1)
	go func() {
		_, err := h.eng.Change(context.Background(), docA, func(tx *crdt.Tx) error { return tx.Set([]any{"server"}, "yes") })
		done <- err
	}()
	// The engine's tasks run only on drain: poll until the change's task is
	// queued, then run it.
	deadline := time.Now().Add(5 * time.Second)
	for h.queued() == 0 {
		require.True(t, time.Now().Before(deadline), "change never queued")
		runtime.Gosched()
	}
	h.settle(a)
	require.NoError(t, <-done)
	assert.Equal(t, map[string]any{"server": "yes"}, value(t, a.docs[docA]))
}

func TestNoUnavailableWhileAPeerHasTheDocument(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync) // announces heads; changes not sent yet
	h.drain()
	aReplies := a.conn.take()
	b.sync(docA, wire.TypeRequest)
	h.drain()
	for _, m := range b.conn.take() {
		assert.NotEqual(t, wire.TypeDocUnavailable, m.Type, "a peer has the document: wait for it")
	}
	// a answers the server; the document arrives and b gets it pushed.
	a.conn.frames = aReplies
	h.settle(a, b)
	assert.Equal(t, map[string]any{"k": "v"}, value(t, b.docs[docA]))
	assert.False(t, b.unav[docA])
}

func TestUnavailableWhenTheOnlyHolderLeaves(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.drain()
	a.conn.take()
	b.sync(docA, wire.TypeRequest)
	h.drain()
	require.False(t, b.unav[docA])
	a.sess.Closed()
	h.drain()
	b.pump()
	assert.True(t, b.unav[docA])
}

func TestEphemeralEchoIsDroppedNotFatal(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	a, b := h.connect("a", "sa"), h.connect("b", "sb")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	h.settle(a, b)
	b.sync(docA, wire.TypeRequest)
	h.settle(a, b)
	// b passes a's ephemeral message on, unchanged, as automerge-repo does.
	require.NoError(t, b.send(wire.Message{Type: wire.TypeEphemeral, SenderID: "a", TargetID: "server", DocumentID: docA, Count: 1, SessionID: "s", Data: []byte{0xa0}}))
	h.drain()
	assert.False(t, b.conn.closed)
	assert.Empty(t, a.conn.take(), "the echo is not forwarded back")
}
