package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/wire"
	"github.com/amsync/amsync/wsrelay"
)

// This file holds the fixture of the hostile-client suite (hostile_test.go):
// a relay with honest clients editing a shared document in the background,
// the checks every case ends with, raw WebSocket peers that say exactly
// what a case wants, and the table of wrongly typed fields.

// hostileRSSBound is the most resident memory the relay process may
// reach during the suite (VmHWM, its peak over its whole life). What the
// suite makes it hold, every part bounded by configuration:
//
//   - 3,117 connections open at once at ~13 KiB of Go heap each (measured;
//     the send queue grows on demand, the write buffer comes from a pool
//     only while a frame is written): ~40 MiB, and more once closed
//     connections' spans are reused.
//   - their goroutine stacks (one per connection while idle) and the runtime's and
//     Badger's own memory: ~120 MiB with the connections open.
//   - one slow reader's send queue (SendQueueBytes, 64 MiB) plus the frame
//     past it, and a 4 MiB upload held about four times on its way to the
//     store.
//
// That is ~620 MiB in the worst order of events, which the collector's
// headroom (GOGC=100) can stretch; 768 MiB allows for it. Measured peaks
// over eight runs: 331 to 629 MiB, most near 370. This bound catches
// growth with what hostile clients send, not the relay's fixed costs: each
// case also checks that what it sent is gone (connections back to the
// honest ones), and "pipelined uploads" bounds the growth of one case.
const hostileRSSBound = 768 << 20

// hostileWorkersBound bounds the automerge worker processes' resident
// memory, summed. They hold the loaded documents, at most
// hostileMaxLoaded (64 MiB) of stored size, which the core holds at about
// four times its stored size (measured): ~256 MiB, plus ~20 MiB per worker
// and what the allocator keeps after evictions. Without the cap the suite
// would load ~280 MB of stored documents (the slow reader's 24 x 3.8 MB,
// 48 pipelined uploads of 3.8 MB, a 4 MiB one in "huge frames").
const hostileWorkersBound = 700 << 20

// memUsage is the resident memory of the relay and of its worker
// processes.
type memUsage struct {
	relayRSS, relayPeak int64 // VmRSS and VmHWM of the relay process
	workersRSS          int64 // VmRSS summed over the relay's children
	workers             int
}

func (m memUsage) String() string {
	return fmt.Sprintf("relay RSS %s (peak %s), %d workers %s", mib(m.relayRSS), mib(m.relayPeak), m.workers, mib(m.workersRSS))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// procStatus returns VmRSS and VmHWM of a process, in bytes.
func procStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: unexpected line %q", pid, line)
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		*dst = kb << 10
	}
	return rss, hwm, nil
}

