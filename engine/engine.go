package engine

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// Sentinel errors.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("engine: closed")
	// ErrUnavailable is returned by the embedding API for a document that
	// has no changes anywhere the engine can see.
	ErrUnavailable = errors.New("engine: document unavailable")
	// ErrBroken is returned for a document whose stored chunks cannot be
	// loaded.
	ErrBroken = errors.New("engine: document cannot be loaded")
)

// WebSocket close codes the engine asks its transports to use.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseInternalError   = 1011
)

// Conn is the engine's view of one transport connection. Send must not
// block: a transport queues the frame, and closes the connection itself
// when the queue is full (a slow reader never stalls the engine). Close
// sends a close frame with code and reason, then ends the connection; the
// transport then calls Session.Closed.
type Conn interface {
	Send(frame []byte) error
	Close(code int, reason string)
}

// Engine is the replication core: it holds connected peers (Sessions) and
// one actor per active document, and runs each document's Replica on its
// own task so that documents proceed in parallel. All I/O goes through the
// Store and the Conns it is given; time comes from Config.Now and tasks
// start through Config.Go, so a simulation can run it deterministically.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	storageID string
	peerID    string
	actor     crdt.ActorID
	seed      maphash.Seed
	core      Core

	shards [64]shard

	mu       sync.Mutex
	peers    map[string]*Session // by peer id
	sessions map[*Session]struct{}
	banned   map[string]time.Time // peer id -> refused until
	closed   bool

	nextSession atomic.Uint64
	tasks       sync.WaitGroup

	lruMu       sync.Mutex
	lru         *list.List // of *docActor, most recent first
	loadedBytes int64

	stats Stats
}

type shard struct {
	mu   sync.Mutex
	docs map[string]*docActor
}

// New validates cfg and returns an engine. It reads (or creates and
// persists) the store's storage id.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		peers:    map[string]*Session{},
		sessions: map[*Session]struct{}{},
		banned:   map[string]time.Time{},
		lru:      list.New(),
		seed:     maphash.MakeSeed(),
		core:     cfg.Core,
	}
	for i := range e.shards {
		e.shards[i].docs = map[string]*docActor{}
	}
	e.storageID = cfg.StorageID
	if e.storageID == "" {
		id, err := store.EnsureStorageID(context.Background(), cfg.Store, cfg.Rand)
		if err != nil {
			return nil, fmt.Errorf("engine: storage id: %w", err)
		}
		e.storageID = id
	}
	e.peerID = cfg.PeerID
	if e.peerID == "" {
		e.peerID = "amsync-" + e.storageID[:min(8, len(e.storageID))]
	}
	actor, err := crdt.NewActorID(cfg.Rand)
	if err != nil {
		return nil, err
	}
	e.actor = actor
	return e, nil
}

// PeerID is the engine's peer id on the wire.
func (e *Engine) PeerID() string { return e.peerID }

// StorageID is the storage id the engine advertises.
func (e *Engine) StorageID() string { return e.storageID }

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() StatsSnapshot { return e.stats.snapshot() }

// Open registers a new connection. The transport feeds it frames with
// HandleFrame and calls Closed when the connection ends.
func (e *Engine) Open(c Conn) *Session {
	id := e.nextSession.Add(1)
	s := &Session{e: e, id: id, key: PeerKey(fmt.Sprintf("s%d", id)), conn: c, docs: map[string]struct{}{}}
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.sessions[s] = struct{}{}
	}
	e.mu.Unlock()
	if closed {
		c.Close(CloseGoingAway, "server shutting down")
		s.closed = true
		return s
	}
	e.stats.SessionsOpen.Add(1)
	return s
}

func (e *Engine) shardFor(docID string) *shard {
	return &e.shards[maphash.String(e.seed, docID)%uint64(len(e.shards))]
}

// enqueue adds ev to the document's actor, creating the actor when needed,
// and schedules the actor's task when it is not running.
func (e *Engine) enqueue(docID string, ev docEvent) {
	sh := e.shardFor(docID)
	sh.mu.Lock()
	a := sh.docs[docID]
	if a == nil {
		a = &docActor{e: e, id: docID, shard: sh, peers: map[*Session]*docPeer{}, byKey: map[PeerKey]*Session{}}
		sh.docs[docID] = a
		e.stats.DocsActive.Add(1)
	}
	a.mu.Lock()
	a.queue = append(a.queue, ev)
	start := !a.running
	a.running = true
	a.mu.Unlock()
	sh.mu.Unlock()
	if start {
		e.tasks.Add(1)
		e.cfg.Go(a.run)
	}
}

