package engine

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/amsync/amsync/engine/wire"
)

// Sentinel errors for protocol violations; HandleFrame wraps them.
var (
	// ErrNotJoined: a message other than join arrived before join.
	ErrNotJoined = errors.New("engine: message before join")
	// ErrProtocolVersion: the peer supports no protocol version we speak.
	ErrProtocolVersion = errors.New("engine: unsupported protocol version")
	// ErrSenderMismatch: a message's senderId is not the joined peer id.
	ErrSenderMismatch = errors.New("engine: senderId does not match the joined peer")
	// ErrBanned: the peer id sent a message that aborted the automerge
	// core and is refused for a while.
	ErrBanned = errors.New("engine: peer temporarily refused after sending a message that aborts the automerge core")
	// ErrTooManyDocs: the session reached Config.MaxDocsPerSession.
	ErrTooManyDocs = errors.New("engine: too many documents on this connection")
	// ErrReadOnly: a read-only peer sent changes.
	ErrReadOnly = errors.New("engine: read-only access: changes refused")
	// ErrRefused: the remote answered our join with an error.
	ErrRefused = errors.New("engine: join refused by the remote")
	// ErrPeerIDTaken: another principal's connection holds the peer id.
	ErrPeerIDTaken = errors.New("engine: peer id in use by another principal")
	// ErrSessionClosed: the session has ended.
	ErrSessionClosed = errors.New("engine: session closed")
)

// Session is one connected peer: the handshake state machine of one
// connection, and the set of documents it takes part in.
type Session struct {
	e    *Engine
	id   uint64
	key  PeerKey
	conn Conn

	principal *Principal // nil: anonymous, read-write

	mu        sync.Mutex
	outbound  bool // we dialled: the remote is a server we sync with
	joined    bool
	closed    bool
	peerID    string
	storageID string
	ephemeral bool
	docs      map[string]struct{} // allocated with the first document
	lastCount map[string]uint64   // ephemeral de-duplication: sessionId -> count
}

// Outbound reports whether this session was dialled by this engine.
func (s *Session) Outbound() bool { return s.outbound }

// RemoteStorageID is the remote's storage id from its join or peer
// message ("" when it has none or before).
func (s *Session) RemoteStorageID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storageID
}

// PeerID is the peer id the session joined with ("" before join).
func (s *Session) PeerID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerID
}

// HandleFrame processes one binary frame from the peer. A non-nil error
// means the frame violated the protocol: the session has already sent an
// error message and asked its Conn to close; the transport stops reading.
func (s *Session) HandleFrame(frame []byte) error { return s.HandleFrameThen(frame, nil) }

// HandleFrameThen is HandleFrame that also says when the engine is done
// with the frame, so that a transport can bound what it has read but the
// engine has not processed yet. done, when not nil, is called exactly once:
// before HandleFrameThen returns when the session handled the frame itself
// (join, a refusal, a protocol error, a closed session), otherwise on the
// document's task once the batch holding the message is processed: the
// replica stepped, the result persisted and the replies queued, or the
// message discarded (rejected, the document broken, the write failed, the
// sender gone). done must not block and must not call the engine.
func (s *Session) HandleFrameThen(frame []byte, done func()) error {
	s.e.stats.FramesIn.Add(1)
	s.e.stats.BytesIn.Add(int64(len(frame)))
	m, err := wire.Decode(frame)
	if err != nil {
		if done != nil {
			done()
		}
		return s.fail(CloseUnsupportedData, fmt.Errorf("malformed message: %w", err))
	}
	return s.handle(m, done)
}

