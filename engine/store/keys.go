package store

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
)

// DocPrefix is the prefix of every key of document docID: its snapshot,
// incremental and sync-state chunks. Deleting LoadRange(DocPrefix(id))
// removes the document, as automerge-repo's removeDoc does.
func DocPrefix(docID string) Key { return Key{docID} }

// SnapshotPrefix is the prefix of docID's snapshot chunks.
func SnapshotPrefix(docID string) Key { return Key{docID, KindSnapshot} }

// IncrementalPrefix is the prefix of docID's incremental chunks.
func IncrementalPrefix(docID string) Key { return Key{docID, KindIncremental} }

// SyncStatePrefix is the prefix of docID's persisted sync states.
func SyncStatePrefix(docID string) Key { return Key{docID, KindSyncState} }

// SnapshotKey is [docID, "snapshot", headsHash]; headsHash is HeadsHash of
// the document's heads when the snapshot was taken.
func SnapshotKey(docID, headsHash string) Key {
	return Key{docID, KindSnapshot, headsHash}
}

// IncrementalKey is [docID, "incremental", hash]; hash is ChunkHash of the
// chunk's bytes.
func IncrementalKey(docID, hash string) Key {
	return Key{docID, KindIncremental, hash}
}

// SyncStateKey is [docID, "sync-state", storageID]: the encoded sync state
// with the peer whose storage id is storageID.
func SyncStateKey(docID, storageID string) Key {
	return Key{docID, KindSyncState, storageID}
}

// StorageIDStoreKey is ["storage-adapter-id"], the key holding this store's
// storage id.
func StorageIDStoreKey() Key { return Key{StorageIDKey} }

// HeadsHash is the hash automerge-repo names snapshots by: the lowercase hex
// SHA-256 of the concatenation of the hex-encoded heads in sorted order
// (keyHash.ts headsHash; Automerge returns heads sorted, and sorting here
// makes the name independent of the caller's order).
func HeadsHash(heads []string) string {
	sorted := slices.Clone(heads)
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(strings.Join(sorted, "")))
	return hex.EncodeToString(sum[:])
}

// ChunkHash is the hash automerge-repo names incremental chunks by: the
// lowercase hex SHA-256 of the chunk's bytes (keyHash.ts keyHash).
func ChunkHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Compare orders keys component-wise: by the first component that differs
// (bytewise string order), and a key before every key it is a proper prefix
// of. It is the order of LoadRange and Documents, and it equals the bytewise
// order of the encoding that ends every component with a NUL byte.
func (k Key) Compare(o Key) int {
	for i := range min(len(k), len(o)) {
		if c := strings.Compare(k[i], o[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(k) < len(o):
		return -1
	case len(k) > len(o):
		return 1
	}
	return 0
}

// Clone returns a copy of k whose slice is not shared with k.
func (k Key) Clone() Key { return slices.Clone(k) }
