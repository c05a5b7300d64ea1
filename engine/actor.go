package engine

import (
	"cmp"
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/crdt/amcheck"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

type evKind int

const (
	evMessage     evKind = iota // sync, request or ephemeral from a session
	evGone                      // the session ended
	evEvict                     // drop the loaded replica if idle
	evChange                    // local change through the embedding API
	evRead                      // read through the embedding API
	evAnnounce                  // a dialled remote joined: sync this document with it
	evUnavailable               // a dialled remote does not have the document
	evFind                      // the embedding API wants the document here
	evRemote                    // changes a Replicator delivered (ApplyRemote)
	evAwaited                   // an Awaiter's check for the document ended
)

type docEvent struct {
	kind     evKind
	sess     *Session
	msg      wire.Message
	readOnly bool // the sender may read the document but not change it
	change   *LocalChange
	read     func(*crdt.Doc) error
	result   chan changeResult
	done     func() // called once the event is processed (Session.HandleFrameThen)
	remote   *remoteInput
}

type peerStatus int

const (
	statusUnknown peerStatus = iota
	statusHas
	statusWants
	statusUnavailable
)

// docPeer is the state of one (peer, document) pair, as automerge-repo's
// DocSynchronizer keeps it: what the peer is known to want or have, and
// the sync state kept while the replica is not loaded.
type docPeer struct {
	key        PeerKey
	status     peerStatus
	attached   bool   // attached to the current replica
	kept       []byte // encoded sync state while the replica is evicted
	theirHeads crdt.Heads
	// sentHeads are the heads of the last sync message sent to the peer
	// from the current replica (nil after a load: a fresh or resumed
	// sync state has not responded yet).
	sentHeads crdt.Heads
}

// docActor runs one document. Its queue is filled by sessions and the
// embedding API; its task drains the queue in batches, so that a burst of
// messages costs one replica step, one durable write and one round of
// messages. Everything below mu is owned by the running task.
type docActor struct {
	e     *Engine
	id    string
	shard *shard

	mu      sync.Mutex
	queue   []docEvent
	running bool

	replica      CoreReplica
	empty        bool // the replica had no changes after the last step
	lostState    bool // the last replica was lost with its sync states
	broken       error
	quarantined  time.Time // no load before this time: the document aborts the core
	peers        map[*Session]*docPeer
	byKey        map[PeerKey]*Session
	order        []*Session // the keys of peers, sorted by session id
	finders      []chan changeResult
	published    map[[32]byte]struct{} // hashes of what this document published (notePublished)
	heads        crdt.Heads            // the replica's heads after its last step (nil: not known)
	deferred     []PeerData            // acknowledgements not yet received by the replica (deferAck)
	deferredLen  int                   // their bytes
	deferredDone []func()              // their frames' done callbacks (Session.HandleFrameThen)
	awaiting     awaitState            // the Replicator's check before doc-unavailable (awaitRemote)

	// guarded by e.lruMu
	elem     *list.Element
	lastUsed time.Time
	size     int64
	evicting bool
}

func (a *docActor) run() {
	defer a.e.tasks.Done()
	for {
		a.mu.Lock()
		evs := a.queue
		a.queue = nil
		a.mu.Unlock()
		if len(evs) == 0 {
			if a.finish() {
				return
			}
			continue
		}
		a.process(evs)
		// The batch is processed (or discarded): the frames it came from
		// are no longer held.
		for i := range evs {
			if done := evs[i].done; done != nil {
				done()
			}
		}
	}
}

// finish ends the task when the queue is empty, and forgets the actor
// entirely when it holds nothing worth keeping. It reports false when an
// event arrived meanwhile.
func (a *docActor) finish() bool {
	sh := a.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) > 0 {
		return false
	}
	a.running = false
	if a.replica == nil && len(a.peers) == 0 && sh.docs[a.id] == a {
		delete(sh.docs, a.id)
		a.e.stats.DocsActive.Add(-1)
	}
	return true
}