// handle processes one decoded message. done (when not nil) goes with the
// event the message is queued as; when it is not queued, handle calls it.
func (s *Session) handle(m wire.Message, done func()) (err error) {
	if done != nil {
		defer func() {
			if done != nil {
				done()
			}
		}()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	joined, peerID, outbound := s.joined, s.peerID, s.outbound
	s.mu.Unlock()

	if outbound && !joined {
		// We dialled: the remote must answer our join with peer.
		switch m.Type {
		case wire.TypePeer:
			return s.accepted(m)
		case wire.TypeError:
			s.e.log.Warn("remote refused our join", "remote", m.SenderID, "message", m.ErrorMessage)
			s.conn.Close(CloseNormal, "join refused")
			s.Closed()
			return fmt.Errorf("%w: %s", ErrRefused, m.ErrorMessage)
		}
		return s.fail(ClosePolicyViolation, fmt.Errorf("%w: got %q before peer", ErrNotJoined, m.Type))
	}
	if m.Type == wire.TypeJoin && !outbound {
		return s.join(m)
	}
	if !joined {
		return s.fail(ClosePolicyViolation, fmt.Errorf("%w: got %q", ErrNotJoined, m.Type))
	}
	if m.SenderID != peerID {
		if m.Type == wire.TypeEphemeral {
			// automerge-repo clients pass ephemeral messages they receive
			// on to their other peers unchanged, so one we forwarded comes
			// back with its original sender's id. Drop the echo (the
			// Node server ignores it too).
			return nil
		}
		return s.fail(ClosePolicyViolation, fmt.Errorf("%w: %q", ErrSenderMismatch, m.SenderID))
	}
	switch m.Type {
	case wire.TypeLeave:
		s.conn.Close(CloseNormal, "leave")
		s.Closed()
		return nil
	case wire.TypeSync, wire.TypeRequest, wire.TypeEphemeral:
		acc := s.principal.access(m.DocumentID)
		if acc == AccessNone {
			// Say nothing that tells whether the document exists.
			if m.Type != wire.TypeEphemeral {
				s.send(wire.Message{Type: wire.TypeDocUnavailable, SenderID: s.e.peerID, TargetID: peerID, DocumentID: m.DocumentID})
			}
			return nil
		}
		if m.Type == wire.TypeEphemeral && !s.freshEphemeral(m) {
			return nil
		}
		if !s.admit(m.DocumentID) {
			s.e.stats.Refused.Add(1)
			s.send(wire.Message{Type: wire.TypeError, SenderID: s.e.peerID, TargetID: peerID,
				ErrorMessage: fmt.Sprintf("%v: %d documents per connection", ErrTooManyDocs, s.e.cfg.MaxDocsPerSession)})
			if m.Type != wire.TypeEphemeral {
				s.send(wire.Message{Type: wire.TypeDocUnavailable, SenderID: s.e.peerID, TargetID: peerID, DocumentID: m.DocumentID})
			}
			return nil
		}
		ev := docEvent{kind: evMessage, sess: s, msg: m, readOnly: acc == AccessRead, done: done}
		done = nil // route or the document's task calls it
		return s.route(m.DocumentID, ev)
	case wire.TypeDocUnavailable:
		if outbound {
			ev := docEvent{kind: evUnavailable, sess: s, done: done}
			done = nil
			return s.route(m.DocumentID, ev)
		}
		return nil
	case wire.TypeError:
		s.e.log.Warn("remote reported an error", "remote", peerID, "message", m.ErrorMessage)
		return nil
	default:
		// remote-subscription-change, remote-heads-changed, peer and a
		// join on a dialled session are accepted and ignored: the engine
		// does not gossip remote heads.
		return nil
	}
}

// track records that the session takes part in docID (so that it is told
// when the session ends); false when the session has closed.
func (s *Session) track(docID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.docs == nil {
		s.docs = map[string]struct{}{}
	}
	s.docs[docID] = struct{}{}
	return true
}

// admit reports whether the session may take part in one more document
// (Config.MaxDocsPerSession).
func (s *Session) admit(docID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.docs[docID]; ok {
		return true
	}
	return len(s.docs) < s.e.cfg.MaxDocsPerSession
}

// Principal is who the session authenticated as (nil: anonymous).
func (s *Session) Principal() *Principal { return s.principal }

// route queues an event for a document this session takes part in. When
// the session has closed, the event is dropped (and its done called).
func (s *Session) route(docID string, ev docEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if ev.done != nil {
			ev.done()
		}
		return ErrSessionClosed
	}
	if s.docs == nil {
		s.docs = map[string]struct{}{}
	}
	s.docs[docID] = struct{}{}
	s.e.enqueue(docID, ev)
	return nil
}

// accepted handles the remote's peer message on a dialled session: the
// session is up, and every document this engine holds is announced to the
// remote (automerge-repo's client does the same for its open documents).
func (s *Session) accepted(m wire.Message) error {
	s.mu.Lock()
	s.joined = true
	s.peerID = m.SenderID
	if m.PeerMetadata != nil {
		s.storageID = m.PeerMetadata.StorageID
		s.ephemeral = m.PeerMetadata.IsEphemeral
	}
	s.mu.Unlock()
	s.e.addOutbound(s)
	s.e.announce(s)
	return nil
}

