package engine

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
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
	pool      *warmPool // runs document tasks unless Config.Go is set

	shards [64]shard

	mu       sync.Mutex
	peers    map[string]*Session // by peer id
	sessions map[*Session]struct{}
	banned   map[string]time.Time // peer id -> refused until
	closed   bool
	life     context.Context // ends with Close (background waits of documents)
	stop     context.CancelFunc

	nextSession atomic.Uint64
	tasks       taskGroup

	outbound atomic.Pointer[[]*Session] // joined dialled sessions, immutable slice

	syncMu     sync.Mutex
	pending    map[string]bool // documents with local changes not acknowledged by a dialled remote
	announcing int             // announce events not yet processed
	syncWake   chan struct{}   // closed and replaced when pending or announcing changes

	lruMu       sync.Mutex
	lru         *list.List // of *docActor, most recent first
	loadedBytes int64

	subMu   sync.Mutex
	subs    map[int]func(docID string, heads crdt.Heads, local bool)
	evSubs  map[int]func(ChangeEvent)
	nextSub int

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
		pending:  map[string]bool{},
		subs:     map[int]func(string, crdt.Heads, bool){},
		evSubs:   map[int]func(ChangeEvent){},
		syncWake: make(chan struct{}),
	}
	if e.cfg.Go == nil {
		e.pool = newWarmPool()
		e.cfg.Go = e.pool.Go
	}
	e.life, e.stop = context.WithCancel(context.Background())
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
	if cfg.TrackPending {
		chunks, err := cfg.Store.LoadRange(context.Background(), store.Key{pendingPrefix})
		if err != nil {
			return nil, fmt.Errorf("engine: load pending marks: %w", err)
		}
		for _, c := range chunks {
			if len(c.Key) == 2 {
				e.pending[c.Key[1]] = true
			}
		}
	}
	return e, nil
}

// pendingPrefix is the store key prefix of the marks of documents holding
// local changes that no dialled remote has acknowledged yet.
const pendingPrefix = "amsync-pending"

// Connect registers a connection this engine dialled, and sends join on
// it. When the remote answers with peer, every document the engine holds is
// announced to it: the engine syncs them with the remote, requests the ones
// it lacks, and sends later changes there as they happen. This is the
// client side of the protocol (the Go peer, or a relay syncing with another).
func (e *Engine) Connect(c Conn) *Session {
	s := e.Open(c)
	s.mu.Lock()
	s.outbound = true
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.send(wire.Message{
			Type:                      wire.TypeJoin,
			SenderID:                  e.peerID,
			PeerMetadata:              &wire.PeerMetadata{StorageID: e.storageID, IsEphemeral: false},
			SupportedProtocolVersions: []string{wire.ProtocolV1},
		})
	}
	return s
}

func (e *Engine) outboundSessions() []*Session {
	if p := e.outbound.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *Engine) addOutbound(s *Session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := append(append([]*Session(nil), e.outboundSessions()...), s)
	e.outbound.Store(&next)
	e.wakeSync()
}

func (e *Engine) removeOutbound(s *Session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.outboundSessions()
	next := make([]*Session, 0, len(cur))
	for _, x := range cur {
		if x != s {
			next = append(next, x)
		}
	}
	if len(next) != len(cur) {
		e.outbound.Store(&next)
		e.wakeSync()
	}
}

// announce wakes every document the engine holds (stored or active) so
// that it starts syncing with the newly joined remote s.
func (e *Engine) announce(s *Session) {
	ids := map[string]bool{}
	err := e.cfg.Store.Documents(context.Background(), func(id string) bool {
		ids[id] = true
		return true
	})
	if err != nil {
		e.log.Error("list documents to announce", "err", err)
	}
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for id := range sh.docs {
			ids[id] = true
		}
		sh.mu.Unlock()
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	slices.Sort(sorted)
	e.syncMu.Lock()
	e.announcing += len(sorted)
	e.syncMu.Unlock()
	for _, id := range sorted {
		if err := s.route(id, docEvent{kind: evAnnounce, sess: s}); err != nil {
			e.doneAnnouncing(len(sorted)) // the session closed meanwhile
			return
		}
	}
}

func (e *Engine) doneAnnouncing(n int) {
	e.syncMu.Lock()
	e.announcing -= n
	if e.announcing < 0 {
		e.announcing = 0
	}
	e.wakeSyncLocked()
	e.syncMu.Unlock()
}

func (e *Engine) wakeSync() {
	e.syncMu.Lock()
	e.wakeSyncLocked()
	e.syncMu.Unlock()
}

func (e *Engine) wakeSyncLocked() {
	close(e.syncWake)
	e.syncWake = make(chan struct{})
}

// setPending records whether docID holds local changes that no dialled
// remote has acknowledged.
func (e *Engine) setPending(docID string, pending bool) {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	if e.pending[docID] == pending {
		return
	}
	if pending {
		e.pending[docID] = true
	} else {
		delete(e.pending, docID)
	}
	e.wakeSyncLocked()
}

