package engine

import (
	"time"

	"github.com/amsync/amsync/crdt"
)

// Access is what a peer may do with one document.
type Access int

// Access levels.
const (
	// AccessNone: the document is reported doc-unavailable to the peer,
	// whether or not it exists.
	AccessNone Access = iota
	// AccessRead: the peer receives the document and its updates; a sync
	// message of its that carries changes is refused with an error and
	// neither persisted nor forwarded.
	AccessRead
	// AccessReadWrite: everything.
	AccessReadWrite
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "r"
	case AccessReadWrite:
		return "rw"
	}
	return "none"
}

// Principal is who a connection authenticated as (see wsrelay's
// Authenticate hook and its JWT verifier).
type Principal struct {
	// ID names the principal (a JWT's sub); "" for anonymous.
	ID string
	// Access decides per document; nil grants read-write on every
	// document.
	Access func(docID string) Access
	// Expires, when set, is when the credentials expire: the transport
	// closes the connection then.
	Expires time.Time
}

// id is the principal's id, "" for anonymous (a nil principal).
func (p *Principal) id() string {
	if p == nil {
		return ""
	}
	return p.ID
}

// access returns what p may do with docID.
func (p *Principal) access(docID string) Access {
	if p == nil || p.Access == nil {
		return AccessReadWrite
	}
	return p.Access(docID)
}

// ChangeEvent describes one durable change of a document's heads.
type ChangeEvent struct {
	DocID string
	Heads crdt.Heads
	// Local is true for a change made through the engine's API.
	Local bool
	// From holds the principal ids of the peers whose messages changed the
	// document in this step, sorted ("" stands for anonymous peers).
	From []string
}
