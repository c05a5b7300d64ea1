package crdt_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
)

func realSyncMessage(t testing.TB) (*crdt.Doc, []byte) {
	d, err := crdt.New("0a")
	require.NoError(t, err)
	for i := range 3 {
		_, err := d.Change(time.Unix(1700000000, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"k"}, int64(i)) })
		require.NoError(t, err)
	}
	msg, ok := crdt.NewSyncState(d).Generate()
	require.True(t, ok)
	return d, msg
}

func TestSyncMessageHeadsReadsTheHeadsOfARealMessage(t *testing.T) {
	d, msg := realSyncMessage(t)
	heads, ok := crdt.SyncMessageHeads(msg)
	require.True(t, ok)
	assert.Equal(t, d.Heads(), heads)

	heads, ok = crdt.SyncMessageHeads(crdt.HeadsMessage(d.Heads()))
	require.True(t, ok)
	assert.Equal(t, d.Heads(), heads)

	for _, bad := range [][]byte{nil, {0x42}, {0x43, 0}, {0x42, 1, 0xff}, {0x42, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		_, ok := crdt.SyncMessageHeads(bad)
		assert.False(t, ok, "%x", bad)
	}
}

func FuzzSyncMessageHeads(f *testing.F) {
	d, msg := realSyncMessage(f)
	f.Add(msg)
	f.Add(crdt.HeadsMessage(d.Heads()))
	f.Add([]byte{0x42, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		heads, ok := crdt.SyncMessageHeads(data)
		if !ok {
			return
		}
		// The heads are the bytes after the type byte and the count.
		off := 2
		for data[off-1]&0x80 != 0 {
			off++
		}
		require.LessOrEqual(t, off+32*len(heads), len(data))
		for i, h := range heads {
			require.Equal(t, data[off+32*i:off+32*i+32], h[:])
		}
	})
}

func TestSyncMessageNeeds(t *testing.T) {
	d, err := crdt.New("0a")
	require.NoError(t, err)
	_, err = d.Change(time.Unix(1700000000, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"k"}, int64(1)) })
	require.NoError(t, err)
	msg, ok := crdt.NewSyncState(d).Generate()
	require.True(t, ok)
	assert.Zero(t, crdt.SyncMessageNeeds(msg), "a first message needs nothing")

	// heads: one hash; need: two hashes; then anything.
	hash := make([]byte, 32)
	m := append([]byte{0x42, 1}, hash...)
	m = append(m, 2)
	m = append(m, hash...)
	m = append(m, hash...)
	m = append(m, 0, 0)
	assert.Equal(t, 2, crdt.SyncMessageNeeds(m))

	for _, bad := range [][]byte{nil, {0x43}, {0x42}, {0x42, 1}, {0x42, 0, 5}, append([]byte{0x42, 0, 1}, hash[:31]...)} {
		assert.Zero(t, crdt.SyncMessageNeeds(bad), "%x", bad)
	}
}

func FuzzSyncMessageNeeds(f *testing.F) {
	d, err := crdt.New("0a")
	require.NoError(f, err)
	msg, _ := crdt.NewSyncState(d).Generate()
	f.Add(msg)
	f.Add(crdt.HeadsMessage(d.Heads()))
	f.Add([]byte{0x42, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := crdt.SyncMessageNeeds(data)
		if n < 0 || n*32 > len(data) {
			t.Fatalf("%d needs in %d bytes", n, len(data))
		}
	})
}

func TestSyncMessageChangesCountsTheChangesOfRealMessages(t *testing.T) {
	d, msg := realSyncMessage(t)
	// A first message from a fresh state announces heads and carries no
	// changes.
	assert.Equal(t, 0, crdt.SyncMessageChanges(msg))
	assert.Equal(t, 0, crdt.SyncMessageChanges(crdt.HeadsMessage(d.Heads())))

	// A peer that knows nothing asks; the reply carries all 3 changes.
	e, err := crdt.New("0b")
	require.NoError(t, err)
	theirs := crdt.NewSyncState(e)
	ours := crdt.NewSyncState(d)
	_, err = theirs.Receive(msg)
	require.NoError(t, err)
	req, ok := theirs.Generate()
	require.True(t, ok)
	assert.Equal(t, 0, crdt.SyncMessageChanges(req))
	_, err = ours.Receive(req)
	require.NoError(t, err)
	reply, ok := ours.Generate()
	require.True(t, ok)
	assert.Equal(t, 3, crdt.SyncMessageChanges(reply))
	sum, ok := crdt.SummarizeSyncMessage(reply)
	require.True(t, ok)
	assert.Equal(t, crdt.SyncSummary{Heads: d.Heads(), Need: 0, Changes: 3}, sum)
	sum, ok = crdt.SummarizeSyncMessage(req)
	require.True(t, ok)
	assert.Equal(t, crdt.SyncMessageNeeds(req), sum.Need)
	assert.Zero(t, sum.Changes)
	_, ok = crdt.SummarizeSyncMessage([]byte{0x43})
	assert.False(t, ok)

	for _, bad := range [][]byte{nil, {0x42}, {0x42, 0}, {0x42, 0, 0}, {0x42, 0, 0, 1}, {0x42, 0, 0, 1, 0, 5, 1}} {
		assert.Equal(t, -1, crdt.SyncMessageChanges(bad), "%x", bad)
	}
	assert.Equal(t, 0, crdt.SyncMessageChanges([]byte{0x42, 0, 0, 0, 0}))
}

func TestSyncMessageNeedReadsTheNeedList(t *testing.T) {
	d, msg := realSyncMessage(t)
	e, err := crdt.New("0b")
	require.NoError(t, err)
	// e learns d's heads without the changes: its next message needs them.
	theirs := crdt.NewSyncState(e)
	_, err = theirs.Receive(msg)
	require.NoError(t, err)
	req, ok := theirs.Generate()
	require.True(t, ok)
	assert.Equal(t, []crdt.Hash(d.Heads()), crdt.SyncMessageNeed(req))
	assert.Nil(t, crdt.SyncMessageNeed(crdt.HeadsMessage(d.Heads())))
	assert.Nil(t, crdt.SyncMessageNeed([]byte{0x42, 0, 5}))
}

func FuzzSyncMessageNeed(f *testing.F) {
	_, msg := realSyncMessage(f)
	f.Add(msg)
	f.Add([]byte{0x42, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		need := crdt.SyncMessageNeed(data)
		require.Equal(t, len(need), max(0, crdt.SyncMessageNeeds(data)))
	})
}

func FuzzSyncMessageChanges(f *testing.F) {
	d, msg := realSyncMessage(f)
	f.Add(msg)
	f.Add(crdt.HeadsMessage(d.Heads()))
	f.Add([]byte{0x42, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := crdt.SyncMessageChanges(data)
		require.GreaterOrEqual(t, n, -1)
		// Every change takes at least one byte (its length).
		require.LessOrEqual(t, n, len(data))
		if n >= 0 {
			_, ok := crdt.SyncMessageHeads(data)
			require.True(t, ok)
		}
	})
}
