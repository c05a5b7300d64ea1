package simulations

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

func TestSyncHeadsReadsTheHeadsOfARealMessage(t *testing.T) {
	d, msg := realSyncMessage(t)
	heads, ok := syncHeads(msg)
	require.True(t, ok)
	assert.Equal(t, []crdt.Hash(d.Heads()), heads)

	heads, ok = syncHeads(crdt.HeadsMessage(d.Heads()))
	require.True(t, ok)
	assert.Equal(t, []crdt.Hash(d.Heads()), heads)

	for _, bad := range [][]byte{nil, {0x42}, {0x43, 0}, {0x42, 1, 0xff}, {0x42, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		_, ok := syncHeads(bad)
		assert.False(t, ok, "%x", bad)
	}
}

func FuzzSyncHeads(f *testing.F) {
	d, msg := realSyncMessage(f)
	f.Add(msg)
	f.Add(crdt.HeadsMessage(d.Heads()))
	f.Add([]byte{0x42, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		heads, ok := syncHeads(data)
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
