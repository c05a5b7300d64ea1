package engine

import (
	"errors"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
)

// Errors a Core reports. The actor recovers from both by reloading the
// document from the store, which holds everything that was acknowledged.
var (
	// ErrCoreCrashed: the automerge core aborted while running this call
	// (an isolated worker process died). The replica is gone; the input of
	// the call is the prime suspect.
	ErrCoreCrashed = errors.New("engine: automerge core crashed")
	// ErrReplicaLost: the replica was lost before this call (its worker
	// restarted after a crash caused by another document).
	ErrReplicaLost = errors.New("engine: replica lost")
)

// Core runs the automerge side of documents. InProcess runs replicas in
// this process: fast, but an input that aborts the Rust core (panic=abort)
// takes the whole process down, so it is for trusted peers only. Package
// isolate runs them in supervised worker processes instead.
type Core interface {
	// Load builds the replica of document id from its stored chunks.
	Load(id string, actor crdt.ActorID, chunks []store.Chunk) (CoreReplica, error)
}

// CoreReplica is one loaded document in a Core.
type CoreReplica interface {
	// Step runs one batch; see Replica.Step.
	Step(in ReplicaInput) (ReplicaOutput, error)
	// SyncStates returns every attached peer's encoded sync state.
	SyncStates() (map[PeerKey][]byte, error)
	// Read calls fn with the document. fn must not keep it.
	Read(fn func(doc *crdt.Doc) error) (crdt.Heads, error)
	// Close releases the replica.
	Close()
}

// InProcess is the Core that runs replicas in the calling process.
type InProcess struct{}

var _ Core = InProcess{}

// Load implements Core.
func (InProcess) Load(id string, actor crdt.ActorID, chunks []store.Chunk) (CoreReplica, error) {
	r, err := LoadReplica(id, actor, chunks)
	if err != nil {
		return nil, err
	}
	return inProcessReplica{r}, nil
}

type inProcessReplica struct{ *Replica }

func (r inProcessReplica) SyncStates() (map[PeerKey][]byte, error) {
	return r.Replica.SyncStates(), nil
}

func (r inProcessReplica) Read(fn func(doc *crdt.Doc) error) (crdt.Heads, error) {
	return r.doc.Heads(), fn(r.doc)
}

func (r inProcessReplica) Close() {}
