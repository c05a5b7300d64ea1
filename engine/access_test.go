package engine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

func (h *harness) connectAs(id string, p *Principal) *client {
	c := &client{h: h, id: id, docs: map[string]*crdt.Doc{}, syncs: map[string]*crdt.SyncState{}, unav: map[string]bool{}}
	c.conn = &fakeConn{h: h, name: id}
	c.sess = h.eng.OpenAs(c.conn, p)
	c.send(wire.Message{Type: wire.TypeJoin, SenderID: id, PeerMetadata: &wire.PeerMetadata{StorageID: "st-" + id}, SupportedProtocolVersions: []string{"1"}})
	got := c.conn.take()
	require.Len(h.t, got, 1)
	return c
}

func only(doc string, a Access) *Principal {
	return &Principal{ID: "p-" + doc, Access: func(d string) Access {
		if d == doc {
			return a
		}
		return AccessNone
	}}
}

func TestNoAccessLooksLikeAMissingDocument(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	owner := h.connect("owner", "so")
	owner.edit(docA, "secret", "x")
	owner.sync(docA, wire.TypeSync)
	h.settle(owner)

	other := newDocID(t, 5)
	snoop := h.connectAs("snoop", only(other, AccessReadWrite))
	snoop.sync(docA, wire.TypeRequest)
	h.settle(snoop)
	assert.True(t, snoop.unav[docA], "an existing document the peer may not see is unavailable")
	snoop.sync(newDocID(t, 6), wire.TypeRequest)
	h.settle(snoop)
	// The same answer for a document that does not exist at all.
	assert.True(t, snoop.unav[newDocID(t, 6)])
	assert.Empty(t, snoop.docs[docA].Heads(), "nothing of the document leaked")
}

func TestReadOnlyPeerReadsButCannotWrite(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	owner := h.connect("owner", "so")
	owner.edit(docA, "k", "v")
	owner.sync(docA, wire.TypeSync)
	h.settle(owner)

	reader := h.connectAs("reader", only(docA, AccessRead))
	reader.sync(docA, wire.TypeRequest)
	h.settle(owner, reader)
	assert.Equal(t, map[string]any{"k": "v"}, value(t, reader.docs[docA]))

	// Updates reach the reader.
	owner.edit(docA, "k", "v2")
	owner.sync(docA, wire.TypeSync)
	h.settle(owner, reader)
	assert.Equal(t, map[string]any{"k": "v2"}, value(t, reader.docs[docA]))

	// The reader's change is refused: an error, nothing stored or forwarded.
	var errs int
	reader.conn.onSend = func(m wire.Message) {
		if m.Type == wire.TypeError {
			errs++
		}
	}
	reader.edit(docA, "evil", "yes")
	reader.sync(docA, wire.TypeSync)
	h.settle(owner, reader)
	assert.Positive(t, errs)
	assert.False(t, reader.conn.closed, "the reader stays connected and keeps reading")
	assert.Equal(t, map[string]any{"k": "v2"}, value(t, owner.docs[docA]))
	fresh := h.connect("fresh", "sf")
	fresh.sync(docA, wire.TypeRequest)
	h.settle(fresh)
	assert.Equal(t, map[string]any{"k": "v2"}, value(t, fresh.docs[docA]))
	assert.Positive(t, h.eng.Stats().Refused)
}

func TestMaxDocsPerSession(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	h.eng.cfg.MaxDocsPerSession = 2
	c := h.connect("c", "sc")
	ids := []string{newDocID(t, 1), newDocID(t, 2), newDocID(t, 3)}
	for _, id := range ids {
		c.edit(id, "x", "1")
		c.sync(id, wire.TypeSync)
	}
	var sawErr bool
	c.conn.onSend = func(m wire.Message) { sawErr = sawErr || m.Type == wire.TypeError }
	h.settle(c)
	n := 0
	require.NoError(t, h.st.Documents(t.Context(), func(string) bool { n++; return true }))
	assert.Equal(t, 2, n)
	assert.True(t, c.unav[ids[2]])
	assert.False(t, c.conn.closed)
}

func TestPeerIDOfAnotherPrincipalIsRefused(t *testing.T) {
	h := newHarness(t, store.NewMemStore())
	victim := h.connectAs("victim", &Principal{ID: "alice"})
	conn := &fakeConn{h: h, name: "mallory"}
	s := h.eng.OpenAs(conn, &Principal{ID: "mallory"})
	f, _ := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "victim", SupportedProtocolVersions: []string{"1"}})
	require.ErrorIs(t, s.HandleFrame(f), ErrPeerIDTaken)
	assert.True(t, conn.closed)
	assert.False(t, victim.conn.closed, "the owner keeps its connection")
	// The same principal may reconnect and replace its old socket.
	again := h.connectAs("victim", &Principal{ID: "alice"})
	assert.True(t, victim.conn.closed)
	assert.False(t, again.conn.closed)
}
