package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/storetest"
)

// The suite's reopen test uses Clone as the "disk" that outlives the
// process.
func TestMemStoreConformance(t *testing.T) {
	storetest.RunOptions(t, func(t *testing.T) store.Store { return store.NewMemStore() }, storetest.Options{
		Reopen: func(t *testing.T, closed store.Store) store.Store {
			return closed.(*store.MemStore).Clone()
		},
	})
}

func TestMemStoreStats(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemStore()
	assert.Equal(t, store.MemStats{}, m.Stats())

	require.NoError(t, m.Apply(ctx, []store.Op{
		{Key: store.SnapshotKey("d", "h"), Data: []byte("s")},
		{Key: store.IncrementalKey("d", "i"), Data: []byte("i")},
	}))
	require.NoError(t, m.Apply(ctx, []store.Op{{Key: store.IncrementalKey("d", "i"), Delete: true}}))
	require.ErrorIs(t, m.Apply(ctx, []store.Op{{Key: store.Key{""}}}), store.ErrInvalidKey)
	_, err := m.Load(ctx, store.SnapshotKey("d", "h"))
	require.NoError(t, err)
	_, err = m.LoadRange(ctx, store.DocPrefix("d"))
	require.NoError(t, err)

	assert.Equal(t, store.MemStats{Batches: 2, Ops: 3, Puts: 2, Deletes: 1, Loads: 2}, m.Stats())
	assert.Equal(t, 1, m.Len())
}

func TestMemStoreCloneSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemStore()
	require.NoError(t, m.Apply(ctx, []store.Op{
		{Key: store.SnapshotKey("d", "h"), Data: []byte("acked")},
		{Key: store.SyncStateKey("d", "p"), Data: []byte("ss")},
	}))
	before := m.Snapshot()
	// The "process" dies: the store is closed and never used again.
	require.NoError(t, m.Close())

	disk := m.Clone()
	assert.Equal(t, before, disk.Snapshot())
	assert.Equal(t, before, m.Snapshot(), "Snapshot works on a closed store")
	assert.Equal(t, store.MemStats{}, disk.Stats(), "a clone starts with zero counters")

	// The clone is independent of the original.
	require.NoError(t, disk.Apply(ctx, []store.Op{{Key: store.SnapshotKey("d", "h"), Delete: true}}))
	assert.Equal(t, before, m.Snapshot())
	assert.Len(t, disk.Snapshot(), 1)

	// Snapshot returns copies.
	snap := disk.Snapshot()
	snap[0].Data[0] = 'X'
	assert.Equal(t, []byte("ss"), disk.Snapshot()[0].Data)
}

func TestMemStoreDeterministicOrder(t *testing.T) {
	ctx := context.Background()
	build := func() []store.Chunk {
		m := store.NewMemStore()
		for _, d := range []string{"z", "a", "m", "b", "a2"} {
			require.NoError(t, m.Apply(ctx, []store.Op{{Key: store.SnapshotKey(d, "h"), Data: []byte(d)}}))
		}
		return m.Snapshot()
	}
	first := build()
	for range 5 {
		assert.Equal(t, first, build())
	}
	var ids []string
	for _, c := range first {
		ids = append(ids, c.Key[0])
	}
	assert.Equal(t, []string{"a", "a2", "b", "m", "z"}, ids)
}

func ExampleMemStore() {
	ctx := context.Background()
	s := store.NewMemStore()
	_ = s.Apply(ctx, []store.Op{
		{Key: store.SnapshotKey("doc1", store.HeadsHash([]string{"aaaa"})), Data: []byte{0x85, 0x6f}},
		{Key: store.SyncStateKey("doc1", "peer-storage-id"), Data: []byte{0x43, 0x00}},
	})
	chunks, _ := s.LoadRange(ctx, store.DocPrefix("doc1"))
	for _, c := range chunks {
		fmt.Println(c.Key[1], len(c.Data))
	}
	fmt.Println(s.Stats().Batches)
	// Output:
	// snapshot 2
	// sync-state 2
	// 1
}