// childPIDs lists the children of pid (the relay's automerge workers).
func childPIDs(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for s := range strings.FieldsSeq(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// memOf measures the relay process and its workers.
func memOf(pid int) (memUsage, error) {
	var m memUsage
	var err error
	if m.relayRSS, m.relayPeak, err = procStatus(pid); err != nil {
		return m, err
	}
	for _, c := range childPIDs(pid) {
		if rss, _, err := procStatus(c); err == nil { // a worker may be restarting
			m.workersRSS += rss
			m.workers++
		}
	}
	return m, nil
}

// caseFigure is one line of the suite's summary.
type caseFigure struct {
	name    string
	tried   int // hostile connections (or frames) the case used
	outcome string
	acks    int64         // honest acknowledgements during the case
	maxGap  time.Duration // longest wait between two honest acknowledgements
	mem     memUsage
	took    time.Duration
}

// hostileRelay is a relay under attack: honest clients edit a shared
// document on it for as long as the suite runs.
type hostileRelay struct {
	p      *proc
	auth   *tokenIssuer // nil: the relay runs without authentication
	honest []*e2eClient
	shared string
	stop   chan struct{}
	errs   chan error

	acks    atomic.Int64
	mu      sync.Mutex
	lastAck time.Time
	maxGap  time.Duration // since the last check

	baseConns float64 // amsync_connections with only the honest clients
	caseStart time.Time
	caseAcks  int64
	figures   []caseFigure
	peak      memUsage // the largest seen by any check
}

// startHostile starts the relay binary with args and n honest clients on
// one shared document, and starts their edit loops. With auth set, the
// honest clients connect with a read-write token of their own.
func startHostile(t *testing.T, auth *tokenIssuer, n int, args ...string) *hostileRelay {
	t.Helper()
	h := &hostileRelay{auth: auth, stop: make(chan struct{})}
	h.p = startRelay(t, buildRelay(t), args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log (end):\n%s", h.tail())
		}
	})
	for i := range n {
		name := fmt.Sprintf("honest%d", i)
		c, err := newClient(name, "st-"+name, e2eSeed)
		require.NoError(t, err)
		require.NoError(t, h.connect(c, name, map[string]any{"sub": name, "docs": map[string]string{"*": "rw"}}))
		t.Cleanup(c.disconnect)
		h.honest = append(h.honest, c)
	}
	shared, err := h.honest[0].create()
	require.NoError(t, err)
	require.NoError(t, h.honest[0].settle(time.Now().Add(10*time.Second), []string{shared}))
	for _, c := range h.honest[1:] {
		require.NoError(t, c.request(shared))
		require.NoError(t, c.settle(time.Now().Add(10*time.Second), []string{shared}))
	}
	h.shared = shared
	h.baseConns = h.p.metric(t, "amsync_connections")
	require.Equal(t, float64(n), h.baseConns)
	h.lastAck = time.Now()
	for _, c := range h.honest {
		c.onAck = func(string) {
			h.acks.Add(1)
			now := time.Now()
			h.mu.Lock()
			h.maxGap = max(h.maxGap, now.Sub(h.lastAck))
			h.lastAck = now
			h.mu.Unlock()
		}
	}
	h.errs = startLoops(h.honest, h.stop, func(*e2eClient) []string { return []string{shared} })
	h.begin()
	return h
}

// connect connects a client, with a token carrying claims when the relay
// authenticates.
func (h *hostileRelay) connect(c *e2eClient, peerID string, claims map[string]any) error {
	if h.auth == nil {
		return c.connect(h.p.addr, peerID)
	}
	return c.connectURL(h.url(h.auth.token(claims)), peerID)
}

// url is the relay's WebSocket URL, with a token when one is given.
func (h *hostileRelay) url(token string) string {
	u := "ws://" + h.p.addr + "/"
	if token != "" {
		u += "?token=" + token
	}
	return u
}

// begin starts a case: acknowledgements and gaps are counted from here.
func (h *hostileRelay) begin() {
	h.caseStart = time.Now()
	h.caseAcks = h.acks.Load()
	h.mu.Lock()
	h.maxGap = 0
	h.mu.Unlock()
}

// check ends a case: the relay must be up and answer /healthz, every
// honest client must still be running and have been acknowledged since
// the case began (waited for, within a deadline), the relay's connections
// must be back to the honest ones (nothing hostile lingers), and memory
// must be within bounds. It records the case in the summary and begins
// the next one.
func (h *hostileRelay) check(t *testing.T, name string, tried int, outcome string) {
	t.Helper()
	require.NoError(t, h.p.alive(), "%s\nrelay log:\n%s", name, h.tail())
	noLoopFailed(t, h.errs)
	require.Eventually(t, func() bool { return h.acks.Load() > h.caseAcks }, 20*time.Second, 5*time.Millisecond,
		"%s: the honest clients were not acknowledged since the case began\nrelay log:\n%s", name, h.tail())
	require.Eventually(t, func() bool { return h.p.metric(t, "amsync_connections") == h.baseConns }, 30*time.Second, 10*time.Millisecond,
		"%s: hostile connections linger: %v open, %v honest", name, h.p.metric(t, "amsync_connections"), h.baseConns)
	noLoopFailed(t, h.errs)
	m := h.memCheck(t, name)
	h.mu.Lock()
	gap := max(h.maxGap, time.Since(h.lastAck))
	h.mu.Unlock()
	f := caseFigure{name: name, tried: tried, outcome: outcome, acks: h.acks.Load() - h.caseAcks, maxGap: gap, mem: m, took: time.Since(h.caseStart)}
	h.figures = append(h.figures, f)
	t.Logf("%s: %d tried: %s; honest acks %d (longest gap %v); %s; %v", name, tried, outcome, f.acks, gap.Round(time.Millisecond), m, f.took.Round(time.Millisecond))
	h.begin()
}

