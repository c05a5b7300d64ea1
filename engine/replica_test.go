package engine

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
)

// apply writes ops to a chunk map the way a store would.
func apply(chunks map[string]store.Chunk, ops []store.Op) {
	for _, op := range ops {
		if op.Delete {
			delete(chunks, op.Key.String())
		} else {
			chunks[op.Key.String()] = store.Chunk{Key: op.Key, Data: op.Data}
		}
	}
}

func chunkList(chunks map[string]store.Chunk) []store.Chunk {
	out := make([]store.Chunk, 0, len(chunks))
	for _, c := range chunks {
		out = append(out, c)
	}
	return out
}

func kinds(chunks map[string]store.Chunk) (snaps, incs int) {
	for _, c := range chunks {
		switch c.Key[1] {
		case store.KindSnapshot:
			snaps++
		case store.KindIncremental:
			incs++
		}
	}
	return
}

// noise is incompressible text, so that saved sizes are what they seem.
func noise(seed uint64, n int) string {
	r := newRand(seed)
	b := make([]byte, n/2)
	r.Read(b)
	return hex.EncodeToString(b)
}

func TestReplicaSavesIncrementallyAndCompacts(t *testing.T) {
	r, err := LoadReplica(docA, "aa", nil)
	require.NoError(t, err)
	chunks := map[string]store.Chunk{}
	change := func(i int, v string) ReplicaOutput {
		out, err := r.Step(ReplicaInput{Changes: []LocalChange{{At: time.Unix(int64(i), 0), Fn: func(tx *crdt.Tx) error {
			return tx.Set([]any{"k"}, v)
		}}}})
		require.NoError(t, err)
		apply(chunks, out.Saves)
		return out
	}
	// A first, big snapshot (over automerge-repo's 1 KiB compaction floor).
	change(0, noise(1, 4000))
	snaps, incs := kinds(chunks)
	require.Equal(t, 1, snaps)
	require.Equal(t, 0, incs)
	// Small changes append incremental chunks...
	for i := 1; i <= 3; i++ {
		change(i, fmt.Sprintf("small %d", i))
	}
	snaps, incs = kinds(chunks)
	assert.Equal(t, 1, snaps)
	assert.Equal(t, 3, incs)
	// ...and everything reloads to the same heads.
	r2, err := LoadReplica(docA, "bb", chunkList(chunks))
	require.NoError(t, err)
	assert.Equal(t, r.Heads(), r2.Heads())

	// Once the incrementals outweigh the snapshot, the next save compacts
	// into one snapshot and deletes the rest.
	change(4, noise(2, 5000))
	change(5, "z")
	snaps, incs = kinds(chunks)
	assert.Equal(t, 1, snaps)
	assert.Equal(t, 0, incs)
	r3, err := LoadReplica(docA, "cc", chunkList(chunks))
	require.NoError(t, err)
	assert.Equal(t, r.Heads(), r3.Heads())
	for _, c := range chunks {
		if c.Key[1] == store.KindSnapshot {
			assert.Equal(t, r.Heads().Key(), c.Key[2], "snapshot key is the automerge-repo heads hash")
		}
	}
}

func TestReplicaRejectsGarbageWithoutSideEffects(t *testing.T) {
	r, err := LoadReplica(docA, "aa", nil)
	require.NoError(t, err)
	out, err := r.Step(ReplicaInput{
		Attach:  []PeerInit{{Peer: "p"}},
		Receive: []PeerData{{Peer: "p", Data: []byte("garbage")}, {Peer: "ghost", Data: []byte{0x42}}},
	})
	require.NoError(t, err)
	require.Len(t, out.Rejected, 2)
	for _, rj := range out.Rejected {
		assert.ErrorIs(t, rj.Err, ErrRejected)
	}
	assert.Empty(t, out.Saves)
	assert.True(t, out.Empty)
}

// A message lost in one conversation (here: dropped by the test) leaves
// its changes recorded as sent in automerge's sync state, and automerge
// leaves them out of every later reply, even when the peer asks for them
// by hash. The replica restarts the conversation then, and the reply
// carries what was asked (simulation seed 1004).
func TestReplicaAnswersANeedItHadRecordedAsSent(t *testing.T) {
	r, err := LoadReplica(docA, "aa", nil)
	require.NoError(t, err)
	peer, err := crdt.New("bb")
	require.NoError(t, err)
	ps := crdt.NewSyncState(peer)
	change := func(i int) []PeerData {
		out, err := r.Step(ReplicaInput{
			Changes: []LocalChange{{At: time.Unix(int64(i), 0), Fn: func(tx *crdt.Tx) error {
				return tx.Set([]any{fmt.Sprint("k", i)}, int64(i))
			}}},
			Generate: []PeerKey{"p"},
		})
		require.NoError(t, err)
		return out.Messages
	}
	// deliver passes the replica's messages to the peer and the peer's
	// answers back, until both are quiet.
	deliver := func(msgs []PeerData) {
		for range 20 {
			for _, m := range msgs {
				_, err := ps.Receive(m.Data)
				require.NoError(t, err)
			}
			reply, ok := ps.Generate()
			if !ok {
				return
			}
			out, err := r.Step(ReplicaInput{Receive: []PeerData{{Peer: "p", Data: reply}}})
			require.NoError(t, err)
			msgs = out.Messages
		}
		t.Fatal("no quiescence")
	}
	_, err = r.Step(ReplicaInput{Attach: []PeerInit{{Peer: "p"}}})
	require.NoError(t, err)
	deliver(change(1))
	require.Equal(t, r.Heads(), peer.Heads())

	lost := change(2) // carries change 2: lost on the way
	require.Len(t, lost, 1)
	require.Equal(t, 1, crdt.SyncMessageChanges(lost[0].Data))
	next := change(3) // carries change 3 only: 2 counts as sent
	require.Len(t, next, 1)
	deliver(next)
	assert.Equal(t, r.Heads(), peer.Heads(), "the peer got change 2 after asking for it")
}
