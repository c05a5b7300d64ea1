package badgerstore

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
)

func TestKeyEncoding(t *testing.T) {
	assert.Equal(t, []byte("\x01doc\x00snapshot\x00h\x00"), encodeKey(store.SnapshotKey("doc", "h")))
	assert.Equal(t, []byte("\x01storage-adapter-id\x00"), encodeKey(store.StorageIDStoreKey()))
	for _, k := range []store.Key{{"a"}, {"a", "b"}, {"\xff", "\x01"}, store.SyncStateKey("d", "s")} {
		got, err := decodeKey(encodeKey(k))
		require.NoError(t, err)
		assert.Equal(t, k, got)
		assert.Equal(t, []byte(k[0]), firstComponent(encodeKey(k)))
	}
	for _, b := range [][]byte{nil, {}, {1}, {1, 0}, []byte("\x01a"), []byte("\x02a\x00"), []byte("\x01a\x00\x00"), []byte("\x01\x00a\x00")} {
		_, err := decodeKey(b)
		assert.ErrorIs(t, err, ErrCorruptKey, "%q", b)
	}
	assert.Nil(t, firstComponent([]byte("\x01\x00")))
	assert.Nil(t, firstComponent([]byte("\x02a\x00")))
}

// FuzzDecodeKey feeds arbitrary bytes, as a corrupt or foreign database
// would, to the key decoder: it must not panic, and what it accepts must
// be a valid key that encodes back to the same bytes.
func FuzzDecodeKey(f *testing.F) {
	for _, k := range []store.Key{
		store.SnapshotKey("3X2b58qhEXT7kemiykp9exF9iCZd", "4475b7e3c0f8a1d2"),
		store.IncrementalKey("doc", "abc"),
		store.SyncStateKey("doc", "69e06126-2d5a-4c1e-9a59-6e1f0a1f2b3c"),
		store.StorageIDStoreKey(),
	} {
		f.Add(encodeKey(k))
	}
	f.Add([]byte("!badger!head"))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeKey(b)
		if err != nil {
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("decoded invalid key %q from %q", []string(k), b)
		}
		if enc := encodeKey(k); !bytes.Equal(enc, b) {
			t.Fatalf("encode(decode(%q)) = %q", b, enc)
		}
		if fc := firstComponent(b); string(fc) != k[0] {
			t.Fatalf("firstComponent(%q) = %q, want %q", b, fc, k[0])
		}
	})
}