// memCheck measures memory and fails the test past the bounds.
func (h *hostileRelay) memCheck(t *testing.T, name string) memUsage {
	t.Helper()
	m, err := memOf(h.p.pid())
	require.NoError(t, err)
	h.peak.relayRSS = max(h.peak.relayRSS, m.relayRSS)
	h.peak.relayPeak = max(h.peak.relayPeak, m.relayPeak)
	h.peak.workersRSS = max(h.peak.workersRSS, m.workersRSS)
	h.peak.workers = max(h.peak.workers, m.workers)
	require.Less(t, m.relayPeak, int64(hostileRSSBound), "%s: relay peak RSS %s above the bound %s", name, mib(m.relayPeak), mib(hostileRSSBound))
	require.Less(t, m.workersRSS, int64(hostileWorkersBound), "%s: workers RSS %s above the bound %s", name, mib(m.workersRSS), mib(hostileWorkersBound))
	return m
}

// tail is the end of the relay's log, for failure messages.
func (h *hostileRelay) tail() string {
	s := h.p.stderr.String()
	if len(s) > 8000 {
		s = "…" + s[len(s)-8000:]
	}
	return s
}

// finish stops the honest clients, lets them converge, and checks with a
// fresh reader that every head the relay announced to them is stored. It
// returns the converged heads and the number of heads verified.
func (h *hostileRelay) finish(t *testing.T, verifier *e2eClient) (crdt.Heads, int) {
	t.Helper()
	heads := h.converge(t)
	cl := claims{}
	for _, c := range h.honest {
		cl.add(c)
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range cl {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		require.NoError(t, verifier.request(id))
	}
	require.NoError(t, verifier.pumpUntil(time.Now().Add(20*time.Second), func() bool {
		for _, id := range ids {
			if !verifier.docs[id].caughtUp() {
				return false
			}
		}
		return true
	}), "the verifier did not receive the honest documents")
	var missing []string
	for id, hs := range cl {
		for hh := range hs {
			if !verifier.docs[id].doc.HasChange(hh) {
				missing = append(missing, fmt.Sprintf("%s %s", id, hh))
			}
		}
	}
	require.Empty(t, missing, "announced heads lost")
	require.Equal(t, heads, verifier.docs[h.shared].doc.Heads(), "the verifier holds what the honest clients converged on")
	return heads, cl.hashes()
}

// converge stops the honest clients' edits and lets them answer until all
// hold the same heads with nothing unacknowledged (converge in
// e2e_test.go does the same; this one says where each client stands when
// they do not).
func (h *hostileRelay) converge(t *testing.T) crdt.Heads {
	t.Helper()
	close(h.stop)
	for _, err := range waitLoops(t, h.errs, len(h.honest), 10*time.Second) {
		require.NoError(t, err, "an honest client stopped with an error")
	}
	quiet := make(chan struct{})
	errs := startLoops(h.honest, quiet, func(*e2eClient) []string { return nil })
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var heads crdt.Heads
	for {
		first := h.honest[0].Snapshot(h.shared)
		same := true
		for _, c := range h.honest {
			s := c.Snapshot(h.shared)
			same = same && !s.pending && s.heads.Equal(first.heads)
		}
		if same {
			heads = first.heads
			break
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, c := range h.honest {
				s := c.Snapshot(h.shared)
				fmt.Fprintf(&b, "%s: heads %v pending %v\n", c.name, s.heads, s.pending)
			}
			close(quiet)
			waitLoops(t, errs, len(h.honest), 10*time.Second)
			for _, c := range h.honest {
				d := c.docs[h.shared]
				fmt.Fprintf(&b, "%s: writes %d acks %d, relay announced %v, caught up %v\n", c.name, d.writes, d.acks, d.theirs, d.caughtUp())
			}
			t.Fatalf("honest clients did not converge:\n%s", b.String())
		}
		noLoopFailed(t, errs)
		<-tick.C
	}
	close(quiet)
	for _, err := range waitLoops(t, errs, len(h.honest), 10*time.Second) {
		require.NoError(t, err)
	}
	return heads
}

// summary logs the figures of every case.
func (h *hostileRelay) summary(t *testing.T, title string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n| case | tried | outcome | honest acks | longest ack gap | relay RSS (peak so far) | workers RSS | took |\n|---|---:|---|---:|---:|---:|---:|---:|\n", title)
	for _, f := range h.figures {
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %v | %s (%s) | %s | %v |\n", f.name, f.tried, f.outcome, f.acks,
			f.maxGap.Round(time.Millisecond), mib(f.mem.relayRSS), mib(f.mem.relayPeak), mib(f.mem.workersRSS), f.took.Round(time.Millisecond))
	}
	t.Log(b.String())
}

