package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// doneCounter counts the calls of a HandleFrameThen done callback, and
// records them in the harness log (so that their order against applies and
// sends can be checked).
type doneCounter struct {
	h     *harness
	name  string
	calls int
}

func (d *doneCounter) done() {
	d.calls++
	d.h.record("done " + d.name)
}

// sendThen sends m on c's session with a done callback.
func (c *client) sendThen(m wire.Message, name string) (*doneCounter, error) {
	f, err := wire.Encode(m)
	require.NoError(c.h.t, err)
	d := &doneCounter{h: c.h, name: name}
	return d, c.sess.HandleFrameThen(f, d.done)
}

// syncMsg is the next sync message c would send for docID.
func (c *client) syncMsg(docID string) wire.Message {
	c.doc(docID)
	msg, ok := c.syncs[docID].Generate()
	require.True(c.h.t, ok, "no sync message due")
	return wire.Message{Type: wire.TypeSync, SenderID: c.id, TargetID: "server", DocumentID: docID, Data: msg}
}

// uploadMsg runs the sync exchange until c's next message for docID
// carries its changes, and returns that message unsent.
func (c *client) uploadMsg(docID string) wire.Message {
	c.edit(docID, "title", "hello")
	c.sync(docID, wire.TypeSync)
	c.h.drain()
	got := c.conn.take()
	require.Len(c.h.t, got, 1)
	require.Equal(c.h.t, wire.TypeSync, got[0].Type)
	_, err := c.syncs[docID].Receive(got[0].Data)
	require.NoError(c.h.t, err)
	return c.syncMsg(docID)
}

// logIndex is the index of the first log entry starting with prefix (-1:
// none).
func (h *harness) logIndex(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, l := range *h.log {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func TestFrameDoneAfterTheDocumentProcessedIt(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	c := h.connect("a", "sa")
	up := c.uploadMsg(docA)
	d, err := c.sendThen(up, "upload")
	require.NoError(t, err)
	assert.Zero(t, d.calls, "the message waits in the document's queue: the engine still holds it")
	require.Equal(t, 1, h.queued())

	h.drain()
	require.Equal(t, 1, d.calls)
	// Done comes after the changes are durable and the reply is queued.
	done := h.logIndex("done upload")
	require.Positive(t, done)
	apply := h.logIndex("apply " + docA + "/snapshot/")
	require.GreaterOrEqual(t, apply, 0, "the upload was stored: %v", *h.log)
	assert.Less(t, apply, done)
	got := c.conn.take()
	require.NotEmpty(t, got)
	assert.Equal(t, wire.TypeSync, got[0].Type)
}

func TestFrameDoneAtOnceWhenTheSessionHandlesIt(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	c := &client{h: h, id: "a", conn: &fakeConn{h: h, name: "a"}}
	c.sess = h.eng.Open(c.conn)

	before, err := c.sendThen(wire.Message{Type: wire.TypeRequest, SenderID: "a", TargetID: "server", DocumentID: docA, Data: []byte{0x42, 0, 0, 1, 0, 0, 0}}, "before join")
	require.ErrorIs(t, err, ErrNotJoined)
	assert.Equal(t, 1, before.calls)

	h2 := newHarness(t, store.NewMemStore())
	c = &client{h: h2, id: "b", conn: &fakeConn{h: h2, name: "b"}}
	c.sess = h2.eng.Open(c.conn)
	join, err := c.sendThen(wire.Message{Type: wire.TypeJoin, SenderID: "b", SupportedProtocolVersions: []string{"1"}}, "join")
	require.NoError(t, err)
	assert.Equal(t, 1, join.calls)

	d := &doneCounter{h: h2}
	require.Error(t, c.sess.HandleFrameThen([]byte{0xf6}, d.done)) // CBOR null
	assert.Equal(t, 1, d.calls, "a malformed frame")

	for _, tc := range []struct {
		name string
		conn func(*harness) *client
		msg  func(*client) wire.Message
		err  error
	}{
		{"duplicate ephemeral", func(h *harness) *client { return h.connect("e", "se") }, func(c *client) wire.Message {
			return wire.Message{Type: wire.TypeEphemeral, SenderID: c.id, TargetID: "server", DocumentID: docA, SessionID: "s", Count: 1, Data: []byte{0xa0}}
		}, nil},
		{"no access", func(h *harness) *client {
			return h.connectAs("n", &Principal{ID: "n", Access: func(string) Access { return AccessNone }})
		},
			func(c *client) wire.Message { return c.syncMsgFor(docA) }, nil},
		{"closed session", func(h *harness) *client { c := h.connect("x", "sx"); c.sess.Closed(); return c },
			func(c *client) wire.Message { return c.syncMsgFor(docA) }, ErrSessionClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, store.NewMemStore())
			c := tc.conn(h)
			m := tc.msg(c)
			if tc.name == "duplicate ephemeral" {
				// The first one is queued; its repeat is dropped by the
				// session.
				first, err := c.sendThen(m, "first")
				require.NoError(t, err)
				assert.Zero(t, first.calls)
				h.drain()
				assert.Equal(t, 1, first.calls)
			}
			d, err := c.sendThen(m, "refused")
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, 1, d.calls)
			assert.Zero(t, h.queued(), "nothing was queued")
			h.drain()
			assert.Equal(t, 1, d.calls, "called exactly once")
		})
	}
}