func (a *docActor) load() {
	if now := a.e.cfg.Now(); now.Before(a.quarantined) {
		a.broken = fmt.Errorf("%w: quarantined until %s after crashing the automerge core", ErrBroken, a.quarantined.Format(time.RFC3339))
		return
	}
	// Only the document's chunks: a popular document may have sync states
	// for many thousands of clients, read one by one as peers attach.
	ctx := context.Background()
	var chunks []store.Chunk
	for _, kind := range []string{store.KindSnapshot, store.KindIncremental} {
		cs, err := a.e.cfg.Store.LoadRange(ctx, store.Key{a.id, kind})
		if err != nil {
			a.e.log.Error("load document", "doc", a.id, "err", err)
			a.broken = fmt.Errorf("%w: %v", ErrBroken, err)
			return
		}
		chunks = append(chunks, cs...)
	}
	for _, c := range chunks {
		if check := a.e.cfg.CheckDocument; check != nil {
			if err := check(c.Data); err != nil {
				a.e.log.Error("stored chunk rejected", "doc", a.id, "key", c.Key.String(), "err", err)
				a.broken = fmt.Errorf("%w: %v", ErrBroken, err)
				return
			}
		}
	}
	r, err := a.e.core.Load(a.id, a.e.actor, chunks)
	if err != nil {
		if errors.Is(err, ErrCoreCrashed) {
			// The stored document itself aborts the core: keep it on disk
			// untouched, and stop feeding it to the core for a while.
			a.e.stats.CoreCrashes.Add(1)
			a.quarantined = a.e.cfg.Now().Add(a.e.cfg.QuarantineFor)
		}
		a.e.log.Error("load document", "doc", a.id, "err", err)
		a.broken = fmt.Errorf("%w: %v", ErrBroken, err)
		return
	}
	a.replica = r
	a.heads = nil
	for _, p := range a.peers {
		p.attached = false
		p.sentHeads = nil
	}
	a.e.stats.DocLoads.Add(1)
}

// storedSyncState reads the sync state persisted for a peer's storage id
// (nil when there is none or it cannot be read: syncing then starts afresh).
func (a *docActor) storedSyncState(storageID string) []byte {
	b, err := a.e.cfg.Store.Load(context.Background(), store.Key{a.id, store.KindSyncState, storageID})
	if err != nil {
		a.e.log.Warn("load sync state", "doc", a.id, "storage_id", storageID, "err", err)
		return nil
	}
	return b
}

// dropReplica forgets the loaded replica without persisting anything (the
// core lost it, or its effects could not be made durable).
func (a *docActor) dropReplica() {
	a.lostState = true
	if a.replica != nil {
		a.replica.Close()
	}
	a.replica = nil
	a.heads = nil
	_, release := a.takeDeferred() // dropped with the replica's sync states
	release()
	a.e.untrack(a)
	for _, p := range a.peers {
		p.attached = false
		p.kept = nil
		p.sentHeads = nil
	}
}

func (a *docActor) peer(s *Session) *docPeer {
	p := a.peers[s]
	if p == nil {
		p = &docPeer{key: s.key}
		a.peers[s] = p
		a.byKey[s.key] = s
		i, _ := slices.BinarySearchFunc(a.order, s, bySessionID)
		a.order = slices.Insert(a.order, i, s)
	}
	return p
}

func (a *docActor) dropPeer(s *Session) {
	if _, ok := a.peers[s]; !ok {
		return
	}
	delete(a.peers, s)
	delete(a.byKey, s.key)
	if i, found := slices.BinarySearchFunc(a.order, s, bySessionID); found {
		a.order = slices.Delete(a.order, i, i+1)
	}
}

func bySessionID(x, y *Session) int { return cmp.Compare(x.id, y.id) }

// sortedPeers returns the sessions in a fixed order (by session id), so
// that the messages of a step go out in the same order in every run. The
// slice is the actor's own: callers must not keep or change it.
func (a *docActor) sortedPeers() []*Session { return a.order }

