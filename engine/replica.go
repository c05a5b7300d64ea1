package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
)

// PeerKey names one connected peer inside a replica. It is unique per
// connection, so that a peer id that reconnects on a new socket is a new
// key and the old one can be removed without touching the new.
type PeerKey string

// Replica is the automerge side of one document: the document itself, one
// sync state per peer, and what has been saved. It is a pure state machine:
// Step takes a batch of inputs and returns effects as data (store writes
// and sync messages); it does no I/O, reads no clock and starts no
// goroutine. It is the part of the engine that touches the automerge core,
// so it is the unit that can be moved into an isolated worker process.
//
// A Replica is not safe for concurrent use.
type Replica struct {
	id    string
	actor crdt.ActorID
	doc   *crdt.Doc
	peers map[PeerKey]*replicaPeer

	// heads are the document's heads, refreshed whenever a step does
	// something that can change them (a heads query is a call into the
	// core, and most steps, acknowledgements, change nothing).
	heads      crdt.Heads
	savedHeads crdt.Heads
	chunks     map[string]savedChunk // key.String() -> chunk, snapshot and incremental
	snapBytes  int
	incBytes   int
}

type replicaPeer struct {
	sync      *crdt.SyncState
	storageID string
	persisted []byte // last sync state written to the store
	told      bool   // we have sent this peer a message since it attached
	// dirty: the sync state may differ from persisted (a message was
	// received since it was last encoded, or it is new). Only receiving
	// changes what automerge persists (the shared heads).
	dirty bool
	// responded: automerge has generated a message from this sync state
	// (its have_responded flag).
	responded bool
}

type savedChunk struct {
	key  store.Key
	size int
	snap bool
}

// PeerInit introduces a peer to a replica, with the sync state to resume
// from (nil to start afresh).
type PeerInit struct {
	Peer      PeerKey
	StorageID string // persist the sync state under it; empty: do not
	SyncState []byte
	// Resumed marks a sync state kept in memory across an eviction: the
	// conversation with the peer goes on where it was.
	Resumed bool
}

// PeerData is a sync message from or to one peer.
type PeerData struct {
	Peer PeerKey
	Data []byte
}

// ReplicaInput is one batch of work for a replica. The order of fields is
// the order of processing: attach, reset, remote, changes, receive,
// detach, generate.
type ReplicaInput struct {
	// Attach introduces peers before their messages are processed. A peer
	// already attached is left as it is.
	Attach []PeerInit
	// Reset restarts the sync state of attached peers: a remote that said
	// doc-unavailable left our request "in flight" in automerge's state,
	// and automerge sends nothing more while a message is in flight; to
	// ask it again the conversation starts over.
	Reset []PeerKey
	// Remote holds changes a Replicator delivered (automerge change or
	// document chunks), applied first and never part of Published.
	Remote [][]byte
	// Publish asks for Published: the changes this step made or received
	// from peers, beyond those in Remote.
	Publish bool
	// Changes are local changes, applied in order (embedding API). They
	// hold functions, so they cannot cross a process boundary: a Core that
	// isolates replicas turns them into RawChanges first.
	Changes []LocalChange `cbor:"-"`
	// RawChanges are changes in automerge's binary format made elsewhere
	// (from Changes, by an isolating Core), applied after Changes.
	RawChanges [][]byte
	// Receive holds sync messages from attached peers, in arrival order.
	Receive []PeerData
	// Detach removes peers; their sync states are persisted first when
	// they have a storage id.
	Detach []PeerKey
	// Generate lists the peers to generate a sync message for when the
	// document's heads changed in this batch (the fan-out set). Peers that
	// sent a message in this batch always get a reply when one is due.
	Generate []PeerKey
	// Always lists peers to generate for even when the heads did not change
	// (for example a peer that was told doc-unavailable before).
	Always []PeerKey
	// Flush persists every attached peer's sync state (before eviction).
	Flush bool
}

// LocalChange is a change made through the embedding API.
type LocalChange struct {
	At      time.Time
	Message string
	Fn      func(tx *crdt.Tx) error
}

// Rejected is a sync message the replica could not apply.
type Rejected struct {
	Peer PeerKey
	Err  error
}

