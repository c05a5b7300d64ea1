package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/amsync/amsync/engine/store"
)

// Sentinel errors of Apply.
var (
	// ErrBatchTooLarge is returned for a batch that does not fit in one
	// Badger transaction (see Config.MemTableSize).
	ErrBatchTooLarge = errors.New("badgerstore: batch too large for one atomic write")
	// ErrValueTooLarge is returned for a value above Config.ValueLogFileSize
	// (at or above Config.ValueThreshold when InMemory).
	ErrValueTooLarge = errors.New("badgerstore: value too large")
	// ErrFailed is returned by every Apply after a write failed. A failed
	// write (or fsync) leaves the state of the files unknown, so the store
	// stops taking writes rather than acknowledge later ones; reads go on.
	// Reopen the store to recover from the write-ahead log.
	ErrFailed = errors.New("badgerstore: an earlier write failed; store is read-only")
)

// Store is a store.Store on Badger. Create it with Open.
type Store struct {
	cfg Config
	db  *badger.DB
	log *slog.Logger

	gate          gate
	reqs          chan *request
	committerDone chan struct{}
	failed        atomic.Pointer[error]

	applies, ops, commits, failures atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// Stats counts the writes of a Store since Open.
type Stats struct {
	Applies  uint64 // non-empty Apply calls that were committed
	Ops      uint64 // ops in those calls
	Commits  uint64 // Badger transactions committed: synced writes
	Failures uint64 // Apply calls that got an error from the committer
}

// Open opens (creating if needed) the database described by cfg.
func Open(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	db, err := badger.Open(cfg.badgerOptions())
	if err != nil {
		return nil, fmt.Errorf("badgerstore: open %q: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:           cfg,
		db:            db,
		log:           cfg.Logger,
		reqs:          make(chan *request, cfg.QueueSize),
		committerDone: make(chan struct{}),
	}
	s.gate.init()
	go s.commitLoop()
	return s, nil
}

// Dir returns the directory of the database ("" when in memory).
func (s *Store) Dir() string { return s.cfg.Dir }

// Stats returns the write counters.
func (s *Store) Stats() Stats {
	return Stats{
		Applies:  s.applies.Load(),
		Ops:      s.ops.Load(),
		Commits:  s.commits.Load(),
		Failures: s.failures.Load(),
	}
}

// Load implements store.Store.
func (s *Store) Load(ctx context.Context, k store.Key) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %q", err, []string(k))
	}
	if !s.gate.enter() {
		return nil, store.ErrClosed
	}
	defer s.gate.leave()
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(encodeKey(k))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		if err == nil && out == nil {
			out = []byte{}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: load %s: %w", k, err)
	}
	return out, nil
}

// LoadRange implements store.Store.
func (s *Store) LoadRange(ctx context.Context, p store.Key) ([]store.Chunk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %q", err, []string(p))
	}
	if !s.gate.enter() {
		return nil, store.ErrClosed
	}
	defer s.gate.leave()
	prefix := encodeKey(p)
	var out []store.Chunk
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if len(out)%256 == 255 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			key, err := decodeKey(item.Key())
			if err != nil {
				return err
			}
			val, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if val == nil {
				val = []byte{}
			}
			out = append(out, store.Chunk{Key: key, Data: val})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: load range %s: %w", p, err)
	}
	return out, nil
}

// Documents implements store.Store. It seeks from document to document, so
// it reads a few index entries per document, not every chunk. fn may call
// the store's other methods, but not Close.
func (s *Store) Documents(ctx context.Context, fn func(docID string) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.gate.enter() {
		return store.ErrClosed
	}
	defer s.gate.leave()
	ns := []byte{nsStore}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: ns})
		defer it.Close()
		it.Seek(ns)
		for it.ValidForPrefix(ns) {
			if err := ctx.Err(); err != nil {
				return err
			}
			first := firstComponent(it.Item().Key())
			if first == nil {
				return fmt.Errorf("%w: %q", ErrCorruptKey, it.Item().KeyCopy(nil))
			}
			doc := string(first)
			docPrefix := encodeKey(store.DocPrefix(doc))
			has := false
			// "incremental" sorts before "snapshot", so both seeks go forward.
			for _, kind := range []string{store.KindIncremental, store.KindSnapshot} {
				p := append(docPrefix[:len(docPrefix):len(docPrefix)], kind...)
				p = append(p, 0)
				it.Seek(p)
				if it.ValidForPrefix(p) {
					has = true
					break
				}
			}
			if has && !fn(doc) {
				return nil
			}
			// The smallest key after every key of doc: doc's prefix with its
			// final NUL replaced by 0x01.
			docPrefix[len(docPrefix)-1] = 1
			it.Seek(docPrefix)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: documents: %w", err)
	}
	return nil
}