func (s *Session) join(m wire.Message) error {
	s.mu.Lock()
	if s.joined {
		same := m.SenderID == s.peerID
		s.mu.Unlock()
		if !same {
			return s.fail(ClosePolicyViolation, fmt.Errorf("%w: second join as %q", ErrSenderMismatch, m.SenderID))
		}
		s.sendPeer()
		return nil
	}
	s.mu.Unlock()
	if m.SupportedProtocolVersions != nil && !slices.Contains(m.SupportedProtocolVersions, wire.ProtocolV1) {
		// automerge-repo's server answers exactly this message.
		s.send(wire.Message{Type: wire.TypeError, SenderID: s.e.peerID, TargetID: m.SenderID, ErrorMessage: "unsupported protocol version"})
		s.conn.Close(CloseProtocolError, "unsupported protocol version")
		s.Closed()
		return ErrProtocolVersion
	}
	if s.e.isBanned(m.SenderID) {
		return s.fail(ClosePolicyViolation, fmt.Errorf("%w: %q", ErrBanned, m.SenderID))
	}
	s.mu.Lock()
	s.joined = true
	s.peerID = m.SenderID
	if m.PeerMetadata != nil {
		s.storageID = m.PeerMetadata.StorageID
		s.ephemeral = m.PeerMetadata.IsEphemeral
	}
	s.mu.Unlock()

	e := s.e
	e.mu.Lock()
	old := e.peers[m.SenderID]
	if old != nil && old != s && old.principal.id() != s.principal.id() {
		// Only the same principal may take over a peer id: otherwise any
		// client knowing an id could disconnect (and get banned) its owner.
		e.mu.Unlock()
		s.mu.Lock()
		s.joined, s.peerID = false, ""
		s.mu.Unlock()
		return s.fail(ClosePolicyViolation, fmt.Errorf("%w: %q", ErrPeerIDTaken, m.SenderID))
	}
	e.peers[m.SenderID] = s
	e.mu.Unlock()
	if old != nil && old != s {
		// The same peer reconnected on a new socket: the old one is dead
		// or about to be (automerge-repo PR #206).
		old.conn.Close(CloseNormal, "replaced by a new connection of the same peer")
		old.Closed()
	}
	s.sendPeer()
	return nil
}

func (s *Session) sendPeer() {
	s.send(wire.Message{
		Type:                    wire.TypePeer,
		SenderID:                s.e.peerID,
		TargetID:                s.PeerID(),
		PeerMetadata:            &wire.PeerMetadata{StorageID: s.e.storageID, IsEphemeral: false},
		SelectedProtocolVersion: wire.ProtocolV1,
	})
}

// freshEphemeral drops repeats: automerge-repo accepts an ephemeral message
// only when its count is above the last one seen from that sender session.
func (s *Session) freshEphemeral(m wire.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastCount == nil {
		s.lastCount = map[string]uint64{}
	}
	last, seen := s.lastCount[m.SessionID]
	if seen && m.Count <= last {
		return false
	}
	s.lastCount[m.SessionID] = m.Count
	return true
}

// Fail tells the peer what went wrong in an error message, closes the
// connection with code and ends the session. Transports use it for faults
// they detect themselves (a text frame, say). It returns err.
func (s *Session) Fail(code int, err error) error { return s.fail(code, err) }

// fail tells the peer what went wrong and closes the connection.
func (s *Session) fail(code int, err error) error {
	s.e.stats.ProtocolErrors.Add(1)
	reason := err.Error()
	s.e.log.Warn("closing connection", "session", s.id, "peer", s.PeerID(), "err", reason)
	target := s.PeerID()
	if target == "" {
		target = "unknown" // before join the peer has not named itself
	}
	s.send(wire.Message{Type: wire.TypeError, SenderID: s.e.peerID, TargetID: target, ErrorMessage: reason})
	s.conn.Close(code, closeReason(reason))
	s.Closed()
	return err
}

// closeReason trims a reason to the 123 bytes a WebSocket close frame holds.
func closeReason(r string) string {
	if len(r) <= 123 {
		return r
	}
	r = r[:123]
	for len(r) > 0 && r[len(r)-1]&0xC0 == 0x80 {
		r = r[:len(r)-1]
	}
	if len(r) > 0 && r[len(r)-1] >= 0xC0 {
		r = r[:len(r)-1]
	}
	return r
}

// send encodes m and queues it on the connection.
func (s *Session) send(m wire.Message) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	frame, err := wire.Encode(m)
	if err != nil {
		s.e.log.Error("encode outgoing message", "type", m.Type, "err", err)
		return
	}
	if err := s.conn.Send(frame); err != nil {
		s.e.stats.SendErrors.Add(1)
		return
	}
	s.e.stats.FramesOut.Add(1)
	s.e.stats.BytesOut.Add(int64(len(frame)))
}

// Closed ends the session: the transport calls it when the connection is
// gone. Every document the peer took part in is told, so that its sync
// state is persisted and it is dropped from fan-out. Calling it again does
// nothing.
func (s *Session) Closed() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	docs := s.docs
	s.docs = nil
	peerID := s.peerID
	s.mu.Unlock()

	e := s.e
	e.removeOutbound(s)
	e.mu.Lock()
	if e.peers[peerID] == s {
		delete(e.peers, peerID)
	}
	_, open := e.sessions[s]
	delete(e.sessions, s)
	e.mu.Unlock()
	if open {
		e.stats.SessionsOpen.Add(-1)
	}
	ids := make([]string, 0, len(docs))
	for d := range docs {
		ids = append(ids, d)
	}
	slices.Sort(ids)
	for _, d := range ids {
		e.enqueue(d, docEvent{kind: evGone, sess: s})
	}
}