// ReplicaOutput is what a Step asks of its runtime: write Saves durably,
// then send Messages. Nothing in Messages may be sent before Saves are on
// disk: that is the durability rule.
type ReplicaOutput struct {
	Saves    []store.Op
	Messages []PeerData
	Rejected []Rejected
	// TheirHeads holds, per peer that sent a message, the heads it
	// announced (a peer announcing heads has the document; a server
	// announcing our heads has acknowledged our changes).
	TheirHeads map[PeerKey]crdt.Heads
	// ChangeErrors holds the error of each local change, in order.
	ChangeErrors []error
	// RemoteErrors holds the error of each Remote input, in order.
	RemoteErrors []error
	// Published (when the input asked with Publish) holds the changes the
	// step added beyond its Remote input, concatenated; nil when none.
	Published    []byte
	Heads        crdt.Heads
	HeadsChanged bool
	Empty        bool
	// SavedBytes is the size of what the document occupies in the store.
	SavedBytes int
}

// ErrRejected wraps the reason a peer's sync message was not applied.
var ErrRejected = errors.New("engine: sync message rejected")

// LoadReplica builds a replica from the chunks stored under the document's
// prefix (snapshot and incremental chunks; other kinds are ignored). actor
// writes local changes.
func LoadReplica(id string, actor crdt.ActorID, chunks []store.Chunk) (*Replica, error) {
	r := &Replica{id: id, actor: actor, peers: map[PeerKey]*replicaPeer{}, chunks: map[string]savedChunk{}}
	var snaps, incs [][]byte
	for _, c := range chunks {
		if len(c.Key) != 3 || c.Key[0] != id {
			continue
		}
		switch c.Key[1] {
		case store.KindSnapshot:
			snaps = append(snaps, c.Data)
			r.snapBytes += len(c.Data)
			r.chunks[c.Key.String()] = savedChunk{key: c.Key, size: len(c.Data), snap: true}
		case store.KindIncremental:
			incs = append(incs, c.Data)
			r.incBytes += len(c.Data)
			r.chunks[c.Key.String()] = savedChunk{key: c.Key, size: len(c.Data)}
		}
	}
	var all []byte
	for _, b := range snaps {
		all = append(all, b...)
	}
	for _, b := range incs {
		all = append(all, b...)
	}
	doc, err := crdt.Load(all, actor)
	if err != nil {
		return nil, fmt.Errorf("engine: load document %s: %w", id, err)
	}
	r.doc = doc
	r.heads = doc.Heads()
	if len(all) > 0 {
		r.savedHeads = r.heads
	}
	return r, nil
}

// Doc gives read access to the document for the embedding API. Callers must
// not keep it beyond the current step.
func (r *Replica) Doc() *crdt.Doc { return r.doc }

// Heads returns the document's heads.
func (r *Replica) Heads() crdt.Heads { return r.heads }

// SyncStates returns the encoded sync state of every attached peer.
func (r *Replica) SyncStates() map[PeerKey][]byte {
	out := make(map[PeerKey][]byte, len(r.peers))
	for k, p := range r.peers {
		out[k] = p.sync.Encode()
	}
	return out
}

