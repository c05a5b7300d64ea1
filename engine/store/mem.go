package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MemStore is an in-memory Store for tests and deterministic simulations.
// It is safe for concurrent use, copies every value in and out, and iterates
// in key order, so a simulation that drives it from one goroutine behaves
// the same on every run.
//
// A MemStore models a disk: what Apply acknowledged is "on stable storage".
// A simulation models a process crash by abandoning the store (or closing
// it) and continuing with Clone, which carries over exactly the data of the
// acknowledged batches.
type MemStore struct {
	mu     sync.Mutex
	closed bool
	keys   []string          // encoded keys, sorted
	vals   map[string][]byte // encoded key -> value (never nil)
	stats  MemStats
}

// MemStats counts the work a MemStore has done since it was created.
type MemStats struct {
	Batches uint64 // Apply calls that returned nil
	Ops     uint64 // ops in those batches
	Puts    uint64 // puts among Ops
	Deletes uint64 // deletes among Ops
	Loads   uint64 // Load and LoadRange calls that returned nil error
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty, open MemStore.
func NewMemStore() *MemStore {
	return &MemStore{vals: make(map[string][]byte)}
}

// memKey encodes k so that string order equals Key.Compare order and a
// component-wise prefix is a string prefix: every component is followed by
// a NUL byte, which Validate forbids inside components.
func memKey(k Key) string {
	var b strings.Builder
	for _, c := range k {
		b.WriteString(c)
		b.WriteByte(0)
	}
	return b.String()
}

func memDecode(s string) Key {
	parts := strings.Split(strings.TrimSuffix(s, "\x00"), "\x00")
	return Key(parts)
}

// Load implements Store.
func (m *MemStore) Load(ctx context.Context, k Key) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %q", err, []string(k))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	m.stats.Loads++
	v, ok := m.vals[memKey(k)]
	if !ok {
		return nil, nil
	}
	return slices.Clone(v), nil
}

// LoadRange implements Store.
func (m *MemStore) LoadRange(ctx context.Context, p Key) ([]Chunk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %q", err, []string(p))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	m.stats.Loads++
	prefix := memKey(p)
	var out []Chunk
	i, _ := slices.BinarySearch(m.keys, prefix)
	for ; i < len(m.keys) && strings.HasPrefix(m.keys[i], prefix); i++ {
		ek := m.keys[i]
		out = append(out, Chunk{Key: memDecode(ek), Data: slices.Clone(m.vals[ek])})
	}
	return out, nil
}

// Apply implements Store. The batch is validated as a whole first, so an
// invalid op leaves the store unchanged.
func (m *MemStore) Apply(ctx context.Context, ops []Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, op := range ops {
		if err := op.Key.Validate(); err != nil {
			return fmt.Errorf("%w: %q", err, []string(op.Key))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, op := range ops {
		ek := memKey(op.Key)
		i, found := slices.BinarySearch(m.keys, ek)
		if op.Delete {
			if found {
				m.keys = slices.Delete(m.keys, i, i+1)
				delete(m.vals, ek)
			}
			m.stats.Deletes++
			continue
		}
		if !found {
			m.keys = slices.Insert(m.keys, i, ek)
		}
		v := make([]byte, len(op.Data))
		copy(v, op.Data)
		m.vals[ek] = v
		m.stats.Puts++
	}
	m.stats.Batches++
	m.stats.Ops += uint64(len(ops))
	return nil
}

// Documents implements Store. fn runs without the store's lock held, so it
// may call the store.
func (m *MemStore) Documents(ctx context.Context, fn func(docID string) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var docs []string
	for _, ek := range m.keys {
		k := memDecode(ek)
		if len(k) < 2 || (k[1] != KindSnapshot && k[1] != KindIncremental) {
			continue
		}
		if n := len(docs); n == 0 || docs[n-1] != k[0] {
			docs = append(docs, k[0])
		}
	}
	m.mu.Unlock()
	for _, d := range docs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn(d) {
			return nil
		}
	}
	return nil
}

// Close implements Store. The contents stay readable through Snapshot and
// Clone, as a disk outlives the process that wrote it.
func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	return nil
}

// Stats returns the counters.
func (m *MemStore) Stats() MemStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Len returns the number of keys stored.
func (m *MemStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

// Snapshot returns a copy of every chunk, sorted by key. It works on a
// closed store too.
func (m *MemStore) Snapshot() []Chunk {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Chunk, 0, len(m.keys))
	for _, ek := range m.keys {
		out = append(out, Chunk{Key: memDecode(ek), Data: slices.Clone(m.vals[ek])})
	}
	return out
}

// Clone returns a new open MemStore holding a copy of m's data, with zero
// counters. m may be closed: Clone is how a simulation restarts a crashed
// process on the same disk.
func (m *MemStore) Clone() *MemStore {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MemStore{
		keys: slices.Clone(m.keys),
		vals: make(map[string][]byte, len(m.vals)),
	}
	for k, v := range m.vals {
		c.vals[k] = slices.Clone(v)
	}
	return c
}