func (a *docActor) process(evs []docEvent) {
	needReplica := false
	evict := false
	for _, ev := range evs {
		switch ev.kind {
		case evMessage:
			needReplica = needReplica || ev.msg.Type != wire.TypeEphemeral
		case evChange, evRead, evAnnounce, evFind:
			needReplica = true
		case evEvict:
			evict = true
		case evRemote:
			// Fan-out needs the replica; otherwise the input is stored as
			// it is (storeRemote).
			needReplica = needReplica || len(a.peers) > 0 || len(a.finders) > 0
		}
	}
	resync := false
	if needReplica && a.replica == nil {
		a.broken = nil
		a.load()
		resync = a.replica != nil && a.lostState
		if a.replica != nil {
			a.lostState = false
		}
	}

	var b batch
	b.in.Publish = a.e.cfg.Replicator != nil
	awaited := false
	var reads []docEvent
	var cold []docEvent
	var gone []*Session
	announced := 0
	var announce []*Session
	var stepping map[PeerKey]bool // peers with a message in b.in.Receive
	for _, s := range a.e.outboundSessions() {
		if a.peers[s] == nil && s.track(a.id) {
			a.peer(s)
			announce = append(announce, s)
		}
	}
	for i, ev := range evs {
		switch ev.kind {
		case evAnnounce:
			announced++
			if a.peers[ev.sess] == nil {
				a.peer(ev.sess)
			}
			announce = append(announce, ev.sess)
		case evUnavailable:
			if p := a.peers[ev.sess]; p != nil {
				p.status = statusUnavailable
			}
		case evFind:
			a.finders = append(a.finders, ev.result)
			// Ask again those that said they did not have it: they may
			// have it by now. Their sync state starts over (see
			// ReplicaInput.Reset), or nothing would be sent.
			for _, s := range a.sortedPeers() {
				if p := a.peers[s]; s.outbound && p.status == statusUnavailable {
					p.status = statusUnknown
					announce = append(announce, s)
					b.in.Reset = append(b.in.Reset, p.key)
				}
			}
		case evMessage:
			s := ev.sess
			if ev.msg.Type == wire.TypeEphemeral {
				a.peer(s)
				a.forwardEphemeral(s, ev.msg)
				continue
			}
			if !a.vet(ev) {
				continue
			}
			p := a.peer(s)
			if ev.msg.Type == wire.TypeRequest && p.status != statusHas {
				p.status = statusWants
			}
			// An acknowledgement may wait unless a message its sender
			// sent before it is in this batch: the waiting ones are
			// received first, and order per peer must hold.
			if !stepping[p.key] && a.deferAck(s, p, ev.msg) {
				// Its frame stays counted against the connection's and
				// the relay's in-flight budgets until it is received.
				a.deferredDone = append(a.deferredDone, ev.done)
				evs[i].done = nil
				continue
			}
			if stepping == nil {
				stepping = map[PeerKey]bool{}
			}
			stepping[p.key] = true
			b.in.Receive = append(b.in.Receive, PeerData{Peer: p.key, Data: ev.msg.Data})
		case evGone:
			if p, ok := a.peers[ev.sess]; ok {
				if p.attached {
					b.in.Detach = append(b.in.Detach, p.key)
				}
				gone = append(gone, ev.sess)
			}
		case evChange:
			if a.broken != nil {
				ev.result <- changeResult{err: a.broken}
				continue
			}
			b.in.Changes = append(b.in.Changes, *ev.change)
			b.changes = append(b.changes, ev)
		case evRead:
			reads = append(reads, ev)
		case evAwaited:
			a.awaiting, awaited = awaitDone, true
		case evRemote:
			if _, ok := a.published[ev.remote.hash]; ok {
				delete(a.published, ev.remote.hash)
				a.e.stats.RemoteSkipped.Add(1)
				ev.remote.done(nil)
				continue
			}
			if a.replica == nil {
				cold = append(cold, ev)
				continue
			}
			b.in.Remote = append(b.in.Remote, ev.remote.data)
			b.remotes = append(b.remotes, ev)
		}
	}
	if len(cold) > 0 {
		a.storeRemote(cold)
	}

	if resync {
		// The replica was lost with its sync states (a failed write, a
		// worker crash): restart syncing with the remotes we dialled (they
		// wait for us to speak first). An evicted replica keeps its sync
		// states and needs nothing.
		for _, s := range a.sortedPeers() {
			if s.outbound && !slices.Contains(announce, s) {
				announce = append(announce, s)
			}
		}
	}
	if a.replica != nil && (!b.idle() || len(a.finders) > 0 || len(announce) > 0 ||
		len(a.deferred) >= maxDeferred || a.deferredLen >= maxDeferredBytes) {
		// Acknowledgements held back are received first, in their order
		// and before anything their senders sent after them.
		held, release := a.takeDeferred()
		defer release()
		b.in.Receive = append(held, b.in.Receive...)
		for _, s := range announce {
			if p := a.peers[s]; p != nil {
				b.in.Always = append(b.in.Always, p.key)
			}
		}
		a.execute(b)
	}
	for _, s := range gone {
		a.dropPeer(s)
	}
	a.settleFinders()
	if announced > 0 {
		a.e.doneAnnouncing(announced)
	}
	if len(gone) > 0 && a.replica != nil || awaited {
		// The peer that had the document may have been the one that left;
		// or the replicator has delivered what it had of the document.
		a.sendUnavailable(a.unavailable())
	}
	if awaited {
		a.awaiting = awaitNone // a later request checks again
	}
	for _, ev := range reads {
		a.read(ev)
	}
	if evict {
		a.evict()
	}
}