// Step processes one batch of input and returns its effects.
func (r *Replica) Step(in ReplicaInput) (ReplicaOutput, error) {
	var out ReplicaOutput
	for _, a := range in.Attach {
		if _, ok := r.peers[a.Peer]; ok {
			continue
		}
		p := &replicaPeer{storageID: a.StorageID, told: a.Resumed}
		if len(a.SyncState) > 0 {
			s, err := crdt.LoadSyncState(r.doc, a.SyncState)
			if err == nil {
				p.sync = s
				p.persisted = a.SyncState
			}
		}
		if p.sync == nil {
			p.sync = crdt.NewSyncState(r.doc)
			p.dirty = true
		}
		r.peers[a.Peer] = p
	}

	for _, k := range in.Reset {
		if p, ok := r.peers[k]; ok {
			p.sync = crdt.NewSyncState(r.doc)
			p.told, p.responded, p.dirty = false, false, true
		}
	}

	before := r.heads
	for _, raw := range in.Remote {
		out.RemoteErrors = append(out.RemoteErrors, r.doc.ApplyChanges(raw))
	}
	if len(in.Remote) > 0 {
		r.heads = r.doc.Heads()
	}
	own := r.heads
	for _, c := range in.Changes {
		_, err := r.doc.Change(c.At, c.Message, c.Fn)
		out.ChangeErrors = append(out.ChangeErrors, err)
	}

	for _, raw := range in.RawChanges {
		out.ChangeErrors = append(out.ChangeErrors, r.doc.ApplyChanges(raw))
	}
	if len(in.Changes) > 0 || len(in.RawChanges) > 0 {
		r.heads = r.doc.Heads()
	}

	// Every message gets its own reply, generated right after it is
	// received, as automerge's protocol expects of a peer (one reply for
	// several messages leaves the earlier ones in flight on the sender's
	// side, and it then stops asking for what it misses).
	for _, m := range in.Receive {
		p, ok := r.peers[m.Peer]
		if !ok {
			out.Rejected = append(out.Rejected, Rejected{Peer: m.Peer, Err: fmt.Errorf("%w: peer %s not attached", ErrRejected, m.Peer)})
			continue
		}
		sum, _ := crdt.SummarizeSyncMessage(m.Data)
		p.dirty = true
		theirs, err := p.sync.Receive(m.Data)
		if sum.Changes != 0 {
			// It carried changes (or could not be counted): they may
			// have been applied, even when Receive then failed.
			r.heads = r.doc.Heads()
		}
		if err != nil {
			out.Rejected = append(out.Rejected, Rejected{Peer: m.Peer, Err: fmt.Errorf("%w: %v", ErrRejected, err)})
			continue
		}
		if out.TheirHeads == nil {
			out.TheirHeads = map[PeerKey]crdt.Heads{}
		}
		out.TheirHeads[m.Peer] = theirs
		if sum.Changes == 0 && sum.Need == 0 && p.responded && theirs.Equal(r.heads) {
			// An acknowledgement of everything we have from a peer we
			// have answered before: automerge's generate would return
			// nothing (it has responded, the heads are equal, and a peer
			// holding all our changes has none to be sent), so the call
			// is skipped. In fan-out that is one core call per reader
			// per change.
			continue
		}
		msg, ok := p.sync.Generate()
		if sum.Need > 0 && (!ok || crdt.SyncMessageChanges(msg) == 0 && r.hasAny(crdt.SyncMessageNeed(m.Data))) {
			msg, ok = r.answerNeed(p, m.Data)
		}
		if ok {
			out.Messages = append(out.Messages, PeerData{Peer: m.Peer, Data: msg})
			p.told, p.responded = true, true
		} else if !p.told {
			// In sync already (it reconnected holding exactly our heads):
			// automerge says nothing then, but the peer must hear our
			// heads to know we have its changes.
			out.Messages = append(out.Messages, PeerData{Peer: m.Peer, Data: crdt.HeadsMessage(r.heads)})
			p.told = true
		}
	}

	after := r.heads
	out.Heads = after
	out.Empty = len(after) == 0
	out.HeadsChanged = !before.Equal(after)
	if in.Publish && !own.Equal(after) {
		pub, err := r.doc.ChangesSince(own)
		if err != nil {
			return out, fmt.Errorf("engine: changes to publish of %s: %w", r.id, err)
		}
		out.Published = pub
	}

	if !after.Equal(r.savedHeads) && len(after) > 0 {
		ops, err := r.save(after)
		if err != nil {
			return out, err
		}
		out.Saves = append(out.Saves, ops...)
	}

	for _, k := range in.Detach {
		p, ok := r.peers[k]
		if !ok {
			continue
		}
		out.Saves = append(out.Saves, r.persistSync(k, p)...)
		delete(r.peers, k)
	}

	targets := map[PeerKey]bool{}
	if out.HeadsChanged {
		for _, k := range in.Generate {
			targets[k] = true
		}
	}
	for _, k := range in.Always {
		targets[k] = true
	}
	keys := make([]PeerKey, 0, len(targets))
	for k := range targets {
		if _, ok := r.peers[k]; ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := r.peers[k]
		if msg, ok := p.sync.Generate(); ok {
			out.Messages = append(out.Messages, PeerData{Peer: k, Data: msg})
			p.told, p.responded = true, true
		}
	}

	// Sync states ride along with document saves (they are cheap in the
	// same batch), and are written on their own when asked to flush.
	if len(out.Saves) > 0 || in.Flush {
		var pk []PeerKey
		for k, p := range r.peers {
			if p.dirty {
				pk = append(pk, k)
			}
		}
		slices.Sort(pk)
		for _, k := range pk {
			out.Saves = append(out.Saves, r.persistSync(k, r.peers[k])...)
		}
	}
	out.SavedBytes = r.snapBytes + r.incBytes
	return out, nil
}