// createLarge makes a new document holding a blob of n random bytes and
// offers it to the relay, as create does.
func (c *e2eClient) createLarge(n int) (string, error) {
	id, err := wire.NewDocumentID(randReader{c.rnd})
	if err != nil {
		return "", err
	}
	doc, err := crdt.New(c.actor)
	if err != nil {
		return "", err
	}
	blob := make([]byte, n)
	randReader{c.rnd}.Read(blob)
	if _, err := doc.Change(time.Time{}, "large", func(tx *crdt.Tx) error { return tx.Set([]any{"blob"}, blob) }); err != nil {
		return "", err
	}
	d := &clientDoc{id: id, doc: doc, sync: crdt.NewSyncState(doc), announced: map[crdt.Hash]bool{}, pending: true, writes: 1}
	c.docs[id] = d
	c.order = append(c.order, id)
	c.publish(d)
	return id, c.syncDoc(d, wire.TypeSync)
}

// tokenIssuer signs tokens for an authenticating relay.
type tokenIssuer struct {
	secret []byte
	file   string // holds secret, for -jwt-secret-file
}

func newTokenIssuer(t *testing.T, secret string) *tokenIssuer {
	f := filepath.Join(t.TempDir(), "jwt-secret")
	require.NoError(t, os.WriteFile(f, []byte(secret+"\n"), 0o600))
	return &tokenIssuer{secret: []byte(secret), file: f}
}

// token signs claims. The claims are the test's own: failing to encode
// them is a bug in the test.
func (ti *tokenIssuer) token(claims map[string]any) string {
	s, err := wsrelay.SignHS256(ti.secret, claims)
	if err != nil {
		panic(fmt.Sprintf("sign %v: %v", claims, err))
	}
	return s
}

// signRaw makes a JWT from a header and claims given as JSON text, signed
// with HMAC-SHA256 whatever the header says: forgeries are made with it.
func signRaw(secret []byte, header, claims string) string {
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(mac.Sum(nil))
}

// rawPeer is a WebSocket peer that sends what it is told and reports
// what it receives, with nothing of a real client's logic.
type rawPeer struct {
	ws     *websocket.Conn
	peerID string
	server string // the relay's peer id, once joined
}

// dialOptions tune a raw dial.
type dialOptions struct {
	header http.Header
	rcvBuf int // SO_RCVBUF set before connecting; 0 leaves the default
}

// dialRaw opens a WebSocket to url without joining.
func dialRaw(url string, o dialOptions) (*rawPeer, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if o.rcvBuf > 0 {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvBuf)
			})
			return errors.Join(err, serr)
		}}
		d.NetDialContext = nd.DialContext
	}
	ws, resp, err := d.Dial(url, o.header)
	if err != nil {
		return nil, resp, err
	}
	return &rawPeer{ws: ws}, resp, nil
}

// joinRaw dials url and joins as peerID, waiting for the relay's peer
// message.
func joinRaw(url, peerID string, o dialOptions) (*rawPeer, error) {
	r, _, err := dialRaw(url, o)
	if err != nil {
		return nil, err
	}
	if err := r.join(peerID, true); err != nil {
		r.ws.Close()
		return nil, err
	}
	return r, nil
}

// join sends join as peerID and, when wait is set, reads the answer.
func (r *rawPeer) join(peerID string, wait bool) error {
	r.peerID = peerID
	if err := r.sendFrame(joinFrame(peerID)); err != nil {
		return err
	}
	if !wait {
		return nil
	}
	m, err := r.next(time.Now().Add(10 * time.Second))
	if err != nil {
		return err
	}
	if m.Type != wire.TypePeer {
		return fmt.Errorf("join %s: got %s (%s)", peerID, m.Type, m.ErrorMessage)
	}
	r.server = m.SenderID
	return nil
}

