package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/wire"
)

// This file is a small automerge-repo peer for the end-to-end tests: it
// joins over a real WebSocket, keeps one crdt.Doc and one crdt.SyncState
// per document, and answers every sync message until there is nothing left
// to say, as automerge-repo's DocSynchronizer does.

// Errors of the test client.
var (
	// errDeadline is returned when a client waited past its deadline.
	errDeadline = errors.New("e2e: deadline passed")
	// errConnEnded is wrapped when the connection failed or was closed.
	errConnEnded = errors.New("e2e: connection ended")
)

// randReader turns a seeded generator into an io.Reader for actor and
// document ids.
type randReader struct{ r *rand.Rand }

func (r randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.r.Uint64())
		copy(p[i:], b[:])
	}
	return len(p), nil
}

// inbound is one frame read from the socket, or the error that ended it.
type inbound struct {
	typ  int
	data []byte
	err  error
}

// clientDoc is one document as a client holds it.
type clientDoc struct {
	id   string
	doc  *crdt.Doc
	sync *crdt.SyncState
	// pending: a local change the relay has not acknowledged yet.
	pending bool
	// announced holds every head the relay announced for this document in
	// a sync message: the relay persists before it sends, so each of them
	// must survive anything, kill -9 included.
	announced map[crdt.Hash]bool
	// theirs is the last set of heads the relay announced.
	theirs      crdt.Heads
	synced      bool // a sync message arrived since the last (re)connect
	unavailable bool
	writes      int // local changes made
	acks        int // local changes acknowledged
}

// caughtUp reports whether the document holds everything the relay last
// announced.
func (d *clientDoc) caughtUp() bool {
	if !d.synced {
		return false
	}
	for _, h := range d.theirs {
		if !d.doc.HasChange(h) {
			return false
		}
	}
	return true
}

// e2eClient is one automerge-repo-like peer. Its methods are called from
// one goroutine; Heads may be called from any.
type e2eClient struct {
	name      string
	peerID    string
	storageID string
	serverID  string
	rnd       *rand.Rand
	actor     crdt.ActorID

	ws    *websocket.Conn
	inbox chan inbound
	quit  chan struct{}

	docs  map[string]*clientDoc
	order []string

	// onAck, when set, is called for every acknowledged local change.
	onAck func(docID string)

	errMsgs []string

	mu   sync.Mutex
	snap map[string]docSnap // published for other goroutines
}

// docSnap is a document's state as of the client's last event.
type docSnap struct {
	heads   crdt.Heads
	pending bool
}

// newClient returns an unconnected client whose actor id and edits come
// from seed and its name.
func newClient(name, storageID string, seed uint64) (*e2eClient, error) {
	h := fnv.New64a()
	h.Write([]byte(name))
	rnd := rand.New(rand.NewPCG(seed, h.Sum64()))
	actor, err := crdt.NewActorID(randReader{rnd})
	if err != nil {
		return nil, err
	}
	return &e2eClient{
		name: name, storageID: storageID, rnd: rnd, actor: actor,
		docs: map[string]*clientDoc{}, snap: map[string]docSnap{},
	}, nil
}

// connect dials the relay and joins as peerID. The documents the client
// holds stay; their sync states start afresh, as a reconnecting
// automerge-repo peer's do.
func (c *e2eClient) connect(addr, peerID string) error {
	return c.connectURL("ws://"+addr+"/", peerID)
}

