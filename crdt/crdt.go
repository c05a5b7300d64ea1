package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/automerge/automerge-go"
)

// Sentinel errors.
var (
	// ErrInvalidActor is returned for an actor id that is not an even number
	// of hex digits.
	ErrInvalidActor = errors.New("crdt: invalid actor id")
	// ErrLoad is returned when bytes do not load as a document or changes.
	ErrLoad = errors.New("crdt: cannot load")
	// ErrSync is returned when a sync message or sync state is rejected.
	ErrSync = errors.New("crdt: sync failed")
	// ErrChange is returned when a change function fails or the commit does.
	ErrChange = errors.New("crdt: change failed")
)

// Hash is the SHA-256 hash of one automerge change.
type Hash [32]byte

// String is the lower-case hex form used by automerge's getHeads.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses the hex form of a change hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%w: bad change hash %q", ErrLoad, s)
	}
	copy(h[:], b)
	return h, nil
}

// Heads is a set of change hashes, kept sorted so that equal sets compare
// equal.
type Heads []Hash

func headsOf(hs []automerge.ChangeHash) Heads {
	out := make(Heads, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	slices.SortFunc(out, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Equal reports whether h and o hold the same hashes.
func (h Heads) Equal(o Heads) bool { return slices.Equal(h, o) }

// Strings returns the hex form of each head, in order.
func (h Heads) Strings() []string {
	out := make([]string, len(h))
	for i, x := range h {
		out[i] = x.String()
	}
	return out
}

// Key is the automerge-repo storage key hash of these heads: the hex SHA-256
// of the concatenated, sorted hex heads (automerge-repo keyHash.ts).
func (h Heads) Key() string {
	sum := sha256.New()
	for _, x := range h {
		io.WriteString(sum, x.String())
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// ActorID identifies the writer of changes: an even number of hex digits.
type ActorID string

// NewActorID draws a 16-byte actor id from r (use a seeded source in tests
// and simulations, crypto/rand in production).
func NewActorID(r io.Reader) (ActorID, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("crdt: actor id: %w", err)
	}
	return ActorID(hex.EncodeToString(b[:])), nil
}

func (a ActorID) validate() error {
	if len(a) == 0 || len(a)%2 != 0 {
		return ErrInvalidActor
	}
	if _, err := hex.DecodeString(string(a)); err != nil {
		return ErrInvalidActor
	}
	return nil
}

// Doc is one automerge document. A Doc is not safe for concurrent use: the
// engine gives each document to one goroutine at a time.
type Doc struct {
	am *automerge.Doc
}

// New returns an empty document that writes as actor.
func New(actor ActorID) (*Doc, error) {
	if err := actor.validate(); err != nil {
		return nil, err
	}
	d := automerge.New()
	if err := d.SetActorID(string(actor)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidActor, err)
	}
	return &Doc{am: d}, nil
}

// Load loads a saved document, or the concatenation of a snapshot and
// incremental chunks as automerge-repo stores them. An empty input gives an
// empty document. The actor, if given, replaces the random one automerge
// assigns on load.
func Load(data []byte, actor ActorID) (*Doc, error) {
	var d *automerge.Doc
	if len(data) == 0 {
		d = automerge.New()
	} else {
		var err error
		d, err = automerge.Load(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLoad, err)
		}
	}
	if actor != "" {
		if err := actor.validate(); err != nil {
			return nil, err
		}
		if err := d.SetActorID(string(actor)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidActor, err)
		}
	}
	return &Doc{am: d}, nil
}

// Heads returns the document's current heads, sorted.
func (d *Doc) Heads() Heads { return headsOf(d.am.Heads()) }

// Empty reports whether the document has no changes at all.
func (d *Doc) Empty() bool { return len(d.am.Heads()) == 0 }

// Save returns the whole document in automerge's compressed format.
func (d *Doc) Save() []byte { return d.am.Save() }

// LoadIncremental applies saved changes. automerge applies a valid prefix
// of garbage silently, so callers that must know check Heads afterwards.
func (d *Doc) LoadIncremental(b []byte) error {
	if err := d.am.LoadIncremental(b); err != nil {
		return fmt.Errorf("%w: %v", ErrLoad, err)
	}
	return nil
}

// HasChange reports whether the change with hash h is in the document.
func (d *Doc) HasChange(h Hash) bool {
	c, err := d.am.Change(automerge.ChangeHash(h))
	return err == nil && c != nil
}

// ApplyChanges applies changes in automerge's binary change format (one or
// more concatenated change chunks, as ChangesSince returns them). It uses
// the incremental loader: automerge-go's LoadChanges parses its input as a
// whole document and refuses a change whose dependencies are elsewhere.
func (d *Doc) ApplyChanges(raw []byte) error {
	if err := d.am.LoadIncremental(raw); err != nil {
		return fmt.Errorf("%w: %v", ErrLoad, err)
	}
	return nil
}

// ChangesSince returns the changes not reachable from since, concatenated in
// automerge's binary change format.
func (d *Doc) ChangesSince(since Heads) ([]byte, error) {
	hs := make([]automerge.ChangeHash, len(since))
	for i, h := range since {
		hs[i] = automerge.ChangeHash(h)
	}
	chs, err := d.am.Changes(hs...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoad, err)
	}
	return automerge.SaveChanges(chs), nil
}