func (r *rawPeer) sendFrame(f frame) error {
	r.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return r.ws.WriteMessage(f.typ, f.data)
}

// send sends a message of the joined peer; SenderID and TargetID are
// filled in when empty.
func (r *rawPeer) send(m wire.Message) error {
	if m.SenderID == "" {
		m.SenderID = r.peerID
	}
	if m.TargetID == "" && m.Type != wire.TypeJoin && m.Type != wire.TypeLeave {
		m.TargetID = r.server
	}
	return r.sendFrame(msgFrame(m))
}

// closedError is what ended a raw peer's connection.
type closedError struct {
	code int // -1 without a close frame
	text string
}

func (e *closedError) Error() string { return fmt.Sprintf("closed %d %q", e.code, e.text) }

// next reads one message; the connection's end is a *closedError.
func (r *rawPeer) next(deadline time.Time) (wire.Message, error) {
	r.ws.SetReadDeadline(deadline)
	typ, b, err := r.ws.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			return wire.Message{}, &closedError{code: ce.Code, text: ce.Text}
		case isTimeout(err):
			return wire.Message{}, fmt.Errorf("%w: %v", errDeadline, err)
		}
		return wire.Message{}, &closedError{code: -1, text: err.Error()}
	}
	if typ != websocket.BinaryMessage {
		return wire.Message{}, fmt.Errorf("relay sent frame type %d", typ)
	}
	return wire.Decode(b)
}

// until reads until done reports true for a message, and returns every
// message read.
func (r *rawPeer) until(deadline time.Time, done func(wire.Message) bool) ([]wire.Message, error) {
	var got []wire.Message
	for {
		m, err := r.next(deadline)
		if err != nil {
			return got, err
		}
		got = append(got, m)
		if done(m) {
			return got, nil
		}
	}
}

// ended reads until the connection ends and returns how it ended and the
// types of the messages read before.
func (r *rawPeer) ended(deadline time.Time) (*closedError, []string, error) {
	var types []string
	for {
		m, err := r.next(deadline)
		var ce *closedError
		switch {
		case errors.As(err, &ce):
			return ce, types, nil
		case err != nil:
			return nil, types, err
		}
		types = append(types, m.Type)
	}
}

func (r *rawPeer) close() { r.ws.Close() }

// emptyRequest is the first sync message of a peer that holds nothing, as
// automerge-repo sends it in a request.
func emptyRequest(t *testing.T) []byte {
	t.Helper()
	d, err := crdt.New("00ff")
	require.NoError(t, err)
	msg, ok := crdt.NewSyncState(d).Generate()
	require.True(t, ok)
	return msg
}

// randomDocIDs returns n document ids drawn from r.
func randomDocIDs(t *testing.T, r randReader, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		id, err := wire.NewDocumentID(r)
		require.NoError(t, err)
		out[i] = id
	}
	return out
}

// changesFor builds, with a throwaway local peer, the sync message that
// carries every change of doc to a peer that holds nothing of it.
func changesFor(t *testing.T, doc *crdt.Doc) []byte {
	t.Helper()
	s := crdt.NewSyncState(doc)
	hello, ok := s.Generate()
	require.True(t, ok)
	empty, err := crdt.New("0e0e")
	require.NoError(t, err)
	se := crdt.NewSyncState(empty)
	_, err = se.Receive(hello)
	require.NoError(t, err)
	reply, ok := se.Generate()
	require.True(t, ok)
	_, err = s.Receive(reply)
	require.NoError(t, err)
	full, ok := s.Generate()
	require.True(t, ok)
	return full
}

// A CBOR kind that a field may be given instead of the one it wants.
type cborKind struct {
	name string
	enc  []byte // nil: the key is left out
}

var float15 = func() []byte {
	b := []byte{0xfb, 0, 0, 0, 0, 0, 0, 0, 0}
	bits := math.Float64bits(1.5)
	for i := range 8 {
		b[1+i] = byte(bits >> (56 - 8*i))
	}
	return b
}()