// hasAny reports whether the document holds any of the changes hs.
func (r *Replica) hasAny(hs []crdt.Hash) bool {
	for _, h := range hs {
		if r.doc.HasChange(h) {
			return true
		}
	}
	return false
}

// answerNeed answers a peer that asks for changes by hash when automerge
// generated nothing, or a reply without a change although we hold some of
// those asked for. The second case is the same stall in another form:
// automerge leaves out of a reply every change it has recorded as sent in
// this conversation, even when the peer says it lacks it; if the message
// that carried it never arrived whole (simulation seed 1004, after a
// timing change), both sides answer each other for ever, each holding a
// change the other lacks. automerge keeps a message "in flight" until the peer's
// heads cover the changes it sent, and says nothing while one is; but when
// it left out a dependency of what it sent (the peer's bloom filter gave a
// false positive), the peer can apply none of it and asks for the missing
// change by hash, and the two wait for each other forever (simulation
// seed 1646). The conversation restarts from the shared heads (the part
// of the state that is persisted) and the message is received again;
// changes it carries are already applied, and the reply now includes what
// the peer needs.
func (r *Replica) answerNeed(p *replicaPeer, data []byte) ([]byte, bool) {
	fresh, err := crdt.LoadSyncState(r.doc, p.sync.Encode())
	if err != nil {
		return nil, false
	}
	if _, err := fresh.Receive(data); err != nil {
		return nil, false
	}
	p.sync = fresh
	p.responded = false
	return fresh.Generate()
}

func (r *Replica) persistSync(k PeerKey, p *replicaPeer) []store.Op {
	if !p.dirty || p.storageID == "" || len(r.savedHeads) == 0 {
		return nil
	}
	p.dirty = false
	enc := p.sync.Encode()
	if slices.Equal(enc, p.persisted) {
		return nil
	}
	p.persisted = enc
	return []store.Op{{Key: store.Key{r.id, store.KindSyncState, p.storageID}, Data: enc}}
}

// shouldCompact follows automerge-repo's StorageSubsystem: rewrite a full
// snapshot when the snapshots are small, when incrementals outweigh them,
// or when nothing was saved before.
func (r *Replica) shouldCompact() bool {
	return len(r.savedHeads) == 0 || r.snapBytes < 1024 || r.incBytes >= r.snapBytes
}

func (r *Replica) save(heads crdt.Heads) ([]store.Op, error) {
	var ops []store.Op
	if r.shouldCompact() {
		data := r.doc.Save()
		key := store.Key{r.id, store.KindSnapshot, heads.Key()}
		ops = append(ops, store.Op{Key: key, Data: data})
		old := make([]string, 0, len(r.chunks))
		for k := range r.chunks {
			if k != key.String() {
				old = append(old, k)
			}
		}
		slices.Sort(old)
		for _, k := range old {
			ops = append(ops, store.Op{Key: r.chunks[k].key, Delete: true})
		}
		r.chunks = map[string]savedChunk{key.String(): {key: key, size: len(data), snap: true}}
		r.snapBytes, r.incBytes = len(data), 0
	} else {
		data, err := r.doc.ChangesSince(r.savedHeads)
		if err != nil {
			return nil, fmt.Errorf("engine: save document %s: %w", r.id, err)
		}
		sum := sha256.Sum256(data)
		key := store.Key{r.id, store.KindIncremental, hex.EncodeToString(sum[:])}
		ops = append(ops, store.Op{Key: key, Data: data})
		r.chunks[key.String()] = savedChunk{key: key, size: len(data)}
		r.incBytes += len(data)
	}
	r.savedHeads = heads
	return ops, nil
}

// String describes the replica for logs.
func (r *Replica) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replica %s heads=%d peers=%d chunks=%d bytes=%d", r.id, len(r.savedHeads), len(r.peers), len(r.chunks), r.snapBytes+r.incBytes)
	return b.String()
}
