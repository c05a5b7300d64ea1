package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
)

func TestKeyConstructors(t *testing.T) {
	assert.Equal(t, store.Key{"d", "snapshot", "h"}, store.SnapshotKey("d", "h"))
	assert.Equal(t, store.Key{"d", "incremental", "h"}, store.IncrementalKey("d", "h"))
	assert.Equal(t, store.Key{"d", "sync-state", "s"}, store.SyncStateKey("d", "s"))
	assert.Equal(t, store.Key{"storage-adapter-id"}, store.StorageIDStoreKey())
	assert.True(t, store.SnapshotKey("d", "h").HasPrefix(store.DocPrefix("d")))
	assert.True(t, store.SnapshotKey("d", "h").HasPrefix(store.SnapshotPrefix("d")))
	assert.True(t, store.IncrementalKey("d", "h").HasPrefix(store.IncrementalPrefix("d")))
	assert.True(t, store.SyncStateKey("d", "h").HasPrefix(store.SyncStatePrefix("d")))
	assert.False(t, store.SnapshotKey("d2", "h").HasPrefix(store.DocPrefix("d")))
}

func TestHashes(t *testing.T) {
	// Expected values computed with sha256sum over the concatenation.
	assert.Equal(t, "e5c1edb50ff8b4fcc3ead3a845ffbe1ad51c9dae5d44335a5c333b57ac8df062",
		store.HeadsHash([]string{"bbbb", "aaaa"}))
	assert.Equal(t, store.HeadsHash([]string{"aaaa", "bbbb"}), store.HeadsHash([]string{"bbbb", "aaaa"}))
	assert.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", store.HeadsHash(nil))
	assert.Equal(t, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		store.ChunkHash([]byte("hello")))
	heads := []string{"bbbb", "aaaa"}
	store.HeadsHash(heads)
	assert.Equal(t, []string{"bbbb", "aaaa"}, heads, "HeadsHash must not reorder its argument")
}

func TestKeyCompare(t *testing.T) {
	ordered := []store.Key{
		{"a"}, {"a", "b"}, {"a", "b", "c"}, {"a", "bc"}, {"a", "\xff"}, {"a\x01"}, {"ab"}, {"b"},
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			assert.Equal(t, want, ordered[i].Compare(ordered[j]), "%q vs %q", []string(ordered[i]), []string(ordered[j]))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	shuffled := slices.Clone(ordered)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	slices.SortFunc(shuffled, store.Key.Compare)
	assert.Equal(t, ordered, shuffled)
}

func TestNewUUIDv4(t *testing.T) {
	id, err := store.NewUUIDv4(bytes.NewReader(bytes.Repeat([]byte{0xff}, 16)))
	require.NoError(t, err)
	assert.Equal(t, "ffffffff-ffff-4fff-bfff-ffffffffffff", id)
	id, err = store.NewUUIDv4(bytes.NewReader(make([]byte, 16)))
	require.NoError(t, err)
	assert.Equal(t, "00000000-0000-4000-8000-000000000000", id)
	_, err = store.NewUUIDv4(bytes.NewReader(make([]byte, 15)))
	assert.Error(t, err)
}

type failingStore struct {
	*store.MemStore
	applyErr error
}

func (f failingStore) Apply(ctx context.Context, ops []store.Op) error {
	if f.applyErr != nil {
		return f.applyErr
	}
	return f.MemStore.Apply(ctx, ops)
}

func TestEnsureStorageID(t *testing.T) {
	ctx := context.Background()

	t.Run("creates and persists", func(t *testing.T) {
		m := store.NewMemStore()
		id, err := store.EnsureStorageID(ctx, m, bytes.NewReader(make([]byte, 16)))
		require.NoError(t, err)
		assert.Equal(t, "00000000-0000-4000-8000-000000000000", id)
		assert.Equal(t, uint64(1), m.Stats().Batches)
		again, err := store.EnsureStorageID(ctx, m, nil)
		require.NoError(t, err)
		assert.Equal(t, id, again)
		assert.Equal(t, uint64(1), m.Stats().Batches, "no second write")
	})
	t.Run("keeps an existing id", func(t *testing.T) {
		m := store.NewMemStore()
		require.NoError(t, m.Apply(ctx, []store.Op{{Key: store.StorageIDStoreKey(), Data: []byte("from-nodefs")}}))
		id, err := store.EnsureStorageID(ctx, m, nil)
		require.NoError(t, err)
		assert.Equal(t, "from-nodefs", id)
	})
	t.Run("rejects a corrupt id", func(t *testing.T) {
		m := store.NewMemStore()
		require.NoError(t, m.Apply(ctx, []store.Op{{Key: store.StorageIDStoreKey(), Data: []byte{0xff, 0xfe}}}))
		_, err := store.EnsureStorageID(ctx, m, nil)
		assert.ErrorIs(t, err, store.ErrBadStorageID)
		require.NoError(t, m.Apply(ctx, []store.Op{{Key: store.StorageIDStoreKey(), Data: []byte{}}}))
		_, err = store.EnsureStorageID(ctx, m, nil)
		assert.ErrorIs(t, err, store.ErrBadStorageID)
	})
	t.Run("returns no id that is not persisted", func(t *testing.T) {
		boom := errors.New("disk full")
		f := failingStore{MemStore: store.NewMemStore(), applyErr: boom}
		id, err := store.EnsureStorageID(ctx, f, nil)
		assert.ErrorIs(t, err, boom)
		assert.Empty(t, id)
	})
	t.Run("closed store", func(t *testing.T) {
		m := store.NewMemStore()
		require.NoError(t, m.Close())
		_, err := store.EnsureStorageID(ctx, m, nil)
		assert.ErrorIs(t, err, store.ErrClosed)
	})
}

func ExampleEnsureStorageID() {
	ctx := context.Background()
	s := store.NewMemStore()
	// A fixed source of randomness makes the example reproducible; servers
	// pass nil to use crypto/rand.
	id, err := store.EnsureStorageID(ctx, s, bytes.NewReader(bytes.Repeat([]byte{0xab}, 16)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(id)
	again, _ := store.EnsureStorageID(ctx, s, nil)
	fmt.Println(again == id)
	// Output:
	// abababab-abab-4bab-abab-abababababab
	// true
}