func (a *docActor) read(ev docEvent) {
	if a.replica == nil && a.broken == nil {
		a.load()
	}
	if a.broken != nil {
		ev.result <- changeResult{err: a.broken}
		return
	}
	empty := false
	heads, err := a.replica.Read(func(d *crdt.Doc) error {
		if d.Empty() {
			empty = true
			return nil
		}
		return ev.read(d)
	})
	if errors.Is(err, ErrReplicaLost) || errors.Is(err, ErrCoreCrashed) {
		a.dropReplica()
		err = fmt.Errorf("%w: %v", ErrBroken, err)
	}
	if err == nil && empty {
		err = ErrUnavailable
	}
	ev.result <- changeResult{heads: heads, err: err}
}

// batch is one replica step's worth of work and what its results go to.
type batch struct {
	in      ReplicaInput
	changes []docEvent // local changes, one result each
	remotes []docEvent // ApplyRemote inputs, in the order of in.Remote
}

// vet decides whether a sync or request message may reach the replica. The
// first line of defence: the message is parsed and bounded in Go before the
// automerge core sees it. A read-only peer's message that carries changes
// is refused (the peer is told, and stays connected to keep reading).
func (a *docActor) vet(ev docEvent) bool {
	s := ev.sess
	if a.broken != nil {
		s.send(wire.Message{Type: wire.TypeDocUnavailable, SenderID: a.e.peerID, TargetID: s.PeerID(), DocumentID: a.id})
		return false
	}
	changes := 0
	if !a.e.cfg.NoSyncValidation || ev.readOnly {
		sm, err := amcheck.ParseSyncMessage(ev.msg.Data, a.e.cfg.SyncLimits)
		if err != nil {
			s.fail(ClosePolicyViolation, fmt.Errorf("%w: %v", ErrRejected, err))
			return false
		}
		changes = len(sm.Changes)
	}
	if ev.readOnly && changes > 0 {
		a.e.stats.Refused.Add(1)
		s.send(wire.Message{Type: wire.TypeError, SenderID: a.e.peerID, TargetID: s.PeerID(),
			ErrorMessage: fmt.Sprintf("%v (document %s)", ErrReadOnly, a.id)})
		return false
	}
	if check := a.e.cfg.CheckSync; check != nil {
		if err := check(ev.msg.Data); err != nil {
			s.fail(ClosePolicyViolation, fmt.Errorf("%w: %v", ErrRejected, err))
			return false
		}
	}
	return true
}

// maxDeferred and maxDeferredBytes bound the acknowledgements a document
// holds back (count and bytes); past either, the next event makes a step. The frames of held-back
// acknowledgements also stay counted in the in-flight budgets
// (wsrelay's -max-inflight-bytes*), which bound them across documents.
const (
	maxDeferred      = 1024
	maxDeferredBytes = 1 << 20
)

// takeDeferred hands over the held-back acknowledgements and empties the
// hold; release reports their frames done, once the step that receives
// them has run (or they are dropped).
func (a *docActor) takeDeferred() (held []PeerData, release func()) {
	held, done := a.deferred, a.deferredDone
	a.deferred, a.deferredLen, a.deferredDone = nil, 0, nil
	return held, func() {
		for _, d := range done {
			if d != nil {
				d()
			}
		}
	}
}