// Fork returns an independent copy of the document that writes as actor.
func (d *Doc) Fork(actor ActorID) (*Doc, error) {
	f, err := d.am.Fork()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoad, err)
	}
	if actor != "" {
		if err := actor.validate(); err != nil {
			return nil, err
		}
		if err := f.SetActorID(string(actor)); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidActor, err)
		}
	}
	return &Doc{am: f}, nil
}

// Change runs fn on the document and commits what it did as one change
// stamped with at (the zero time omits the timestamp). It returns the new
// heads; when fn made no operation nothing is committed and the heads are
// unchanged. When fn fails, its operations are rolled back and the error
// is returned.
func (d *Doc) Change(at time.Time, msg string, fn func(tx *Tx) error) (Heads, error) {
	before := d.am.Heads()
	if err := fn(&Tx{d: d}); err != nil {
		if rerr := d.rollback(before); rerr != nil {
			return nil, fmt.Errorf("%w: %v (and rollback failed: %v)", ErrChange, err, rerr)
		}
		return nil, fmt.Errorf("%w: %v", ErrChange, err)
	}
	t := at
	if _, err := d.am.Commit(msg, automerge.CommitOptions{Time: &t}); err != nil {
		// automerge refuses to commit an empty change: nothing to do.
		return d.Heads(), nil
	}
	return d.Heads(), nil
}

// rollback discards uncommitted operations. automerge-go does not wrap
// AMrollback, so the document is replaced by a fork at the heads it had
// before; sync states follow the document (they look it up on each call).
func (d *Doc) rollback(heads []automerge.ChangeHash) error {
	actor := d.am.ActorID()
	var f *automerge.Doc
	if len(heads) == 0 {
		f = automerge.New()
	} else {
		var err error
		if f, err = d.am.Fork(heads...); err != nil {
			return err
		}
	}
	if err := f.SetActorID(actor); err != nil {
		return err
	}
	d.am = f
	return nil
}

// Value returns the document's content as plain Go values: map[string]any,
// []any, string (text and strings), int64, uint64, float64, bool, []byte,
// time.Time and nil. Counters read as int64.
func (d *Doc) Value() (map[string]any, error) {
	v, err := plain(d.am.Root())
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func plain(v *automerge.Value) (any, error) {
	switch v.Kind() {
	case automerge.KindMap:
		m := v.Map()
		vals, err := m.Values()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLoad, err)
		}
		out := make(map[string]any, len(vals))
		for k, x := range vals {
			p, err := plain(x)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	case automerge.KindList:
		vals, err := v.List().Values()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLoad, err)
		}
		out := make([]any, len(vals))
		for i, x := range vals {
			p, err := plain(x)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	case automerge.KindText:
		s, err := v.Text().Get()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLoad, err)
		}
		return s, nil
	case automerge.KindCounter:
		n, err := v.Counter().Get()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLoad, err)
		}
		return n, nil
	case automerge.KindVoid, automerge.KindNull, automerge.KindUnknown:
		return nil, nil
	default:
		return v.Interface(), nil
	}
}

// SyncState is the sync protocol state of this document with one peer.
type SyncState struct {
	d *Doc
	s *automerge.SyncState
}

// NewSyncState starts syncing d with a peer that we know nothing about.
func NewSyncState(d *Doc) *SyncState { return &SyncState{d: d, s: automerge.NewSyncState(d.am)} }

// LoadSyncState resumes a sync state saved with Encode (automerge keeps only
// the shared heads).
func LoadSyncState(d *Doc, b []byte) (*SyncState, error) {
	s, err := automerge.LoadSyncState(d.am, b)
	if err != nil {
		return nil, fmt.Errorf("%w: sync state: %v", ErrSync, err)
	}
	return &SyncState{d: d, s: s}, nil
}

// Receive applies a sync message from the peer to the document and returns
// the heads the peer announced in it.
func (s *SyncState) Receive(msg []byte) (Heads, error) {
	s.s.Doc = s.d.am
	m, err := s.s.ReceiveMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSync, err)
	}
	return headsOf(m.Heads()), nil
}

// Generate returns the next sync message for the peer, or ok=false when
// there is nothing to send.
func (s *SyncState) Generate() (msg []byte, ok bool) {
	s.s.Doc = s.d.am
	m, ok := s.s.GenerateMessage()
	if !ok {
		return nil, false
	}
	return m.Bytes(), true
}

// Encode returns the persistent part of the sync state (the shared heads).
func (s *SyncState) Encode() []byte { return s.s.Save() }

