package records

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/wire"
)

// Sentinel errors.
var (
	// ErrNotFound: no live record with that id (never created, not synced
	// here, or deleted).
	ErrNotFound = errors.New("records: not found")
	// ErrInvalid: a collection name, field name or record id is not valid.
	ErrInvalid = errors.New("records: invalid argument")
)

// Reserved top-level keys. Field names starting with "_" are reserved.
const (
	// KeyCollection names a record's collection (in records) and an
	// index's collection (in index documents).
	KeyCollection = "_collection"
	// KeyDeleted is true on a deleted record (the tombstone).
	KeyDeleted = "_deleted"
	// KeyDeletedAt is the tombstone's time, milliseconds since the epoch.
	KeyDeletedAt = "_deletedAt"
	// KeyType marks index documents ("amsync/index") and sequence
	// documents ("amsync/sequence").
	KeyType = "_type"
)

// Docs is what records needs of a document store: *engine.Engine (on a
// server) and the Go peer both provide it.
type Docs interface {
	Create(ctx context.Context, init func(tx *crdt.Tx) error) (string, error)
	Change(ctx context.Context, id string, fn func(tx *crdt.Tx) error) (crdt.Heads, error)
	Read(ctx context.Context, id string, fn func(doc *crdt.Doc) error) error
	Find(ctx context.Context, id string) error
	Subscribe(fn func(docID string, heads crdt.Heads, local bool)) (cancel func())
}

var _ Docs = (*engine.Engine)(nil)

