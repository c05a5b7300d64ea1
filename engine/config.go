package engine

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/crdt/amcheck"
	"github.com/amsync/amsync/engine/store"
)

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("engine: invalid config")

// Config configures an Engine. The zero value of every field but Store is
// replaced by its default in validate.
type Config struct {
	// Store holds documents and sync states. Required.
	Store store.Store
	// PeerID is the engine's peer id on the wire. Default
	// "storage-server-<hostname>" is set by the relay; the engine default is
	// "amsync-" followed by the first 8 characters of the storage id.
	PeerID string
	// StorageID is advertised in peerMetadata. Default: read from the
	// store, or created and persisted there before it is first advertised.
	StorageID string
	// Logger receives structured logs. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now. Simulations inject a virtual one.
	Now func() time.Time
	// Rand is the source of actor ids and storage ids. Default crypto/rand.
	Rand io.Reader
	// Go runs a document task. Default: on a goroutine of a small pool of
	// warm ones (warm.go), or a new goroutine when none is free.
	// Simulations queue the task and run it at a step of their choosing.
	Go func(f func())
	// MaxLoadedDocs caps the documents held in memory; the least recently
	// used idle one is evicted beyond it. Default 10000.
	MaxLoadedDocs int
	// MaxLoadedBytes caps the stored size of the documents held in memory
	// (a proxy for their memory use). Default 512 MiB.
	MaxLoadedBytes int64
	// IdleTimeout evicts a loaded document this long after its last event
	// (checked on Tick). Default 2 minutes.
	IdleTimeout time.Duration
	// Core runs the automerge side of documents. Default InProcess, which
	// trusts its peers: see package isolate for crash isolation.
	Core Core
	// QuarantineFor is how long a document whose stored form aborts the
	// core is refused before another load is tried. Default 10 minutes.
	QuarantineFor time.Duration
	// BanFor is how long a peer id whose message aborted the core is
	// refused at join. Default 1 minute.
	BanFor time.Duration
	// MaxDocsPerSession caps the documents one connection takes part in;
	// beyond it the peer gets an error and doc-unavailable. Default 100000.
	MaxDocsPerSession int
	// NoSyncValidation skips the Go parse of sync messages (amcheck)
	// before the core. Only for measuring, or for testing crash isolation
	// on its own: without it, isolation is the only defence.
	NoSyncValidation bool
	// SyncLimits bound what one sync message may carry (see
	// crdt/amcheck); every sync message is parsed against them before it
	// reaches the automerge core. Zero: amcheck.DefaultLimits().
	SyncLimits amcheck.Limits
	// TrackPending persists which documents hold local changes that no
	// dialled remote has acknowledged (client role: the Go peer), so that
	// Pending survives restarts.
	TrackPending bool
	// OnChange, when set, is called on the document's task after the
	// document's heads changed and the change is durable. local tells a
	// change made through the embedding API from one a peer sent. It must
	// not block for long: the document waits for it.
	OnChange func(docID string, heads crdt.Heads, local bool)
	// CheckSync, when set, vets every sync message before it reaches the
	// automerge core; an error rejects the message (and closes the peer).
	CheckSync func(data []byte) error
	// CheckDocument, when set, vets stored chunks before they are loaded.
	CheckDocument func(data []byte) error
	// Replicator, when set, receives the changes peers and the embedding
	// API make, before they are written and acknowledged (see Replicator);
	// ApplyRemote takes what it delivers. Package engine/cluster is one.
	Replicator Replicator
}

func (c *Config) validate() error {
	if c.Store == nil {
		return fmt.Errorf("%w: Store is required", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.MaxLoadedDocs == 0 {
		c.MaxLoadedDocs = 10000
	}
	if c.MaxLoadedDocs < 1 {
		return fmt.Errorf("%w: MaxLoadedDocs %d < 1", ErrConfig, c.MaxLoadedDocs)
	}
	if c.MaxLoadedBytes == 0 {
		c.MaxLoadedBytes = 512 << 20
	}
	if c.MaxLoadedBytes < 0 {
		return fmt.Errorf("%w: MaxLoadedBytes %d < 0", ErrConfig, c.MaxLoadedBytes)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.MaxDocsPerSession == 0 {
		c.MaxDocsPerSession = 100000
	}
	if c.MaxDocsPerSession < 0 {
		return fmt.Errorf("%w: MaxDocsPerSession %d < 0", ErrConfig, c.MaxDocsPerSession)
	}
	if c.SyncLimits == (amcheck.Limits{}) {
		c.SyncLimits = amcheck.DefaultLimits()
	}
	if c.Core == nil {
		c.Core = InProcess{}
	}
	if c.QuarantineFor == 0 {
		c.QuarantineFor = 10 * time.Minute
	}
	if c.BanFor == 0 {
		c.BanFor = time.Minute
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("%w: IdleTimeout %v < 0", ErrConfig, c.IdleTimeout)
	}
	return nil
}