// deferAck holds back a sync message that only acknowledges: from a client
// (not a remote we dialled, whose acknowledgements settle pending changes),
// announcing exactly our heads, carrying no changes and asking for none,
// after we sent it a message with those heads from this replica. The
// replica would answer it with nothing (Replica.Step skips the generate),
// so receiving it can wait for the next step the document makes anyway:
// the next change, a departure, an eviction. In fan-out, the readers'
// acknowledgements of a change arrive one by one, each a step (a call into
// the core, with process isolation a round trip to a worker) that now
// folds into the step of the next change. The peer's heads and status are
// recorded now, as the step would have.
func (a *docActor) deferAck(s *Session, p *docPeer, m wire.Message) bool {
	if m.Type != wire.TypeSync || s.outbound || a.replica == nil || !p.attached ||
		len(a.heads) == 0 || !p.sentHeads.Equal(a.heads) || len(a.deferred) >= maxDeferred {
		return false
	}
	if sum, ok := crdt.SummarizeSyncMessage(m.Data); !ok || sum.Changes != 0 || sum.Need != 0 || !sum.Heads.Equal(a.heads) {
		return false
	}
	a.deferred = append(a.deferred, PeerData{Peer: p.key, Data: m.Data})
	a.deferredLen += len(m.Data)
	p.theirHeads = a.heads
	p.status = statusHas
	a.e.stats.AcksDeferred.Add(1)
	return true
}

// idle reports whether the batch asks nothing of the replica.
func (b batch) idle() bool {
	in := b.in
	return len(in.Receive)+len(in.Remote)+len(in.Changes)+len(in.RawChanges)+len(in.Detach)+len(in.Always) == 0 && !in.Flush
}

// callStep attaches the peers the replica does not know yet, names the
// fan-out set, and runs the step; a replica lost to another document's
// crash is reloaded once.
func (a *docActor) callStep(in ReplicaInput) (ReplicaOutput, error) {
	for attempt := 0; ; attempt++ {
		in.Attach, in.Generate = nil, nil
		for _, s := range a.sortedPeers() {
			p := a.peers[s]
			in.Generate = append(in.Generate, p.key)
			if p.attached {
				continue
			}
			init := PeerInit{Peer: p.key, SyncState: p.kept, Resumed: p.kept != nil}
			if !s.ephemeral && s.storageID != "" {
				init.StorageID = s.storageID
				if init.SyncState == nil {
					init.SyncState = a.storedSyncState(s.storageID)
				}
			}
			in.Attach = append(in.Attach, init)
		}
		out, err := a.replica.Step(in)
		if err == nil {
			for _, p := range a.peers {
				p.attached = true
				p.kept = nil
			}
			return out, nil
		}
		if !errors.Is(err, ErrReplicaLost) || attempt > 0 {
			return out, err
		}
		a.dropReplica()
		a.load()
		if a.replica == nil {
			return out, a.broken
		}
	}
}

// execute runs a batch. When the core crashes on it, the batch is split
// and replayed one message at a time on a reloaded replica, so that the
// one input that aborts the core is found, discarded and its sender
// disconnected, and every other input still lands.
func (a *docActor) execute(b batch) {
	out, err := a.callStep(b.in)
	if err == nil {
		a.commit(b, out)
		return
	}
	if !errors.Is(err, ErrCoreCrashed) {
		a.e.log.Error("replica step", "doc", a.id, "err", err)
		a.abandon(err, b)
		return
	}
	a.e.stats.CoreCrashes.Add(1)
	a.e.log.Warn("automerge core crashed; replaying the batch input by input", "doc", a.id, "inputs", len(b.in.Receive)+len(b.in.Changes), "err", err)
	a.dropReplica()
	parts := b.split()
	if len(parts) == 1 {
		a.blame(parts[0], err)
		return
	}
	for _, part := range parts {
		if a.replica == nil {
			a.load()
			if a.replica == nil {
				a.abandon(a.broken, part)
				continue
			}
		}
		out, err := a.callStep(part.in)
		switch {
		case err == nil:
			a.commit(part, out)
		case errors.Is(err, ErrCoreCrashed):
			a.dropReplica()
			a.blame(part, err)
		default:
			a.abandon(err, part)
		}
	}
}