// Subscribe calls fn after every durable change of a document's heads,
// on the document's task (so calls for one document are in order). local
// tells a change made through this engine's API from one a peer sent. fn
// must return quickly and must not call the engine for the same document
// synchronously (it would wait for itself): hand work to a goroutine.
func (e *Engine) Subscribe(fn func(docID string, heads crdt.Heads, local bool)) (cancel func()) {
	e.subMu.Lock()
	id := e.nextSub
	e.nextSub++
	e.subs[id] = fn
	e.subMu.Unlock()
	return func() {
		e.subMu.Lock()
		delete(e.subs, id)
		e.subMu.Unlock()
	}
}

// SubscribeEvents is Subscribe with the principals whose peers made each
// change (records' server hooks use it).
func (e *Engine) SubscribeEvents(fn func(ChangeEvent)) (cancel func()) {
	e.subMu.Lock()
	id := e.nextSub
	e.nextSub++
	e.evSubs[id] = fn
	e.subMu.Unlock()
	return func() {
		e.subMu.Lock()
		delete(e.evSubs, id)
		e.subMu.Unlock()
	}
}

func (e *Engine) notify(ev ChangeEvent) {
	if f := e.cfg.OnChange; f != nil {
		f(ev.DocID, ev.Heads, ev.Local)
	}
	e.subMu.Lock()
	if len(e.subs)+len(e.evSubs) == 0 {
		e.subMu.Unlock()
		return
	}
	ids := make([]int, 0, len(e.subs)+len(e.evSubs))
	for id := range e.subs {
		ids = append(ids, id)
	}
	for id := range e.evSubs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	fns := make([]func(), 0, len(ids))
	for _, id := range ids {
		if f, ok := e.subs[id]; ok {
			fns = append(fns, func() { f(ev.DocID, ev.Heads, ev.Local) })
		} else {
			f := e.evSubs[id]
			fns = append(fns, func() { f(ev) })
		}
	}
	e.subMu.Unlock()
	for _, f := range fns {
		f()
	}
}

// Pending returns, sorted, the documents that hold local changes which no
// dialled remote (the server) has acknowledged yet. With TrackPending the
// set survives restarts.
func (e *Engine) Pending() []string {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	out := make([]string, 0, len(e.pending))
	for id := range e.pending {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Online reports whether a dialled remote has accepted our join.
func (e *Engine) Online() bool { return len(e.outboundSessions()) > 0 }

// WaitOnline returns once a dialled remote has accepted our join, or when
// ctx ends.
func (e *Engine) WaitOnline(ctx context.Context) error {
	for {
		e.syncMu.Lock()
		wake := e.syncWake
		e.syncMu.Unlock()
		if e.Online() {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitSynced returns once a dialled remote is connected, every document
// has been announced to it, and no document holds unacknowledged local
// changes; or when ctx ends.
func (e *Engine) WaitSynced(ctx context.Context) error {
	for {
		e.syncMu.Lock()
		done := e.Online() && e.announcing == 0 && len(e.pending) == 0
		wake := e.syncWake
		e.syncMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Find makes sure document docID is here: it returns at once when the
// document has changes locally, otherwise it asks the dialled remotes and
// waits for the document to arrive. ErrUnavailable means no connected
// remote has it (or none is connected).
func (e *Engine) Find(ctx context.Context, docID string) error {
	if _, err := wire.ParseDocumentID(docID); err != nil {
		return err
	}
	res := make(chan changeResult, 1)
	e.enqueue(docID, docEvent{kind: evFind, result: res})
	select {
	case r := <-res:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Create makes a new document with a fresh random id, applies init to it
// as its first change, and returns the id.
func (e *Engine) Create(ctx context.Context, init func(tx *crdt.Tx) error) (string, error) {
	id, err := wire.NewDocumentID(e.cfg.Rand)
	if err != nil {
		return "", err
	}
	if _, err := e.Change(ctx, id, init); err != nil {
		return "", err
	}
	return id, nil
}

// PeerID is the engine's peer id on the wire.
func (e *Engine) PeerID() string { return e.peerID }

// StorageID is the storage id the engine advertises.
func (e *Engine) StorageID() string { return e.storageID }

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() StatsSnapshot { return e.stats.snapshot() }

// Open registers a new connection. The transport feeds it frames with
// HandleFrame and calls Closed when the connection ends.
func (e *Engine) Open(c Conn) *Session { return e.OpenAs(c, nil) }

// OpenAs registers a new connection authenticated as p (nil: anonymous
// with read-write access to every document).
func (e *Engine) OpenAs(c Conn, p *Principal) *Session {
	id := e.nextSession.Add(1)
	s := &Session{e: e, id: id, key: PeerKey(fmt.Sprintf("s%d", id)), conn: c, docs: map[string]struct{}{}, principal: p}
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
	e.stop()
	sessions := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	for _, s := range sessions {
		s.conn.Close(CloseGoingAway, "server shutting down")
		s.Closed()
	}
	if err := e.tasks.Wait(ctx); err != nil {
		return fmt.Errorf("engine: close: %w", err)
	}
	if e.pool != nil {
		e.pool.stop()
	}
	return nil
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
