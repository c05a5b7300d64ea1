package engine

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// poison is a well-formed sync message (it passes amcheck: heads none,
// need one hash, no have, no changes) that the crashingCore treats as
// aborting the core, as an input amcheck does not know about would.
var poison = append(append([]byte{0x42, 0x00, 0x01}, bytes.Repeat([]byte{0xee}, 32)...), 0x00, 0x00)

// crashingCore models a worker process: every replica it loaded is lost
// when any input aborts it, as when the process dies.
type crashingCore struct {
	gen     int
	crashes int
}

type crashingReplica struct {
	c   *crashingCore
	gen int
	r   *Replica
}

func (c *crashingCore) Load(id string, actor crdt.ActorID, chunks []store.Chunk) (CoreReplica, error) {
	r, err := LoadReplica(id, actor, chunks)
	if err != nil {
		return nil, err
	}
	return &crashingReplica{c: c, gen: c.gen, r: r}, nil
}

func (r *crashingReplica) Step(in ReplicaInput) (ReplicaOutput, error) {
	if r.gen != r.c.gen {
		return ReplicaOutput{}, ErrReplicaLost
	}
	for _, m := range in.Receive {
		if bytes.Equal(m.Data, poison) {
			r.c.gen++
			r.c.crashes++
			return ReplicaOutput{}, ErrCoreCrashed
		}
	}
	return r.r.Step(in)
}

func (r *crashingReplica) SyncStates() (map[PeerKey][]byte, error) {
	if r.gen != r.c.gen {
		return nil, ErrReplicaLost
	}
	return r.r.SyncStates(), nil
}

func (r *crashingReplica) Read(fn func(*crdt.Doc) error) (crdt.Heads, error) {
	if r.gen != r.c.gen {
		return nil, ErrReplicaLost
	}
	return r.r.doc.Heads(), fn(r.r.doc)
}

func (r *crashingReplica) Close() {}

func TestCoreCrashBlamesOnlyTheCulprit(t *testing.T) {
	mem := store.NewMemStore()
	h := newHarness(t, mem)
	core := &crashingCore{}
	h.eng.core = core
	other := newDocID(t, 7)

	a, b, evil := h.connect("a", "sa"), h.connect("b", "sb"), h.connect("evil", "se")
	a.edit(docA, "k", "v")
	a.sync(docA, wire.TypeSync)
	b.edit(other, "x", "1")
	b.sync(other, wire.TypeSync)
	h.settle(a, b)

	// In one batch: a's edit and evil's poison for the same document.
	a.edit(docA, "k2", "v2")
	a.sync(docA, wire.TypeSync)
	require.NoError(t, evil.send(wire.Message{Type: wire.TypeSync, SenderID: "evil", TargetID: "server", DocumentID: docA, Data: poison}))
	h.settle(a, b)

	assert.GreaterOrEqual(t, core.crashes, 2, "one crash for the batch, one when the culprit is replayed alone")
	assert.True(t, evil.conn.closed, "the sender of the poison is disconnected")
	assert.Equal(t, ClosePolicyViolation, evil.conn.code)
	var sawErr bool
	for _, m := range evil.conn.take() {
		sawErr = sawErr || m.Type == wire.TypeError
	}
	assert.True(t, sawErr, "and told why")
	assert.False(t, a.conn.closed)
	assert.False(t, b.conn.closed)
	assert.Equal(t, map[string]any{"k": "v", "k2": "v2"}, value(t, a.docs[docA]))

	// The other document, lost with the "worker", reloads and keeps syncing.
	b.edit(other, "x", "2")
	b.sync(other, wire.TypeSync)
	h.settle(a, b)
	h2 := newHarness(t, mem)
	c := h2.connect("c", "sc")
	c.sync(other, wire.TypeRequest)
	c.sync(docA, wire.TypeRequest)
	h2.settle(c)
	assert.Equal(t, map[string]any{"x": "2"}, value(t, c.docs[other]))
	assert.Equal(t, map[string]any{"k": "v", "k2": "v2"}, value(t, c.docs[docA]))

	// The culprit's peer id is refused for a while.
	conn := &fakeConn{h: h, name: "evil2"}
	s := h.eng.Open(conn)
	f, _ := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "evil", SupportedProtocolVersions: []string{"1"}})
	require.ErrorIs(t, s.HandleFrame(f), ErrBanned)
	assert.True(t, conn.closed)
}