// syncMsgFor is a sync message for docID from a document with one change.
func (c *client) syncMsgFor(docID string) wire.Message {
	c.edit(docID, "k", "v")
	return c.syncMsg(docID)
}

func TestFrameDoneWhenTheDocumentFails(t *testing.T) {
	t.Run("store error", func(t *testing.T) {
		h := newHarness(t, store.NewMemStore())
		c := h.connect("a", "sa")
		up := c.uploadMsg(docA)
		h.st.fail = errors.New("disk on fire")
		d, err := c.sendThen(up, "upload")
		require.NoError(t, err)
		assert.Zero(t, d.calls)
		h.drain()
		assert.Equal(t, 1, d.calls)
		assert.True(t, c.conn.closed, "the sender is disconnected to resync from what is durable")
	})
	t.Run("rejected message", func(t *testing.T) {
		h := newHarness(t, store.NewMemStore())
		c := h.connect("a", "sa")
		d, err := c.sendThen(wire.Message{Type: wire.TypeSync, SenderID: "a", TargetID: "server", DocumentID: docA, Data: []byte{0x42, 0xff, 0xff}}, "garbage")
		require.NoError(t, err)
		assert.Zero(t, d.calls)
		h.drain()
		assert.Equal(t, 1, d.calls)
		assert.True(t, c.conn.closed)
	})
	t.Run("sender gone before the document ran", func(t *testing.T) {
		h := newHarness(t, store.NewMemStore())
		c := h.connect("a", "sa")
		up := c.uploadMsg(docA)
		d, err := c.sendThen(up, "upload")
		require.NoError(t, err)
		c.sess.Closed()
		assert.Zero(t, d.calls)
		h.drain()
		assert.Equal(t, 1, d.calls)
	})
	t.Run("broken document", func(t *testing.T) {
		mem := store.NewMemStore()
		h := newHarness(t, mem)
		h.eng.cfg.CheckDocument = func([]byte) error { return errors.New("refused") }
		require.NoError(t, mem.Apply(t.Context(), []store.Op{{Key: store.Key{docA, store.KindSnapshot, "x"}, Data: []byte("not a document")}}))
		c := h.connect("a", "sa")
		d, err := c.sendThen(c.syncMsgFor(docA), "sync")
		require.NoError(t, err)
		h.drain()
		assert.Equal(t, 1, d.calls)
		got := c.conn.take()
		require.Len(t, got, 1)
		assert.Equal(t, wire.TypeDocUnavailable, got[0].Type)
	})
}