// wrongKinds is every kind the table tries. Which are wrong for a field is
// decided per field (fieldSpec.right).
var wrongKinds = []cborKind{
	{"absent", nil},
	{"unsigned", []byte{0x07}},
	{"negative", []byte{0x20}},
	{"bytes", []byte{0x41, 0x01}},
	{"empty bytes", []byte{0x40}},
	{"text", []byte{0x61, 'x'}},
	{"empty text", []byte{0x60}},
	{"invalid UTF-8 text", []byte{0x62, 0xff, 0xfe}},
	{"array", []byte{0x81, 0x61, 'x'}},
	{"array of numbers", []byte{0x81, 0x01}},
	{"map", []byte{0xa1, 0x61, 'a', 0x01}},
	{"bool", []byte{0xf5}},
	{"null", []byte{0xf6}},
	{"undefined", []byte{0xf7}},
	{"float 1.5", float15},
	{"tag 1", []byte{0xc1, 0x00}},
}

// fieldSpec is a field of a message type and the kinds it accepts.
type fieldSpec struct {
	name  string
	right []string // kinds that are not wrong for it
}

// messageSpecs lists, for every message type of protocol "1", a valid
// message (key -> CBOR item) and its fields. Optional fields accept null,
// undefined and absence; their arrays and maps are of the right kind
// whatever they hold (supportedProtocolVersions ["x"] is refused, but as an
// unsupported version, not as a malformed frame).
func messageSpecs(t *testing.T, peerID, docID string, data []byte) map[string]struct {
	base   map[string]cbor.RawMessage
	fields []fieldSpec
} {
	t.Helper()
	enc := func(v any) cbor.RawMessage {
		b, err := cbor.Marshal(v)
		require.NoError(t, err)
		return b
	}
	text := []string{"text"}
	optional := func(kinds ...string) []string { return append([]string{"absent", "null", "undefined"}, kinds...) }
	common := func(typ string) map[string]cbor.RawMessage {
		return map[string]cbor.RawMessage{"type": enc(typ), "senderId": enc(peerID), "targetId": enc("relay")}
	}
	specs := map[string]struct {
		base   map[string]cbor.RawMessage
		fields []fieldSpec
	}{}
	add := func(typ string, base map[string]cbor.RawMessage, fields ...fieldSpec) {
		specs[typ] = struct {
			base   map[string]cbor.RawMessage
			fields []fieldSpec
		}{base, append([]fieldSpec{{"type", nil}, {"senderId", text}}, fields...)}
	}
	md := enc(map[string]any{"storageId": "st-" + peerID, "isEphemeral": false})

	join := common(wire.TypeJoin)
	delete(join, "targetId")
	join["peerMetadata"] = md
	join["supportedProtocolVersions"] = enc([]string{"1"})
	add(wire.TypeJoin, join,
		fieldSpec{"peerMetadata", optional("map")},
		fieldSpec{"supportedProtocolVersions", optional("array", "array of numbers")})

	peer := common(wire.TypePeer)
	peer["peerMetadata"] = md
	peer["selectedProtocolVersion"] = enc("1")
	add(wire.TypePeer, peer, fieldSpec{"targetId", text}, fieldSpec{"peerMetadata", optional("map")}, fieldSpec{"selectedProtocolVersion", text})

	errMsg := common(wire.TypeError)
	errMsg["message"] = enc("oops")
	add(wire.TypeError, errMsg, fieldSpec{"targetId", text}, fieldSpec{"message", []string{"text", "empty text"}})

	leave := common(wire.TypeLeave)
	delete(leave, "targetId")
	add(wire.TypeLeave, leave)

	for _, typ := range []string{wire.TypeSync, wire.TypeRequest} {
		m := common(typ)
		m["documentId"] = enc(docID)
		m["data"] = enc(data)
		add(typ, m, fieldSpec{"targetId", text}, fieldSpec{"documentId", nil}, fieldSpec{"data", []string{"bytes"}})
	}

	unavail := common(wire.TypeDocUnavailable)
	unavail["documentId"] = enc(docID)
	add(wire.TypeDocUnavailable, unavail, fieldSpec{"targetId", text}, fieldSpec{"documentId", nil})

	eph := common(wire.TypeEphemeral)
	eph["documentId"] = enc(docID)
	eph["data"] = enc([]byte{0xa0})
	eph["count"] = enc(1)
	eph["sessionId"] = enc("session")
	add(wire.TypeEphemeral, eph, fieldSpec{"targetId", text}, fieldSpec{"documentId", nil}, fieldSpec{"data", []string{"bytes"}},
		fieldSpec{"count", []string{"unsigned"}}, fieldSpec{"sessionId", text})

	rsc := common(wire.TypeRemoteSubscriptionChange)
	rsc["add"] = enc([]string{"st-a"})
	rsc["remove"] = enc([]string{})
	add(wire.TypeRemoteSubscriptionChange, rsc, fieldSpec{"targetId", text},
		fieldSpec{"add", optional("array")}, fieldSpec{"remove", optional("array")})

	rhc := common(wire.TypeRemoteHeadsChanged)
	rhc["documentId"] = enc(docID)
	rhc["newHeads"] = enc(map[string]any{"st-a": map[string]any{"heads": []string{}, "timestamp": 0}})
	add(wire.TypeRemoteHeadsChanged, rhc, fieldSpec{"targetId", text}, fieldSpec{"documentId", nil}, fieldSpec{"newHeads", nil})
	return specs
}