// split turns a batch into one part per input: each remote input alone,
// then the local changes and departures, then each received message alone.
func (b batch) split() []batch {
	var parts []batch
	for i, r := range b.in.Remote {
		var p batch
		p.in.Remote, p.in.Publish = [][]byte{r}, b.in.Publish
		p.remotes = b.remotes[i : i+1]
		parts = append(parts, p)
	}
	first := batch{changes: b.changes}
	first.in.Changes, first.in.Detach, first.in.Flush = b.in.Changes, b.in.Detach, b.in.Flush
	first.in.Publish = b.in.Publish
	if len(first.in.Changes)+len(first.in.Detach) > 0 || len(b.in.Receive)+len(b.in.Remote) == 0 {
		parts = append(parts, first)
	}
	for _, m := range b.in.Receive {
		var p batch
		p.in.Receive, p.in.Publish = []PeerData{m}, b.in.Publish
		parts = append(parts, p)
	}
	return parts
}

// blame handles the one input that aborted the core: its sender is told,
// disconnected and refused for a while; a local change fails.
func (a *docActor) blame(b batch, err error) {
	for _, m := range b.in.Receive {
		if s := a.byKey[m.Peer]; s != nil {
			a.e.ban(s.PeerID())
			a.e.log.Warn("discarded a message that aborts the automerge core", "doc", a.id, "peer", s.PeerID(), "bytes", len(m.Data))
			s.fail(ClosePolicyViolation, fmt.Errorf("%w: it aborts the automerge core; discarded", ErrRejected))
		}
	}
	for _, ev := range b.changes {
		ev.result <- changeResult{err: fmt.Errorf("engine: change aborted the automerge core: %w", err)}
	}
	for _, ev := range b.remotes {
		a.e.log.Warn("discarded remote changes that abort the automerge core", "doc", a.id, "bytes", len(ev.remote.data))
		ev.remote.done(fmt.Errorf("%w: it aborts the automerge core: %v", ErrRejected, err))
	}
}

