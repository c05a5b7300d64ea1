package store

import (
	"context"
	"errors"
	"strings"
)

// Sentinel errors. Implementations wrap them with %w.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("store: closed")
	// ErrInvalidKey is returned for a key with no components, an empty
	// component, or a component containing a NUL byte.
	ErrInvalidKey = errors.New("store: invalid key")
)

// Key is a hierarchical key, as in automerge-repo's StorageAdapterInterface:
// for example [docID, "snapshot", headsHash], [docID, "incremental", hash],
// [docID, "sync-state", peerStorageID] or ["storage-adapter-id"].
type Key []string

// Key component names used by the automerge-repo storage layout.
const (
	KindSnapshot    = "snapshot"
	KindIncremental = "incremental"
	KindSyncState   = "sync-state"
	// StorageIDKey is the single component of the key that holds this
	// store's storage id (a UUIDv4 string).
	StorageIDKey = "storage-adapter-id"
)

// String joins the components with "/" for logs.
func (k Key) String() string { return strings.Join(k, "/") }

// Validate reports whether k can be stored: at least one component, no
// component empty or containing a NUL byte.
func (k Key) Validate() error {
	if len(k) == 0 {
		return ErrInvalidKey
	}
	for _, c := range k {
		if c == "" || strings.IndexByte(c, 0) >= 0 {
			return ErrInvalidKey
		}
	}
	return nil
}

// HasPrefix reports whether p is a component-wise prefix of k: [doc] is a
// prefix of [doc, "snapshot", h] but not of [doc2, ...].
func (k Key) HasPrefix(p Key) bool {
	if len(p) > len(k) {
		return false
	}
	for i := range p {
		if k[i] != p[i] {
			return false
		}
	}
	return true
}

// Chunk is one stored value with its key.
type Chunk struct {
	Key  Key
	Data []byte
}

// Op is one write in an atomic batch: a put, or a delete when Delete is set.
type Op struct {
	Key    Key
	Data   []byte
	Delete bool
}

// Store is a durable byte key-value store with hierarchical keys.
//
// Apply is atomic and durable when it returns nil: every op of the batch is
// on stable storage (fsynced) and survives a crash of the process or the
// machine. The engine relies on this to send no message whose heads include
// a change before the change is durable.
//
// All methods are safe for concurrent use. Implementations may coalesce
// concurrent Apply calls into one synced write (group commit).
type Store interface {
	// Load returns the value at k, or (nil, nil) when k is absent.
	Load(ctx context.Context, k Key) ([]byte, error)
	// LoadRange returns every chunk whose key has prefix p (component-wise),
	// sorted by key.
	LoadRange(ctx context.Context, p Key) ([]Chunk, error)
	// Apply writes the batch atomically and durably.
	Apply(ctx context.Context, ops []Op) error
	// Documents calls fn with each distinct first key component that has a
	// snapshot or incremental chunk under it, in sorted order, until fn
	// returns false. It is used for inspection, export and tests.
	Documents(ctx context.Context, fn func(docID string) bool) error
	// Close releases the store. Writes that returned nil stay durable.
	Close() error
}