// HeadsMessage encodes a v1 sync message that only announces heads: the
// heads, no need, one "have" entry whose last-sync heads are the same heads
// with an empty bloom filter (nothing since), and no changes. automerge
// generates nothing when two peers already agree, so a peer that reconnects
// holding exactly our heads would never hear them; this tells it.
func HeadsMessage(heads Heads) []byte {
	b := []byte{0x42}
	b = appendHashes(b, heads) // heads
	b = appendUvarint(b, 0)    // need
	b = appendUvarint(b, 1)    // one have entry:
	b = appendHashes(b, heads) //   last sync
	b = appendUvarint(b, 0)    //   bloom filter: empty
	return appendUvarint(b, 0) // changes
}

func appendHashes(b []byte, hs Heads) []byte {
	b = appendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// SyncSummary is what the start of a v1 sync message says, read without
// the automerge core.
type SyncSummary struct {
	// Heads are the heads the sender announces.
	Heads Heads
	// Need counts the changes it asks for by hash; 0 when the list is cut
	// short.
	Need int
	// Changes counts the changes it carries; -1 when they cannot be
	// counted (the message is cut short before). A message with none (an
	// acknowledgement, a request) cannot change the receiving document.
	Changes int
}

// SummarizeSyncMessage reads the heads, the need list and the number of
// changes of a v1 sync message (the format HeadsMessage writes: the type
// byte 0x42; heads and need as a LEB128 count and that many 32-byte
// hashes; the "have" entries, each a hash list and a bloom filter; the
// changes). ok is false when msg does not start like one (then Changes is
// -1).
func SummarizeSyncMessage(msg []byte) (sum SyncSummary, ok bool) {
	sum.Changes = -1
	heads, need, rest, ok := syncHeader(msg)
	if !ok {
		return sum, false
	}
	sum.Heads = hashesOf(heads)
	if need == nil {
		return sum, true
	}
	sum.Need = len(need) / 32
	sum.Changes = countChanges(rest)
	return sum, true
}

// syncHeader splits the start of a v1 sync message: heads and need hold
// the hashes' bytes, rest what follows the need list. need is nil when the
// need list is cut short (and empty, not nil, when it has no hash).
func syncHeader(msg []byte) (heads, need, rest []byte, ok bool) {
	if len(msg) < 2 || msg[0] != 0x42 {
		return nil, nil, nil, false
	}
	heads, b, ok := hashList(msg[1:])
	if !ok {
		return nil, nil, nil, false
	}
	need, rest, ok = hashList(b)
	if !ok {
		return heads, nil, nil, true
	}
	return heads, need, rest, true
}

// hashList reads a LEB128 count and that many 32-byte hashes from the
// start of b.
func hashList(b []byte) (hashes, rest []byte, ok bool) {
	n, size := binary.Uvarint(b)
	if size <= 0 || n > uint64(len(b)-size)/32 {
		return nil, nil, false
	}
	end := size + 32*int(n)
	return b[size:end:end], b[end:], true
}

// countChanges reads the "have" entries of a v1 sync message and returns
// the count of changes after them, or -1 when b is cut short.
func countChanges(b []byte) int {
	haves, size := binary.Uvarint(b)
	if size <= 0 || haves > uint64(len(b)) {
		return -1
	}
	b = b[size:]
	for range haves {
		_, rest, ok := hashList(b) // last sync heads
		if !ok {
			return -1
		}
		n, size := binary.Uvarint(rest) // bloom filter bytes
		if size <= 0 || n > uint64(len(rest)-size) {
			return -1
		}
		b = rest[size+int(n):]
	}
	changes, size := binary.Uvarint(b)
	if size <= 0 || changes > uint64(len(b)) {
		return -1
	}
	return int(changes)
}

func hashesOf(raw []byte) []Hash {
	out := make([]Hash, len(raw)/32)
	for i := range out {
		copy(out[i][:], raw[32*i:])
	}
	return out
}

// SyncMessageHeads returns the heads a v1 sync message announces, or
// ok=false when msg does not start like one.
func SyncMessageHeads(msg []byte) (heads Heads, ok bool) {
	raw, _, _, ok := syncHeader(msg)
	if !ok {
		return nil, false
	}
	return hashesOf(raw), true
}

// SyncMessageNeeds returns how many changes a v1 sync message asks for by
// hash (its "need" list), or 0 when msg is not a well-formed v1 message
// as far as that list.
func SyncMessageNeeds(msg []byte) int {
	_, need, _, _ := syncHeader(msg)
	return len(need) / 32
}

// SyncMessageChanges returns how many changes a v1 sync message carries,
// or -1 when msg is not a well-formed v1 message as far as that count.
func SyncMessageChanges(msg []byte) int {
	sum, _ := SummarizeSyncMessage(msg)
	return sum.Changes
}

// SyncMessageNeed returns the change hashes a v1 sync message asks for by
// hash (its "need" list), or nil when msg is not a well-formed v1 message
// as far as that list or the list is empty.
func SyncMessageNeed(msg []byte) []Hash {
	_, need, _, _ := syncHeader(msg)
	if len(need) == 0 {
		return nil
	}
	return hashesOf(need)
}