// commit makes a step's writes durable, then sends its messages.
func (a *docActor) commit(b batch, out ReplicaOutput) {
	for _, rj := range out.Rejected {
		if s := a.byKey[rj.Peer]; s != nil {
			s.fail(ClosePolicyViolation, rj.Err)
		}
	}
	for k, hs := range out.TheirHeads {
		if s := a.byKey[k]; s != nil {
			a.peers[s].theirHeads = hs
			if len(hs) > 0 {
				a.peers[s].status = statusHas
			}
		}
	}
	pending := a.trackPending(b, &out)
	if rep := a.e.cfg.Replicator; rep != nil && len(out.Published) > 0 {
		// Published before the local write: see Replicator.
		start := a.e.cfg.Now()
		if err := rep.Publish(context.Background(), a.id, out.Published); err != nil {
			a.e.stats.PublishErrors.Add(1)
			a.e.log.Error("publish changes", "doc", a.id, "bytes", len(out.Published), "err", err)
			a.abandon(fmt.Errorf("%w: %v", ErrNotPublished, err), b)
			return
		}
		a.e.stats.Published.Add(1)
		a.e.stats.PublishNanos.Add(int64(a.e.cfg.Now().Sub(start)))
	}
	if len(out.Saves) > 0 {
		start := a.e.cfg.Now()
		if err := a.e.cfg.Store.Apply(context.Background(), out.Saves); err != nil {
			a.e.stats.StoreErrors.Add(1)
			a.e.log.Error("persist document", "doc", a.id, "err", err)
			a.abandon(err, b)
			return
		}
		a.e.stats.Saves.Add(1)
		a.e.stats.observeSave(a.e.cfg.Now().Sub(start))
	}
	if len(out.Published) > 0 && a.e.cfg.Replicator != nil {
		a.notePublished(out.Published)
	}
	for i, ev := range b.remotes {
		var err error
		if i < len(out.RemoteErrors) && out.RemoteErrors[i] != nil {
			err = fmt.Errorf("%w: %v", ErrRejected, out.RemoteErrors[i])
		} else {
			a.e.stats.RemoteApplied.Add(1)
		}
		ev.remote.done(err)
	}
	// Durable: now the peers may learn of the new heads.
	a.empty = out.Empty
	a.heads = out.Heads
	unavailable := a.unavailable()
	for _, m := range out.Messages {
		s := a.byKey[m.Peer]
		if s == nil || unavailable[s] || a.awaitingFor(s) {
			continue
		}
		typ := wire.TypeSync
		if out.Empty && s.outbound && a.peers[s].status != statusHas {
			// We have nothing: ask, so that the remote says
			// doc-unavailable rather than wait (automerge-repo does this).
			typ = wire.TypeRequest
		}
		s.send(wire.Message{Type: typ, SenderID: a.e.peerID, TargetID: s.PeerID(), DocumentID: a.id, Data: m.Data})
		if hs, ok := crdt.SyncMessageHeads(m.Data); ok {
			a.peers[s].sentHeads = hs
		}
	}
	a.sendUnavailable(unavailable)
	if pending != nil {
		a.e.setPending(a.id, *pending)
	}
	// Local changes are answered last: by then the change is durable, sent,
	// and counted as pending, so a WaitSynced after Change waits for it.
	for i, ev := range b.changes {
		var err error
		if i < len(out.ChangeErrors) {
			err = out.ChangeErrors[i]
		}
		ev.result <- changeResult{heads: out.Heads, err: err}
	}
	if !out.Empty {
		for _, f := range a.finders {
			f <- changeResult{heads: out.Heads}
		}
		a.finders = nil
	}
	// Subscribers hear of the changes this engine accepted (from its peers
	// and its API), not of those a Replicator delivered: a cluster's hooks
	// run once, on the relay that accepted the change.
	if out.HeadsChanged && (len(b.remotes) == 0 || len(out.Published) > 0) {
		ev := ChangeEvent{DocID: a.id, Heads: out.Heads, Local: len(b.changes) > 0}
		seen := map[string]bool{}
		for _, m := range b.in.Receive {
			if s := a.byKey[m.Peer]; s != nil && s.principal != nil && !seen[s.principal.ID] {
				seen[s.principal.ID] = true
				ev.From = append(ev.From, s.principal.ID)
			} else if s != nil && s.principal == nil && !seen[""] {
				seen[""] = true
				ev.From = append(ev.From, "")
			}
		}
		slices.Sort(ev.From)
		a.e.notify(ev)
	}
	a.e.touch(a, int64(out.SavedBytes))
}

// trackPending decides whether the document holds local changes that no
// dialled remote has acknowledged, adding the persistent mark's write or
// removal to the step's saves. nil means: not tracked, unchanged.
func (a *docActor) trackPending(b batch, out *ReplicaOutput) *bool {
	outbound := a.e.outboundSessions()
	local := len(b.changes) > 0 && out.HeadsChanged
	if !local && len(outbound) == 0 && !a.e.cfg.TrackPending {
		return nil
	}
	acked := false
	for _, s := range outbound {
		if p := a.peers[s]; p != nil && p.theirHeads != nil && p.theirHeads.Equal(out.Heads) {
			acked = true
		}
	}
	a.e.syncMu.Lock()
	was := a.e.pending[a.id]
	a.e.syncMu.Unlock()
	pending := !acked && (local || was)
	if a.e.cfg.TrackPending && pending != was {
		key := store.Key{pendingPrefix, a.id}
		if pending {
			out.Saves = append(out.Saves, store.Op{Key: key, Data: []byte{1}})
		} else {
			out.Saves = append(out.Saves, store.Op{Key: key, Delete: true})
		}
	}
	return &pending
}

// settleFinders answers Find calls that cannot be satisfied: the document
// is empty here and no connected remote has it.
func (a *docActor) settleFinders() {
	if len(a.finders) == 0 {
		return
	}
	var err error
	switch {
	case a.broken != nil:
		err = a.broken
	case a.replica != nil && !a.empty:
		err = nil
	default:
		err = ErrUnavailable
		for _, s := range a.e.outboundSessions() {
			if p := a.peers[s]; p == nil || p.status != statusUnavailable {
				return // still asking someone
			}
		}
		if a.awaitRemote() {
			return // the replicator may still deliver it
		}
	}
	for _, f := range a.finders {
		f <- changeResult{err: err}
	}
	a.finders = nil
}