// ban refuses peerID at join for Config.BanFor.
func (e *Engine) ban(peerID string) {
	e.mu.Lock()
	e.banned[peerID] = e.cfg.Now().Add(e.cfg.BanFor)
	e.mu.Unlock()
}

// isBanned reports whether peerID is refused now, forgetting expired bans.
func (e *Engine) isBanned(peerID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	until, ok := e.banned[peerID]
	if ok && !e.cfg.Now().Before(until) {
		delete(e.banned, peerID)
		return false
	}
	return ok
}

// Tick evicts documents that have been idle longer than IdleTimeout. The
// relay calls it every few seconds; simulations call it with virtual time.
func (e *Engine) Tick(now time.Time) {
	var idle []*docActor
	e.lruMu.Lock()
	for el := e.lru.Back(); el != nil; el = el.Prev() {
		a := el.Value.(*docActor)
		if now.Sub(a.lastUsed) < e.cfg.IdleTimeout {
			break
		}
		idle = append(idle, a)
	}
	e.lruMu.Unlock()
	for _, a := range idle {
		e.enqueue(a.id, docEvent{kind: evEvict})
	}
}

// touch marks a loaded actor as recently used, accounts for its size, and
// asks the least recently used actors to evict themselves when a cap is
// exceeded.
func (e *Engine) touch(a *docActor, size int64) {
	var evict []*docActor
	e.lruMu.Lock()
	a.lastUsed = e.cfg.Now()
	e.loadedBytes += size - a.size
	a.size = size
	if a.elem == nil {
		a.elem = e.lru.PushFront(a)
		e.stats.DocsLoaded.Add(1)
	} else {
		e.lru.MoveToFront(a.elem)
	}
	n, b := e.lru.Len(), e.loadedBytes
	for el := e.lru.Back(); el != nil && (n > e.cfg.MaxLoadedDocs || b > e.cfg.MaxLoadedBytes); el = el.Prev() {
		v := el.Value.(*docActor)
		if v == a || v.evicting {
			continue
		}
		v.evicting = true
		evict = append(evict, v)
		n--
		b -= v.size
	}
	e.lruMu.Unlock()
	for _, v := range evict {
		e.enqueue(v.id, docEvent{kind: evEvict})
	}
}

func (e *Engine) untrack(a *docActor) {
	e.lruMu.Lock()
	if a.elem != nil {
		e.lru.Remove(a.elem)
		a.elem = nil
		e.loadedBytes -= a.size
		a.size = 0
		e.stats.DocsLoaded.Add(-1)
	}
	a.evicting = false
	e.lruMu.Unlock()
}

// Close ends every session and waits for document tasks to finish (their
// pending writes land; sync states of connected peers are persisted). The
// store is left open: its owner closes it after Close returns.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	sessions := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	for _, s := range sessions {
		s.conn.Close(CloseGoingAway, "server shutting down")
		s.Closed()
	}
	done := make(chan struct{})
	go func() { e.tasks.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("engine: close: %w", ctx.Err())
	}
}

// Change applies fn to document docID as one local change, persists it,
// syncs it to every peer that has the document open, and returns the new
// heads. A document that does not exist yet is created.
func (e *Engine) Change(ctx context.Context, docID string, fn func(tx *crdt.Tx) error) (crdt.Heads, error) {
	if _, err := wire.ParseDocumentID(docID); err != nil {
		return nil, err
	}
	res := make(chan changeResult, 1)
	e.enqueue(docID, docEvent{kind: evChange, change: &LocalChange{At: e.cfg.Now(), Fn: fn}, result: res})
	select {
	case r := <-res:
		return r.heads, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Read calls fn with the current state of document docID, on the
// document's task. ErrUnavailable is returned when the document has no
// changes.
func (e *Engine) Read(ctx context.Context, docID string, fn func(doc *crdt.Doc) error) error {
	if _, err := wire.ParseDocumentID(docID); err != nil {
		return err
	}
	res := make(chan changeResult, 1)
	e.enqueue(docID, docEvent{kind: evRead, read: fn, result: res})
	select {
	case r := <-res:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type changeResult struct {
	heads crdt.Heads
	err   error
}
