package records

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
)

// EventKind says what happened to a record.
type EventKind string

// Event kinds.
const (
	Added   EventKind = "added"   // entered the collection's index
	Changed EventKind = "changed" // its document changed
	Deleted EventKind = "deleted" // tombstoned (or left the index)
)

// Event is one change a watcher hears of.
type Event struct {
	Collection string
	ID         string
	Kind       EventKind
	// Local is true for changes made through this process's API.
	Local bool
}

// queue delivers values to fn on its own goroutine, in order, without
// ever blocking the producer (document tasks must not wait for watchers).
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	wake   chan struct{}
	closed bool
}

func newQueue[T any](fn func(T)) *queue[T] {
	q := &queue[T]{wake: make(chan struct{}, 1)}
	go func() {
		for {
			q.mu.Lock()
			items, closed := q.items, q.closed
			q.items = nil
			q.mu.Unlock()
			for _, it := range items {
				fn(it)
			}
			if closed {
				return
			}
			if len(items) == 0 {
				<-q.wake
			}
		}
	}()
	return q
}

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, v)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

type docChange struct {
	id    string
	local bool
}

// Watch calls fn for every change to the collection's records: added,
// changed, deleted; local and remote alike. fn runs on a goroutine of the
// watcher's own, one event at a time; it may call the Store. stop ends
// the watch. Records that exist when Watch is called are not reported
// as added.
func (c *Collection) Watch(fn func(Event)) (stop func()) {
	idx := c.IndexID()
	members := map[string]bool{}
	deleted := map[string]bool{}
	if ids, err := c.IDs(context.Background()); err == nil {
		for _, id := range ids {
			members[id] = true
		}
	}
	q := newQueue(func(ch docChange) {
		if ch.id == idx {
			ids, err := c.IDs(context.Background())
			if err != nil {
				return
			}
			live := make(map[string]bool, len(ids))
			for _, id := range ids {
				live[id] = true
				if !members[id] && !deleted[id] {
					members[id] = true
					fn(Event{Collection: c.name, ID: id, Kind: Added, Local: ch.local})
				}
			}
			for _, id := range sortedKeys(members) {
				if !live[id] {
					delete(members, id)
					if !deleted[id] {
						deleted[id] = true
						fn(Event{Collection: c.name, ID: id, Kind: Deleted, Local: ch.local})
					}
				}
			}
			return
		}
		// A record reports itself: its own document says which collection
		// it is in and whether it is deleted, whatever the index says yet.
		coll, gone, ok := c.peek(ch.id)
		if !ok || coll != c.name {
			return
		}
		switch {
		case gone && !deleted[ch.id]:
			deleted[ch.id] = true
			delete(members, ch.id)
			fn(Event{Collection: c.name, ID: ch.id, Kind: Deleted, Local: ch.local})
		case !gone:
			members[ch.id] = true
			fn(Event{Collection: c.name, ID: ch.id, Kind: Changed, Local: ch.local})
		}
	})
	cancel := c.s.docs.Subscribe(func(id string, _ crdt.Heads, local bool) { q.push(docChange{id, local}) })
	return func() { cancel(); q.close() }
}

