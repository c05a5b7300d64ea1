package badgerstore

import (
	"errors"
	"fmt"
	"log/slog"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrInvalidConfig is returned by Open for a Config that fails validation.
var ErrInvalidConfig = errors.New("badgerstore: invalid config")

// Defaults for zero Config fields. They size Badger for a server holding
// about 100,000 small documents in a few hundred MB, well below Badger's
// own defaults (64 MiB memtables x 5, 256 MiB block cache, unbounded index
// memory): at most about 4 memtables of ~20 MiB (with arena overhead), the
// block cache and the index cache, so roughly 130 MiB of Badger memory.
const (
	DefaultMemTableSize     = 16 << 20  // Badger: 64 MiB
	DefaultNumMemtables     = 3         // Badger: 5
	DefaultBlockCacheSize   = 32 << 20  // Badger: 256 MiB
	DefaultIndexCacheSize   = 16 << 20  // Badger: 0, i.e. all indexes and blooms in memory
	DefaultValueThreshold   = 64 << 10  // Badger: 1 MiB
	DefaultValueLogFileSize = 128 << 20 // Badger: 1 GiB
	DefaultNumCompactors    = 2         // Badger: 4; the relay runs on small machines
	DefaultMaxCoalesce      = 1024
	DefaultQueueSize        = 1024
	DefaultGCDiscardRatio   = 0.5
)

// Config configures Open. Zero fields take the defaults above.
type Config struct {
	// Dir is the directory of the database; it is created if missing.
	// Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory and writes nothing to disk; for
	// tests and simulations only, as nothing survives Close. Dir must be
	// empty. Badger then limits values to below ValueThreshold (1 MiB).
	InMemory bool
	// Logger receives the store's and Badger's logs (Badger's info lines at
	// debug level). Nil means slog.Default().
	Logger *slog.Logger

	// MemTableSize is the size of one Badger memtable. It also bounds the
	// size of one atomic write: about 15% of it for the ops whose values
	// are below ValueThreshold (in memory, for all ops). A batch larger
	// than that fails with ErrBatchTooLarge.
	MemTableSize int64
	// NumMemtables is how many memtables may be held before writes stall.
	NumMemtables int
	// BlockCacheSize is the size of the cache of decompressed table blocks.
	BlockCacheSize int64
	// IndexCacheSize bounds the memory of table indexes and bloom filters.
	IndexCacheSize int64
	// ValueThreshold: values of at least this many bytes are stored in the
	// value log (reclaimed by RunGC), smaller ones in the LSM tree. It must
	// be below 15% of MemTableSize and at most 1 MiB. When InMemory values
	// must be smaller than it, and it defaults to 1 MiB.
	ValueThreshold int64
	// ValueLogFileSize is the size of one value log file, the unit RunGC
	// rewrites. It is also the largest value the store accepts on disk.
	ValueLogFileSize int64
	// NumCompactors is the number of compaction goroutines: 0 for the
	// default, otherwise at least 2 (a Badger requirement).
	NumCompactors int

	// MaxCoalesce is the most Apply calls committed in one transaction.
	MaxCoalesce int
	// QueueSize is how many Apply calls may wait for the committer before
	// Apply blocks.
	QueueSize int
	// GCDiscardRatio is the fraction of a value log file that must be
	// garbage for RunGC to rewrite it, in (0, 1).
	GCDiscardRatio float64
}

// validate checks c and fills in defaults.
func (c *Config) validate() error {
	switch {
	case c.InMemory && c.Dir != "":
		return fmt.Errorf("%w: Dir must be empty when InMemory", ErrInvalidConfig)
	case !c.InMemory && c.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	case c.MemTableSize < 0, c.NumMemtables < 0, c.BlockCacheSize < 0, c.IndexCacheSize < 0,
		c.ValueThreshold < 0, c.ValueLogFileSize < 0, c.NumCompactors < 0, c.MaxCoalesce < 0,
		c.QueueSize < 0, c.GCDiscardRatio < 0:
		return fmt.Errorf("%w: negative size or count", ErrInvalidConfig)
	case c.NumCompactors == 1:
		return fmt.Errorf("%w: NumCompactors must be 0 or at least 2", ErrInvalidConfig)
	case c.GCDiscardRatio >= 1:
		return fmt.Errorf("%w: GCDiscardRatio must be below 1", ErrInvalidConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = DefaultMemTableSize
	}
	if c.NumMemtables == 0 {
		c.NumMemtables = DefaultNumMemtables
	}
	if c.BlockCacheSize == 0 {
		c.BlockCacheSize = DefaultBlockCacheSize
	}
	if c.IndexCacheSize == 0 {
		c.IndexCacheSize = DefaultIndexCacheSize
	}
	if c.ValueThreshold == 0 {
		c.ValueThreshold = DefaultValueThreshold
		if c.InMemory {
			c.ValueThreshold = 1 << 20
		}
	}
	if c.ValueLogFileSize == 0 {
		c.ValueLogFileSize = DefaultValueLogFileSize
	}
	if c.NumCompactors == 0 {
		c.NumCompactors = DefaultNumCompactors
	}
	if c.MaxCoalesce == 0 {
		c.MaxCoalesce = DefaultMaxCoalesce
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.GCDiscardRatio == 0 {
		c.GCDiscardRatio = DefaultGCDiscardRatio
	}
	// Badger's own limits (db.go checkAndSetOptions).
	if maxBatch := c.MemTableSize * 15 / 100; c.ValueThreshold >= maxBatch {
		return fmt.Errorf("%w: ValueThreshold %d must be below 15%% of MemTableSize (%d)",
			ErrInvalidConfig, c.ValueThreshold, maxBatch)
	}
	if c.ValueThreshold > 1<<20 {
		return fmt.Errorf("%w: ValueThreshold %d above Badger's 1 MiB limit", ErrInvalidConfig, c.ValueThreshold)
	}
	if c.ValueLogFileSize < 1<<20 || c.ValueLogFileSize >= 2<<30 {
		return fmt.Errorf("%w: ValueLogFileSize must be in [1 MiB, 2 GiB)", ErrInvalidConfig)
	}
	return nil
}

// badgerOptions translates a validated Config. SyncWrites is always on:
// it is what makes Apply durable when it returns.
func (c *Config) badgerOptions() badger.Options {
	opt := badger.DefaultOptions(c.Dir).
		WithInMemory(c.InMemory).
		WithSyncWrites(!c.InMemory).
		WithLogger(slogAdapter{l: c.Logger.With("component", "badger")}).
		WithMemTableSize(c.MemTableSize).
		WithNumMemtables(c.NumMemtables).
		WithBlockCacheSize(c.BlockCacheSize).
		WithIndexCacheSize(c.IndexCacheSize).
		WithValueThreshold(c.ValueThreshold).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithNumCompactors(c.NumCompactors).
		WithCompression(options.Snappy).
		// Writes are blind puts and deletes from a single committer: there
		// is nothing to conflict with, and tracking conflicts costs memory.
		WithDetectConflicts(false).
		// Size walks the directory itself; Badger's expvar metrics are
		// process-global and only refreshed once a minute.
		WithMetricsEnabled(false)
	return opt
}

// maxValueBytes is the largest value Badger accepts with this config. In
// memory a value must stay below the threshold: Badger has no value log
// there, and a value at the threshold crashes its write goroutine.
func (c *Config) maxValueBytes() int64 {
	if c.InMemory {
		return c.ValueThreshold - 1
	}
	return c.ValueLogFileSize
}