// connectURL is connect to a full URL (a token in its query, for the
// hostile-auth suite).
func (c *e2eClient) connectURL(url, peerID string) error {
	c.disconnect()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return fmt.Errorf("%s: dial: %w", c.name, err)
	}
	c.ws, c.peerID = ws, peerID
	c.inbox = make(chan inbound, 256)
	c.quit = make(chan struct{})
	go readLoop(ws, c.inbox, c.quit)
	for _, d := range c.docs {
		d.sync = crdt.NewSyncState(d.doc)
		d.synced = false
	}
	var meta *wire.PeerMetadata
	if c.storageID != "" {
		meta = &wire.PeerMetadata{StorageID: c.storageID}
	}
	if err := c.send(wire.Message{Type: wire.TypeJoin, SenderID: peerID, PeerMetadata: meta, SupportedProtocolVersions: []string{wire.ProtocolV1}}); err != nil {
		return err
	}
	m, err := c.next(time.Now().Add(10 * time.Second))
	if err != nil {
		return fmt.Errorf("%s: waiting for peer: %w", c.name, err)
	}
	if m.Type != wire.TypePeer {
		return fmt.Errorf("%s: got %q (%s) instead of peer", c.name, m.Type, m.ErrorMessage)
	}
	c.serverID = m.SenderID
	// Resume every document held.
	for _, id := range c.order {
		if err := c.syncDoc(c.docs[id], wire.TypeSync); err != nil {
			return err
		}
	}
	return nil
}

// disconnect closes the socket, if any.
func (c *e2eClient) disconnect() {
	if c.ws == nil {
		return
	}
	close(c.quit)
	c.ws.Close()
	c.ws = nil
}

// readLoop feeds inbox until the socket fails or quit is closed.
func readLoop(ws *websocket.Conn, inbox chan<- inbound, quit <-chan struct{}) {
	for {
		typ, b, err := ws.ReadMessage()
		select {
		case inbox <- inbound{typ: typ, data: b, err: err}:
		case <-quit:
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *e2eClient) send(m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return fmt.Errorf("%s: encode %s: %w", c.name, m.Type, err)
	}
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return fmt.Errorf("%s: write %s: %w: %w", c.name, m.Type, errConnEnded, err)
	}
	return nil
}

// next returns the next message from the relay, the error that ended the
// connection, or errDeadline.
func (c *e2eClient) next(deadline time.Time) (wire.Message, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case in := <-c.inbox:
		return c.decode(in)
	case <-timer.C:
		return wire.Message{}, errDeadline
	}
}

func (c *e2eClient) decode(in inbound) (wire.Message, error) {
	if in.err != nil {
		return wire.Message{}, fmt.Errorf("%s: %w: %w", c.name, errConnEnded, in.err)
	}
	if in.typ != websocket.BinaryMessage {
		return wire.Message{}, fmt.Errorf("%s: relay sent a frame of type %d", c.name, in.typ)
	}
	m, err := wire.Decode(in.data)
	if err != nil {
		return wire.Message{}, fmt.Errorf("%s: relay sent an undecodable frame: %w", c.name, err)
	}
	return m, nil
}

// syncDoc sends the document's next sync message, if it has one.
func (c *e2eClient) syncDoc(d *clientDoc, typ string) error {
	msg, ok := d.sync.Generate()
	if !ok {
		return nil
	}
	return c.send(wire.Message{Type: typ, SenderID: c.peerID, TargetID: c.serverID, DocumentID: d.id, Data: msg})
}

// create makes a new document with one change and offers it to the relay.
func (c *e2eClient) create() (string, error) {
	id, err := wire.NewDocumentID(randReader{c.rnd})
	if err != nil {
		return "", err
	}
	doc, err := crdt.New(c.actor)
	if err != nil {
		return "", err
	}
	d := &clientDoc{id: id, doc: doc, announced: map[crdt.Hash]bool{}}
	d.sync = crdt.NewSyncState(doc)
	c.docs[id] = d
	c.order = append(c.order, id)
	if _, err := doc.Change(time.Time{}, "create", func(tx *crdt.Tx) error {
		return tx.Set(nil, map[string]any{"owner": c.name, "n": int64(0), "text": crdt.Text("")})
	}); err != nil {
		return "", err
	}
	d.pending = true
	d.writes++
	c.publish(d)
	return id, c.syncDoc(d, wire.TypeSync)
}