// Apply implements store.Store: the batch is committed in one Badger
// transaction, possibly together with concurrent Apply calls, and fsynced
// before Apply returns nil. The data is copied, so the caller may reuse
// ops at once. If ctx ends after the batch was handed to the committer,
// Apply returns ctx's error but the batch may still be written.
func (s *Store) Apply(ctx context.Context, ops []store.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := s.newRequest(ops)
	if err != nil {
		return err
	}
	if !s.gate.enter() {
		return store.ErrClosed
	}
	if errp := s.failed.Load(); errp != nil {
		s.gate.leave()
		return fmt.Errorf("%w: %w", ErrFailed, *errp)
	}
	if r == nil {
		s.gate.leave()
		return nil
	}
	select {
	case s.reqs <- r:
		s.gate.leave()
	case <-ctx.Done():
		s.gate.leave()
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("badgerstore: stopped waiting for a batch that may still be written: %w", ctx.Err())
	}
}

// RunGC rewrites value log files that are at least Config.GCDiscardRatio
// garbage, until none is left or ctx ends, and returns how many it
// rewrote. It is a no-op in memory. Run it periodically, for example when
// Size reports a value log much larger than expected.
func (s *Store) RunGC(ctx context.Context) (int, error) {
	if !s.gate.enter() {
		return 0, store.ErrClosed
	}
	defer s.gate.leave()
	if s.cfg.InMemory {
		return 0, nil
	}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		err := s.db.RunValueLogGC(s.cfg.GCDiscardRatio)
		switch {
		case err == nil:
			n++
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing (more) to reclaim, or another GC is running.
			return n, nil
		default:
			return n, fmt.Errorf("badgerstore: value log gc: %w", err)
		}
	}
}

// Sizes is the disk space the database uses, in bytes allocated on disk.
type Sizes struct {
	LSM      int64 // sorted tables (*.sst)
	ValueLog int64 // value log files (*.vlog)
	WAL      int64 // memtable write-ahead logs (*.mem)
	Other    int64 // manifest, key registry, lock file
}

// Total returns the sum of all sizes.
func (z Sizes) Total() int64 { return z.LSM + z.ValueLog + z.WAL + z.Other }

// Size measures the files of the database now. It is zero in memory.
func (s *Store) Size() (Sizes, error) {
	var z Sizes
	if s.cfg.InMemory {
		return z, nil
	}
	err := filepath.WalkDir(s.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file removed by compaction meanwhile
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n := diskBytes(info)
		switch filepath.Ext(path) {
		case ".sst":
			z.LSM += n
		case ".vlog":
			z.ValueLog += n
		case ".mem":
			z.WAL += n
		default:
			z.Other += n
		}
		return nil
	})
	if err != nil {
		return z, fmt.Errorf("badgerstore: size: %w", err)
	}
	return z, nil
}

// Close waits for in-flight calls, commits the queued batches, and closes
// Badger. Every later call returns store.ErrClosed.
func (s *Store) Close() error {
	if !s.gate.close() {
		return store.ErrClosed
	}
	close(s.reqs)
	<-s.committerDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badgerstore: close: %w", err)
	}
	return nil
}

// gate admits calls until it is closed, and lets close wait for the calls
// inside. Unlike a sync.RWMutex it may be entered recursively (a Documents
// callback may call Load) without deadlocking against a waiting close.
type gate struct {
	mu     sync.Mutex
	idle   *sync.Cond
	n      int
	closed bool
}

func (g *gate) init() { g.idle = sync.NewCond(&g.mu) }

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 {
		g.idle.Broadcast()
	}
}

// close shuts the gate and waits until no call is inside. It reports false
// if the gate was already closed.
func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	for g.n > 0 {
		g.idle.Wait()
	}
	return true
}