// unavailable marks, and returns, the peers to tell doc-unavailable: as in
// automerge-repo, when the document has no changes here and no connected
// peer announced that it has them, every peer that asked for it is told.
// A peer that does have it may still upload it; the askers then get it
// pushed, as they stay in the document's peer set.
func (a *docActor) unavailable() map[*Session]bool {
	if !a.empty {
		return nil
	}
	for _, p := range a.peers {
		if p.status == statusHas {
			return nil
		}
	}
	wants := false
	for _, p := range a.peers {
		wants = wants || p.status == statusWants
	}
	if wants && a.awaitRemote() {
		return nil // answered once the replicator has delivered what it has
	}
	var out map[*Session]bool
	for s, p := range a.peers {
		if p.status == statusWants {
			p.status = statusUnavailable
			if out == nil {
				out = map[*Session]bool{}
			}
			out[s] = true
		}
	}
	return out
}

func (a *docActor) sendUnavailable(to map[*Session]bool) {
	if len(to) == 0 {
		return
	}
	for _, s := range a.sortedPeers() {
		if to[s] {
			s.send(wire.Message{Type: wire.TypeDocUnavailable, SenderID: a.e.peerID, TargetID: s.PeerID(), DocumentID: a.id})
		}
	}
}

// abandon handles a step whose effects cannot be made durable: the replica
// is dropped (it may hold changes the store does not), nothing is sent,
// local changes fail, and the peers whose messages were in the batch are
// disconnected so that they sync again from what is durable.
func (a *docActor) abandon(err error, b batch) {
	a.dropReplica()
	for _, ev := range b.changes {
		ev.result <- changeResult{err: fmt.Errorf("engine: change not persisted: %w", err)}
	}
	for _, ev := range b.remotes {
		ev.remote.done(fmt.Errorf("engine: remote changes not persisted: %w", err))
	}
	for _, m := range b.in.Receive {
		if s := a.byKey[m.Peer]; s != nil {
			s.conn.Close(CloseInternalError, "storage error; reconnect to resync")
			s.Closed()
		}
	}
}

func (a *docActor) forwardEphemeral(from *Session, m wire.Message) {
	for _, s := range a.sortedPeers() {
		if s == from {
			continue
		}
		fwd := m
		fwd.TargetID = s.PeerID()
		s.send(fwd)
	}
}

// evict drops the loaded replica, keeping each peer's sync state so that
// syncing resumes where it was when the document is loaded again.
func (a *docActor) evict() {
	if a.replica == nil {
		a.e.untrack(a)
		return
	}
	held, release := a.takeDeferred()
	out, err := a.replica.Step(ReplicaInput{Flush: true, Receive: held})
	release()
	if err == nil && len(out.Saves) > 0 {
		err = a.e.cfg.Store.Apply(context.Background(), out.Saves)
	}
	if err != nil {
		a.e.log.Warn("persist sync states on eviction", "doc", a.id, "err", err)
	}
	states, err := a.replica.SyncStates()
	if err != nil {
		states = nil
	}
	a.dropReplica()
	a.lostState = false // the sync states are kept
	for _, p := range a.peers {
		p.kept = states[p.key]
	}
	a.e.stats.Evictions.Add(1)
}

// storeRemote writes ApplyRemote inputs of a document that is not loaded
// (and that no peer has open) as incremental chunks, in the automerge-repo
// layout, without loading it: the next load applies them. Input the
// document already holds is harmless there (automerge skips known changes).
func (a *docActor) storeRemote(evs []docEvent) {
	ops := make([]store.Op, 0, len(evs))
	for _, ev := range evs {
		ops = append(ops, store.Op{Key: store.IncrementalKey(a.id, hex.EncodeToString(ev.remote.hash[:])), Data: ev.remote.data})
	}
	err := a.e.cfg.Store.Apply(context.Background(), ops)
	if err != nil {
		a.e.stats.StoreErrors.Add(1)
		a.e.log.Error("persist remote changes", "doc", a.id, "err", err)
		err = fmt.Errorf("engine: remote changes not persisted: %w", err)
	} else {
		a.e.stats.RemoteStored.Add(int64(len(evs)))
	}
	for _, ev := range evs {
		ev.remote.done(err)
	}
}