// request asks the relay for a document the client does not hold.
func (c *e2eClient) request(id string) error {
	doc, err := crdt.New(c.actor)
	if err != nil {
		return err
	}
	d := &clientDoc{id: id, doc: doc, sync: crdt.NewSyncState(doc), announced: map[crdt.Hash]bool{}}
	c.docs[id] = d
	c.order = append(c.order, id)
	return c.syncDoc(d, wire.TypeRequest)
}

// edit makes one random change to a document and syncs it.
func (c *e2eClient) edit(id string) error {
	d := c.docs[id]
	r := c.rnd
	_, err := d.doc.Change(time.Time{}, "", func(tx *crdt.Tx) error {
		switch r.IntN(3) {
		case 0:
			return tx.Set([]any{"n"}, r.Int64N(1<<40))
		case 1:
			return tx.Splice([]any{"text"}, 0, 0, fmt.Sprintf("%s:%d ", c.name, d.writes))
		default:
			val := make([]byte, 8+r.IntN(400))
			for i := range val {
				val[i] = 'a' + byte(r.IntN(26))
			}
			return tx.Set([]any{fmt.Sprintf("k%d", r.IntN(16))}, string(val))
		}
	})
	if err != nil {
		return fmt.Errorf("%s: edit %s: %w", c.name, id, err)
	}
	d.pending = true
	d.writes++
	c.publish(d)
	return c.syncDoc(d, wire.TypeSync)
}

// handle applies one message from the relay and answers it.
func (c *e2eClient) handle(m wire.Message) error {
	switch m.Type {
	case wire.TypeSync:
		d := c.docs[m.DocumentID]
		if d == nil {
			return fmt.Errorf("%s: sync for a document it never asked for: %s", c.name, m.DocumentID)
		}
		theirs, err := d.sync.Receive(m.Data)
		if err != nil {
			return fmt.Errorf("%s: receive sync for %s: %w", c.name, d.id, err)
		}
		d.theirs, d.synced, d.unavailable = theirs, true, false
		for _, h := range theirs {
			d.announced[h] = true
		}
		if d.pending && subset(d.doc.Heads(), theirs) {
			d.pending = false
			d.acks++
			if c.onAck != nil {
				c.onAck(d.id)
			}
		}
		c.publish(d)
		return c.syncDoc(d, wire.TypeSync)
	case wire.TypeDocUnavailable:
		if d := c.docs[m.DocumentID]; d != nil {
			d.unavailable = true
		}
	case wire.TypeError:
		c.errMsgs = append(c.errMsgs, m.ErrorMessage)
		return fmt.Errorf("%s: relay sent error: %s", c.name, m.ErrorMessage)
	}
	return nil
}

// pumpUntil handles messages until done reports true or the deadline
// passes.
func (c *e2eClient) pumpUntil(deadline time.Time, done func() bool) error {
	for !done() {
		m, err := c.next(deadline)
		if err != nil {
			return err
		}
		if err := c.handle(m); err != nil {
			return err
		}
	}
	return nil
}

// editLoop edits ids for as long as stop is open: a document gets its next
// change as soon as the relay has acknowledged the previous one. It returns
// nil when stop closes and the error otherwise (a dead connection, say).
func (c *e2eClient) editLoop(stop <-chan struct{}, ids []string) error {
	for {
		for _, id := range ids {
			if !c.docs[id].pending {
				if err := c.edit(id); err != nil {
					return err
				}
			}
		}
		select {
		case in := <-c.inbox:
			m, err := c.decode(in)
			if err != nil {
				return err
			}
			if err := c.handle(m); err != nil {
				return err
			}
		case <-stop:
			return nil
		}
	}
}

// settle handles messages until every document in ids is acknowledged and
// caught up with what the relay announced.
func (c *e2eClient) settle(deadline time.Time, ids []string) error {
	return c.pumpUntil(deadline, func() bool {
		for _, id := range ids {
			d := c.docs[id]
			if d.pending || !d.caughtUp() {
				return false
			}
		}
		return true
	})
}

