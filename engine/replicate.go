package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/amsync/amsync/crdt/amcheck"
	"github.com/amsync/amsync/engine/wire"
)

// ErrNotPublished wraps a Replicator.Publish failure: the step that made
// the changes was not persisted nor acknowledged.
var ErrNotPublished = errors.New("engine: changes not published")

// Replicator carries the changes an engine accepts to the other engines
// that serve the same documents (package engine/cluster does it through
// NATS JetStream). It is how "acknowledged" reaches beyond one machine.
//
// With a Replicator, a document step commits in this order:
//
//  1. the replica steps; the changes that peers and the embedding API
//     added in it (never those that came through ApplyRemote) are handed
//     to Publish;
//  2. the step's writes are made durable in the Store;
//  3. its messages are sent.
//
// A Publish error is handled like a failed write: nothing of the step is
// written or sent, local changes fail, and the peers whose messages were in
// the batch are disconnected so that they sync again (their changes are
// then published again). Publishing before the local write means that
// every change in the store is in the replicator too: a crash between the
// two leaves a change that the replicator delivers back, never one the
// store holds unpublished and would later acknowledge.
type Replicator interface {
	// Publish returns once changes (automerge change chunks of document
	// docID, concatenated) are durable in the replicator. It runs on the
	// document's task and blocks only that document.
	Publish(ctx context.Context, docID string, changes []byte) error
}

// remoteInput is one ApplyRemote call on its way to the document's task.
type remoteInput struct {
	data []byte
	hash [32]byte
	done func(error)
}

// ApplyRemote queues changes that a Replicator delivered for document
// docID: automerge change chunks (or a saved document). They are validated
// with crdt/amcheck like any peer input, then, when the document is loaded
// here or peers have it open, applied to it, persisted and synced to those
// peers; otherwise they are written to the store as an incremental chunk
// without loading the document, so that a feed of changes to idle
// documents costs one small write each. They are never handed back to the
// Replicator. Changes the document already holds are no-ops, and input
// that this engine published itself (the same bytes, since it last loaded
// the document) is skipped. Subscribe and Config.OnChange do not hear of
// these changes: they announce what this engine accepted, so that in a
// cluster a hook runs once, on the relay that accepted the change.
//
// done is called exactly once with the outcome, on the document's task
// once the input is durable here (or at once when it is refused); it must
// not block nor call the engine. An error wrapping ErrRejected is
// permanent (the input is invalid); any other error is transient (a failed
// write) and the caller should deliver the input again.
func (e *Engine) ApplyRemote(docID string, changes []byte, done func(error)) {
	if _, err := wire.ParseDocumentID(docID); err != nil {
		done(fmt.Errorf("%w: %v", ErrRejected, err))
		return
	}
	if len(changes) == 0 {
		done(nil)
		return
	}
	if _, err := amcheck.ParseDocument(changes, e.cfg.SyncLimits); err != nil {
		done(fmt.Errorf("%w: %v", ErrRejected, err))
		return
	}
	if check := e.cfg.CheckDocument; check != nil {
		if err := check(changes); err != nil {
			done(fmt.Errorf("%w: %v", ErrRejected, err))
			return
		}
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		done(ErrClosed)
		return
	}
	e.enqueue(docID, docEvent{kind: evRemote, remote: &remoteInput{data: changes, hash: sha256.Sum256(changes), done: done}})
}

// maxPublishedMemo bounds the hashes a document remembers of what it
// published, waiting for the replicator's feed to bring them back.
const maxPublishedMemo = 256

// notePublished remembers the hash of changes this document published and
// wrote, so that their return through ApplyRemote costs nothing.
func (a *docActor) notePublished(data []byte) {
	if a.published == nil || len(a.published) >= maxPublishedMemo {
		a.published = map[[32]byte]struct{}{}
	}
	a.published[sha256.Sum256(data)] = struct{}{}
}

// Awaiter is a Replicator that can tell whether it holds changes of a
// document that have not reached ApplyRemote here yet (this engine is
// behind the replicator's feed). Before the engine tells a peer, or a Find,
// that a document it has no changes of is unavailable, it awaits them, so
// that a document created elsewhere a moment ago is served, not denied.
type Awaiter interface {
	// Await returns once every change of docID that the replicator held
	// when it was called has been applied through ApplyRemote; found is
	// false when it held none.
	Await(ctx context.Context, docID string) (found bool, err error)
}

// awaitTimeout bounds one Awaiter.Await: past it, the document is
// answered unavailable (and still pushed to the askers if it arrives).
const awaitTimeout = 30 * time.Second

type awaitState uint8

const (
	awaitNone    awaitState = iota
	awaitRunning            // an Await call is out; answers wait for it
	awaitDone               // it returned: answer with what is here now
)

// awaitRemote reports whether a doc-unavailable answer must wait for the
// Replicator, starting its check when none is out.
func (a *docActor) awaitRemote() bool {
	aw, ok := a.e.cfg.Replicator.(Awaiter)
	if !ok {
		return false
	}
	switch a.awaiting {
	case awaitDone:
		return false
	case awaitRunning:
		return true
	}
	a.awaiting = awaitRunning
	e, id := a.e, a.id
	e.tasks.Add(1)
	e.cfg.Go(func() {
		defer e.tasks.Done()
		ctx, cancel := context.WithTimeout(e.life, awaitTimeout)
		defer cancel()
		if _, err := aw.Await(ctx, id); err != nil && e.life.Err() == nil {
			e.log.Warn("await the replicator before doc-unavailable", "doc", id, "err", err)
		}
		e.enqueue(id, docEvent{kind: evAwaited})
	})
	return true
}

// awaitingFor reports whether s asked for the document while it is empty
// here and the Replicator is being asked for it: s hears nothing (not an
// empty sync message) until the answer, doc-unavailable or the document.
func (a *docActor) awaitingFor(s *Session) bool {
	if a.awaiting != awaitRunning || !a.empty {
		return false
	}
	p := a.peers[s]
	return p != nil && p.status == statusWants
}