// peek reads a document's collection and tombstone; ok is false when it
// cannot be read or is not a record.
func (c *Collection) peek(id string) (coll string, deleted, ok bool) {
	err := c.s.docs.Read(context.Background(), id, func(d *crdt.Doc) error {
		v, err := d.Value()
		if err != nil {
			return err
		}
		if t, _ := v[KeyType].(string); t != "" {
			return nil
		}
		coll, _ = v[KeyCollection].(string)
		deleted, _ = v[KeyDeleted].(bool)
		ok = true
		return nil
	})
	return coll, deleted, ok && err == nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// WatchRecord calls fn for every change of one record.
func (c *Collection) WatchRecord(id string, fn func(Event)) (stop func()) {
	q := newQueue(func(ch docChange) {
		kind := Changed
		if _, err := c.read(context.Background(), id); errors.Is(err, ErrNotFound) {
			kind = Deleted
		}
		fn(Event{Collection: c.name, ID: id, Kind: kind, Local: ch.local})
	})
	cancel := c.s.docs.Subscribe(func(doc string, _ crdt.Heads, local bool) {
		if doc == id {
			q.push(docChange{doc, local})
		}
	})
	return func() { cancel(); q.close() }
}

// HookFunc runs on the server when a client's change to a record of its
// collection arrives. It may make server-side changes with h.Update; those
// are persisted and synced to every client. It must be idempotent: it
// runs again for the same record after a restart (Resume) and when several
// changes arrive.
type HookFunc func(ctx context.Context, h *Hook) error

// Hook is one run of a HookFunc.
type Hook struct {
	Collection *Collection
	// Record as it was when the hook started.
	Record Record
	// Principals are the ids of the authenticated peers whose changes
	// triggered this run ("" for anonymous peers); empty when the run
	// resumes after a restart.
	Principals []string
}

// Update changes the record as the server, in one change. Other changes
// may have arrived since Record was read: check inside fn (tx.Get) what
// must be checked atomically.
func (h *Hook) Update(ctx context.Context, fn func(tx *crdt.Tx) error) error {
	_, err := h.Collection.s.docs.Change(ctx, h.Record.ID, fn)
	return err
}

// Hook registers fn for collection. Hooks run once RunHooks is called.
func (s *Store) Hook(collection string, fn HookFunc) {
	s.mu.Lock()
	s.hooks[collection] = fn
	s.mu.Unlock()
}

// RunHooks runs the registered hooks until ctx ends: first over every
// live record of each hooked collection (so that a change that arrived
// before a crash, but whose hook had not run, gets it now), then for every
// change a client sends. Hooks on one record run one at a time; the
// server's own changes do not trigger hooks, so a hook cannot loop on
// itself. It returns once the resume pass is done.
func (s *Store) RunHooks(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	r := &hookRunner{s: s, ctx: ctx, log: log, state: map[string]*hookState{}}
	var cancel func()
	if ev, ok := s.docs.(interface {
		SubscribeEvents(func(engine.ChangeEvent)) func()
	}); ok {
		cancel = ev.SubscribeEvents(func(e engine.ChangeEvent) {
			if !e.Local {
				r.trigger(e.DocID, e.From)
			}
		})
	} else {
		cancel = s.docs.Subscribe(func(id string, _ crdt.Heads, local bool) {
			if !local {
				r.trigger(id, nil)
			}
		})
	}
	go func() { <-ctx.Done(); cancel() }()
	s.mu.Lock()
	names := make([]string, 0, len(s.hooks))
	for n := range s.hooks {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		ids, err := s.Collection(n).IDs(ctx)
		if err != nil {
			return fmt.Errorf("records: resume hooks of %s: %w", n, err)
		}
		for _, id := range ids {
			r.trigger(id, nil)
		}
	}
	return nil
}

type hookRunner struct {
	s     *Store
	ctx   context.Context
	log   *slog.Logger
	mu    sync.Mutex
	state map[string]*hookState
}

type hookState struct {
	again bool
	from  []string // principals of the triggers folded into the next run
}

// trigger runs the hook of id's collection, after any run in progress
// for id; triggers that arrive meanwhile fold into one more run.
func (r *hookRunner) trigger(id string, from []string) {
	r.mu.Lock()
	if st, ok := r.state[id]; ok {
		st.again = true
		st.from = mergeSorted(st.from, from)
		r.mu.Unlock()
		return
	}
	st := &hookState{}
	r.state[id] = st
	r.mu.Unlock()
	go func() {
		for {
			r.run(id, from)
			r.mu.Lock()
			if !st.again || r.ctx.Err() != nil {
				delete(r.state, id)
				r.mu.Unlock()
				return
			}
			st.again, from, st.from = false, st.from, nil
			r.mu.Unlock()
		}
	}()
}

func mergeSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

func (r *hookRunner) run(id string, from []string) {
	var coll string
	err := r.s.docs.Read(r.ctx, id, func(d *crdt.Doc) error {
		v, err := d.Value()
		if err != nil {
			return err
		}
		coll, _ = v[KeyCollection].(string)
		if t, _ := v[KeyType].(string); t != "" {
			coll = "" // an index or sequence document, not a record
		}
		return nil
	})
	if err != nil || coll == "" {
		return
	}
	r.s.mu.Lock()
	fn := r.s.hooks[coll]
	r.s.mu.Unlock()
	if fn == nil {
		return
	}
	c := r.s.Collection(coll)
	rec, err := c.read(r.ctx, id)
	if err != nil {
		return
	}
	if err := fn(r.ctx, &Hook{Collection: c, Record: rec, Principals: from}); err != nil {
		r.log.Warn("record hook failed", "collection", coll, "id", id, "err", err)
	}
}

// Next returns the next value of the named sequence: 1, 2, 3, … Each value
// is durable before it is returned and is never handed out twice, also
// across restarts (a crash may skip one).
func (s *Store) Next(ctx context.Context, sequence string) (int64, error) {
	var n int64
	_, err := s.docs.Change(ctx, DerivedID("sequence", sequence), func(tx *crdt.Tx) error {
		cur, err := tx.Get([]any{"value"})
		if err != nil {
			return err
		}
		v, _ := cur.(int64)
		n = v + 1
		if cur == nil {
			if err := tx.Set([]any{KeyType}, "amsync/sequence"); err != nil {
				return err
			}
		}
		return tx.Set([]any{"value"}, n)
	})
	return n, err
}