// Store is the records API over a Docs.
type Store struct {
	docs Docs
	now  func() time.Time

	mu    sync.Mutex
	hooks map[string]HookFunc
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for timestamps (tombstones, hooks).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the records API over docs.
func New(docs Docs, opts ...Option) *Store {
	s := &Store{docs: docs, now: time.Now, hooks: map[string]HookFunc{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Record is one record: its id (the automerge document id), its fields
// (without the reserved "_" keys), and its heads.
type Record struct {
	ID     string
	Fields map[string]any
	Heads  crdt.Heads
}

// Collection is a named set of records.
type Collection struct {
	s    *Store
	name string
}

// Collection returns the collection called name (1–200 bytes, no NUL).
func (s *Store) Collection(name string) *Collection { return &Collection{s: s, name: name} }

// Name is the collection's name.
func (c *Collection) Name() string { return c.name }

// DerivedID is the document id every client derives from a name: the
// bs58check encoding of the first 16 bytes of SHA-256("amsync/" + kind +
// "/" + name). A plain automerge-repo client computes it the same way.
func DerivedID(kind, name string) string {
	sum := sha256.Sum256([]byte("amsync/" + kind + "/" + name))
	return wire.FormatDocumentID(sum[:16])
}

// IndexID is the id of the collection's index document. Its root maps
// each record id to true (live) or false (deleted); KeyCollection and
// KeyType describe it. Root keys merge without conflict, so clients that
// create the index concurrently while offline converge.
func (c *Collection) IndexID() string { return DerivedID("index", c.name) }

func (c *Collection) check() error {
	if c.name == "" || len(c.name) > 200 || strings.IndexByte(c.name, 0) >= 0 {
		return fmt.Errorf("%w: collection name %q", ErrInvalid, c.name)
	}
	return nil
}

func checkFields(fields map[string]any) error {
	for k := range fields {
		if k == "" || strings.HasPrefix(k, "_") {
			return fmt.Errorf("%w: field name %q (names starting with _ are reserved)", ErrInvalid, k)
		}
	}
	return nil
}

// Put creates a record with fields and returns its new id. It needs no
// round trip: the id is made here, and the record syncs when it can.
func (c *Collection) Put(ctx context.Context, fields map[string]any) (string, error) {
	id, err := wire.NewDocumentID(nil)
	if err != nil {
		return "", err
	}
	return id, c.PutID(ctx, id, fields)
}

// PutID creates (or overwrites the given fields of) the record with a
// client-chosen id.
func (c *Collection) PutID(ctx context.Context, id string, fields map[string]any) error {
	if err := c.check(); err != nil {
		return err
	}
	if err := checkFields(fields); err != nil {
		return err
	}
	if _, err := wire.ParseDocumentID(id); err != nil {
		return fmt.Errorf("%w: record id: %v", ErrInvalid, err)
	}
	// The index first: an index entry whose record has not arrived is
	// skipped by List, while a record missing from the index would be
	// invisible.
	if err := c.index(ctx, id, true); err != nil {
		return err
	}
	_, err := c.s.docs.Change(ctx, id, func(tx *crdt.Tx) error {
		if err := tx.Set([]any{KeyCollection}, c.name); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			if err := tx.Set([]any{k}, fields[k]); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

func (c *Collection) index(ctx context.Context, id string, live bool) error {
	_, err := c.s.docs.Change(ctx, c.IndexID(), func(tx *crdt.Tx) error {
		cur, err := tx.Get([]any{KeyType})
		if err != nil {
			return err
		}
		if cur == nil {
			if err := tx.Set([]any{KeyType}, "amsync/index"); err != nil {
				return err
			}
			if err := tx.Set([]any{KeyCollection}, c.name); err != nil {
				return err
			}
		}
		return tx.Set([]any{id}, live)
	})
	return err
}

// Update changes a record with fn, as one change. Use tx.Set, tx.Delete,
// tx.Increment, tx.Splice and tx.Insert with paths below the record root.
func (c *Collection) Update(ctx context.Context, id string, fn func(tx *crdt.Tx) error) error {
	if _, err := c.Get(ctx, id); err != nil {
		return err
	}
	_, err := c.s.docs.Change(ctx, id, fn)
	return err
}

// Set overwrites the given fields of a record (a shallow merge).
func (c *Collection) Set(ctx context.Context, id string, fields map[string]any) error {
	if err := checkFields(fields); err != nil {
		return err
	}
	return c.Update(ctx, id, func(tx *crdt.Tx) error {
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			if err := tx.Set([]any{k}, fields[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Delete tombstones a record: it is marked deleted (the mark syncs to every
// replica), and its index entry turns false.
func (c *Collection) Delete(ctx context.Context, id string) error {
	if _, err := c.Get(ctx, id); err != nil {
		return err
	}
	at := c.s.now().UnixMilli()
	if _, err := c.s.docs.Change(ctx, id, func(tx *crdt.Tx) error {
		if err := tx.Set([]any{KeyDeleted}, true); err != nil {
			return err
		}
		return tx.Set([]any{KeyDeletedAt}, at)
	}); err != nil {
		return err
	}
	return c.index(ctx, id, false)
}

// Get returns a live record.
func (c *Collection) Get(ctx context.Context, id string) (Record, error) {
	if _, err := wire.ParseDocumentID(id); err != nil {
		return Record{}, fmt.Errorf("%w: record id: %v", ErrInvalid, err)
	}
	if err := c.s.docs.Find(ctx, id); err != nil {
		if errors.Is(err, engine.ErrUnavailable) {
			return Record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return Record{}, err
	}
	return c.read(ctx, id)
}

func (c *Collection) read(ctx context.Context, id string) (Record, error) {
	var rec Record
	var coll any
	var deleted bool
	err := c.s.docs.Read(ctx, id, func(d *crdt.Doc) error {
		v, err := d.Value()
		if err != nil {
			return err
		}
		coll = v[KeyCollection]
		deleted, _ = v[KeyDeleted].(bool)
		rec = Record{ID: id, Fields: map[string]any{}, Heads: d.Heads()}
		for k, x := range v {
			if !strings.HasPrefix(k, "_") {
				rec.Fields[k] = x
			}
		}
		return nil
	})
	if errors.Is(err, engine.ErrUnavailable) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, err
	}
	if deleted || coll != c.name {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return rec, nil
}

// IDs returns the ids the collection's index lists as live, sorted. The
// index is fetched from the relay when it is not local.
func (c *Collection) IDs(ctx context.Context) ([]string, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	idx := c.IndexID()
	if err := c.s.docs.Find(ctx, idx); err != nil {
		if errors.Is(err, engine.ErrUnavailable) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	err := c.s.docs.Read(ctx, idx, func(d *crdt.Doc) error {
		v, err := d.Value()
		if err != nil {
			return err
		}
		for k, x := range v {
			if live, ok := x.(bool); ok && live && !strings.HasPrefix(k, "_") {
				ids = append(ids, k)
			}
		}
		return nil
	})
	if errors.Is(err, engine.ErrUnavailable) {
		return nil, nil
	}
	slices.Sort(ids)
	return ids, err
}

// List returns the live records, sorted by id. Records listed in the index
// but not (yet) available anywhere are skipped.
func (c *Collection) List(ctx context.Context) ([]Record, error) {
	ids, err := c.IDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		r, err := c.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