func (c *e2eClient) publish(d *clientDoc) {
	s := docSnap{heads: d.doc.Heads(), pending: d.pending}
	c.mu.Lock()
	c.snap[d.id] = s
	c.mu.Unlock()
}

// Snapshot returns the document's heads and whether a local change awaits
// acknowledgement, as of the client's last event; safe from any goroutine.
func (c *e2eClient) Snapshot(id string) docSnap {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap[id]
}

// subset reports whether every hash of a is in b.
func subset(a, b crdt.Heads) bool {
	for _, h := range a {
		if !slices.Contains(b, h) {
			return false
		}
	}
	return true
}

// frame is one WebSocket frame to send raw.
type frame struct {
	typ  int
	data []byte
}

func binFrame(b []byte) frame { return frame{typ: websocket.BinaryMessage, data: b} }

func msgFrame(m wire.Message) frame {
	b, err := wire.Encode(m)
	if err != nil {
		panic(fmt.Sprintf("encode %s: %v", m.Type, err))
	}
	return binFrame(b)
}

func joinFrame(peerID string) frame {
	return msgFrame(wire.Message{Type: wire.TypeJoin, SenderID: peerID, PeerMetadata: &wire.PeerMetadata{StorageID: "st-" + peerID}, SupportedProtocolVersions: []string{wire.ProtocolV1}})
}

// probeResult is what the relay did with a raw connection.
type probeResult struct {
	types     []string // message types received, in order
	errorMsg  string   // the first error message's text
	gotError  bool
	gotSync   bool
	closed    bool // the connection ended
	closeCode int  // from the close frame; -1 when the socket ended without one
	closeText string
	writeErr  error
	elapsed   time.Duration
}

func (r probeResult) String() string {
	return fmt.Sprintf("types=%v error=%q close=%d %q", r.types, r.errorMsg, r.closeCode, r.closeText)
}

// probe opens a connection, writes frames, and reads until the relay
// closes it, or until until (when not nil) reports true for a message, or
// until the deadline.
func probe(addr string, timeout time.Duration, until func(wire.Message) bool, frames ...frame) (probeResult, error) {
	start := time.Now()
	var res probeResult
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		return res, fmt.Errorf("probe dial: %w", err)
	}
	defer ws.Close()
	deadline := start.Add(timeout)
	for _, f := range frames {
		ws.SetWriteDeadline(deadline)
		if err := ws.WriteMessage(f.typ, f.data); err != nil {
			// The relay may close before it read everything (a frame too
			// large): what it said before closing is still to be read.
			res.writeErr = err
			break
		}
	}
	ws.SetReadDeadline(deadline)
	for {
		typ, b, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce):
				res.closed, res.closeCode, res.closeText = true, ce.Code, ce.Text
			case isTimeout(err):
				res.elapsed = time.Since(start)
				return res, fmt.Errorf("probe: %w after %v (%s)", errDeadline, timeout, res)
			default:
				res.closed, res.closeCode, res.closeText = true, -1, err.Error()
			}
			res.elapsed = time.Since(start)
			return res, nil
		}
		if typ != websocket.BinaryMessage {
			return res, fmt.Errorf("probe: relay sent frame type %d", typ)
		}
		m, err := wire.Decode(b)
		if err != nil {
			return res, fmt.Errorf("probe: relay sent an undecodable frame: %w", err)
		}
		res.types = append(res.types, m.Type)
		switch m.Type {
		case wire.TypeError:
			if !res.gotError {
				res.gotError, res.errorMsg = true, m.ErrorMessage
			}
		case wire.TypeSync:
			res.gotSync = true
		}
		if until != nil && until(m) {
			res.elapsed = time.Since(start)
			return res, nil
		}
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
