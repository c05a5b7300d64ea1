package isolate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

const docID = "25gQkE3hoP2bJikoQWmNSo2vm1CY"

func crasher(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "..", "crdt", "amcheck", "testdata", name))
	require.NoError(t, err)
	return b
}

func newHost(t *testing.T, mut func(*Config)) *Host {
	cfg := Config{Workers: 2}
	if mut != nil {
		mut(&cfg)
	}
	h, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

// clientDoc is a document with one change and the sync message that
// announces it.
func clientDoc(t *testing.T) (*crdt.Doc, *crdt.SyncState) {
	d, err := crdt.New("c1")
	require.NoError(t, err)
	_, err = d.Change(time.Unix(1, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"title"}, "hello") })
	require.NoError(t, err)
	return d, crdt.NewSyncState(d)
}

// syncThrough runs the sync protocol between a client doc and a replica
// until neither has anything to say; it returns every store op.
func syncThrough(t *testing.T, r engine.CoreReplica, cs *crdt.SyncState) []store.Op {
	var ops []store.Op
	for range 20 {
		msg, ok := cs.Generate()
		var in engine.ReplicaInput
		in.Attach = []engine.PeerInit{{Peer: "p1", StorageID: "st1"}}
		if ok {
			in.Receive = []engine.PeerData{{Peer: "p1", Data: msg}}
		}
		out, err := r.Step(in)
		require.NoError(t, err)
		ops = append(ops, out.Saves...)
		replied := false
		for _, m := range out.Messages {
			_, err := cs.Receive(m.Data)
			require.NoError(t, err)
			replied = true
		}
		if !ok && !replied {
			return ops
		}
	}
	t.Fatal("sync did not settle")
	return nil
}

func TestSyncThroughWorker(t *testing.T) {
	h := newHost(t, nil)
	r, err := h.Load(docID, "aa", nil)
	require.NoError(t, err)
	d, cs := clientDoc(t)
	ops := syncThrough(t, r, cs)
	require.NotEmpty(t, ops)

	// The saved chunks load into the same document.
	var chunks []store.Chunk
	for _, op := range ops {
		if !op.Delete {
			chunks = append(chunks, store.Chunk{Key: op.Key, Data: op.Data})
		}
	}
	r2, err := h.Load(docID, "aa", chunks)
	require.NoError(t, err)
	var got map[string]any
	heads, err := r2.Read(func(doc *crdt.Doc) error {
		got, err = doc.Value()
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, d.Heads(), heads)
	assert.Equal(t, map[string]any{"title": "hello"}, got)

	// A local change made through the isolated replica.
	out, err := r2.Step(engine.ReplicaInput{Changes: []engine.LocalChange{
		{At: time.Unix(2, 0), Fn: func(tx *crdt.Tx) error { return tx.Set([]any{"server"}, "yes") }},
		{At: time.Unix(2, 0), Fn: func(tx *crdt.Tx) error { return errors.New("refused") }},
	}})
	require.NoError(t, err)
	require.Len(t, out.ChangeErrors, 2)
	assert.NoError(t, out.ChangeErrors[0])
	assert.Error(t, out.ChangeErrors[1])
	assert.True(t, out.HeadsChanged)
	_, err = r2.Read(func(doc *crdt.Doc) error {
		got, err = doc.Value()
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"title": "hello", "server": "yes"}, got)
}

func TestCrashingSyncMessagesKillOnlyTheWorker(t *testing.T) {
	for _, name := range []string{"min-bloom-div0.bin", "sync-wrapping-loadchanges-oob762.bin"} {
		t.Run(name, func(t *testing.T) {
			h := newHost(t, func(c *Config) { c.Workers = 1 })
			// A bystander document on the same worker.
			other, err := h.Load("other", "aa", nil)
			require.NoError(t, err)
			r, err := h.Load(docID, "aa", nil)
			require.NoError(t, err)
			_, cs := clientDoc(t)
			syncThrough(t, r, cs) // the replica now has a change, as the bloom crasher needs

			_, err = r.Step(engine.ReplicaInput{Receive: []engine.PeerData{{Peer: "p1", Data: crasher(t, name)}}})
			require.ErrorIs(t, err, engine.ErrCoreCrashed)
			assert.EqualValues(t, 1, h.Stats().Crashes)

			// The replicas of the dead worker are lost, not silently wrong.
			_, err = other.Step(engine.ReplicaInput{})
			require.ErrorIs(t, err, engine.ErrReplicaLost)
			_, err = r.SyncStates()
			require.ErrorIs(t, err, engine.ErrReplicaLost)

			// The host carries on with a new worker.
			r2, err := h.Load(docID, "aa", nil)
			require.NoError(t, err)
			_, cs2 := clientDoc(t)
			syncThrough(t, r2, cs2)
			assert.EqualValues(t, 1, h.Stats().Restarts)
		})
	}
}

func TestCrashingDocumentFailsLoadOnly(t *testing.T) {
	h := newHost(t, func(c *Config) { c.Workers = 1 })
	bad := []store.Chunk{{Key: store.Key{docID, store.KindSnapshot, "x"}, Data: crasher(t, "min-load-unknownaction.bin")}}
	_, err := h.Load(docID, "aa", bad)
	require.ErrorIs(t, err, engine.ErrCoreCrashed)
	r, err := h.Load(docID, "aa", nil)
	require.NoError(t, err)
	_, cs := clientDoc(t)
	syncThrough(t, r, cs)
}

func TestGarbageIsAnErrorNotACrash(t *testing.T) {
	h := newHost(t, nil)
	_, err := h.Load(docID, "aa", []store.Chunk{{Key: store.Key{docID, store.KindSnapshot, "x"}, Data: []byte("not automerge")}})
	require.Error(t, err)
	require.NotErrorIs(t, err, engine.ErrCoreCrashed)
	r, err := h.Load(docID, "aa", nil)
	require.NoError(t, err)
	out, err := r.Step(engine.ReplicaInput{
		Attach:  []engine.PeerInit{{Peer: "p"}},
		Receive: []engine.PeerData{{Peer: "p", Data: []byte{0x42, 0xff, 0xff}}},
	})
	require.NoError(t, err)
	require.Len(t, out.Rejected, 1)
	assert.ErrorIs(t, out.Rejected[0].Err, engine.ErrRejected)
	assert.Zero(t, h.Stats().Crashes)
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{Workers: -1})
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{CallTimeout: -time.Second})
	require.ErrorIs(t, err, ErrConfig)
}

func TestSlowCallIsKilledAsACrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a large text document")
	}
	// A small saved document that expands to a long text: loading it takes
	// far longer than the call timeout.
	d, err := crdt.New("aa")
	require.NoError(t, err)
	_, err = d.Change(time.Unix(1, 0), "", func(tx *crdt.Tx) error {
		return tx.Splice([]any{"text"}, 0, 0, strings.Repeat("a", 300_000))
	})
	require.NoError(t, err)
	h := newHost(t, func(c *Config) { c.Workers = 1; c.CallTimeout = 20 * time.Millisecond })
	_, err = h.Load(docID, "bb", []store.Chunk{{Key: store.Key{docID, store.KindSnapshot, "x"}, Data: d.Save()}})
	require.ErrorIs(t, err, engine.ErrCoreCrashed)
	assert.Contains(t, err.Error(), "killed after")
	// The host carries on. The timeout goes back to its default first: a
	// restarted worker's first call may take longer than 20 ms on a busy
	// machine or under -race, and that is not what this test is about.
	h.cfg.CallTimeout = 30 * time.Second
	r, err := h.Load(docID, "bb", nil)
	require.NoError(t, err)
	_, cs := clientDoc(t)
	syncThrough(t, r, cs)
}

func TestRemoteAndPublishedCrossTheWorkerBoundary(t *testing.T) {
	h := newHost(t, nil)
	r, err := h.Load(docID, "aa", nil)
	require.NoError(t, err)
	src, err := crdt.New("c2")
	require.NoError(t, err)
	_, err = src.Change(time.Unix(1, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"remote"}, "r") })
	require.NoError(t, err)
	remote, err := src.ChangesSince(nil)
	require.NoError(t, err)

	out, err := r.Step(engine.ReplicaInput{
		Remote:  [][]byte{remote},
		Publish: true,
		Changes: []engine.LocalChange{{At: time.Unix(2, 0), Fn: func(tx *crdt.Tx) error { return tx.Set([]any{"local"}, "l") }}},
	})
	require.NoError(t, err)
	require.Len(t, out.RemoteErrors, 1)
	assert.NoError(t, out.RemoteErrors[0])
	require.NotEmpty(t, out.Published)

	// Published holds the local change and not the remote one.
	d, err := crdt.New("dd")
	require.NoError(t, err)
	require.NoError(t, d.ApplyChanges(out.Published))
	v, err := d.Value()
	require.NoError(t, err)
	assert.NotContains(t, v, "remote", "changes that came as Remote are not published again")
	require.NoError(t, d.ApplyChanges(remote))
	v, err = d.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"remote": "r", "local": "l"}, v)
	assert.Equal(t, out.Heads, d.Heads())
}