// wrongFieldCase is one frame of the wrong-field-type table.
type wrongFieldCase struct {
	typ, field, kind string
	frame            []byte
	decodeErr        error // what wire.Decode says of it
}

// wrongFieldCases generates the table: every message type x every field
// it requires or reads x every CBOR kind that field does not accept. Each
// frame is checked to decode locally first (the base message must, the
// broken one must not), so that the table cannot test nothing.
func wrongFieldCases(t *testing.T, peerID, docID string, data []byte) []wrongFieldCase {
	t.Helper()
	specs := messageSpecs(t, peerID, docID, data)
	var out []wrongFieldCase
	for _, typ := range slices.Sorted(func(yield func(string) bool) {
		for k := range specs {
			if !yield(k) {
				return
			}
		}
	}) {
		spec := specs[typ]
		base, err := cbor.Marshal(spec.base)
		require.NoError(t, err)
		_, err = wire.Decode(base)
		require.NoError(t, err, "the valid %s message of the table does not decode", typ)
		for _, f := range spec.fields {
			for _, k := range wrongKinds {
				if slices.Contains(f.right, k.name) {
					continue
				}
				m := make(map[string]cbor.RawMessage, len(spec.base))
				for key, v := range spec.base {
					m[key] = v
				}
				if k.enc == nil {
					delete(m, f.name)
				} else {
					m[f.name] = k.enc
				}
				b, err := cbor.Marshal(m)
				require.NoError(t, err)
				_, derr := wire.Decode(b)
				require.Error(t, derr, "%s.%s as %s decodes: the table is wrong", typ, f.name, k.name)
				out = append(out, wrongFieldCase{typ: typ, field: f.name, kind: k.name, frame: b, decodeErr: derr})
			}
		}
	}
	return out
}

// deepMap is a CBOR map nested depth levels deep: {"a": {"a": … null}}.
func deepMap(depth int) []byte {
	b := bytes.Repeat([]byte{0xa1, 0x61, 'a'}, depth)
	return append(b, 0xf6)
}

// deepArray is [[[…null…]]], depth levels; indefinite uses indefinite-
// length arrays.
func deepArray(depth int, indefinite bool) []byte {
	if !indefinite {
		return append(bytes.Repeat([]byte{0x81}, depth), 0xf6)
	}
	b := append(bytes.Repeat([]byte{0x9f}, depth), 0xf6)
	return append(b, bytes.Repeat([]byte{0xff}, depth)...)
}

// mapWith encodes a map of the given text keys and raw items, in order.
func mapWith(kv ...any) []byte {
	b := []byte{0xb8, byte(len(kv) / 2)}
	for i := 0; i < len(kv); i += 2 {
		k, _ := cbor.Marshal(kv[i].(string))
		b = append(b, k...)
		switch v := kv[i+1].(type) {
		case []byte:
			b = append(b, v...)
		default:
			e, _ := cbor.Marshal(v)
			b = append(b, e...)
		}
	}
	return b
}

// rawFrameHeader is the head of a masked client frame that announces a
// payload of n bytes, as a client that lies about the length writes it.
func rawFrameHeader(opcode int, n uint64) []byte {
	b := []byte{0x80 | byte(opcode), 0x80 | 127}
	for i := 7; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return append(b, 0x11, 0x22, 0x33, 0x44) // the mask key
}
