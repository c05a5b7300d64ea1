package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/wire"
)

// The hostile-client suite: the relay binary under attack from clients
// that send garbage, lie about sizes, flood, hold thousands of sockets or
// never read, while honest clients keep editing a shared document. Every
// case ends with hostileRelay.check: the relay process is up and answers
// /healthz, the honest clients were acknowledged during the case, no
// hostile connection lingers, and the relay's resident memory stays under
// hostileRSSBound. At the end the honest clients converge and a fresh
// client verifies that every head the relay announced to them is stored.
// TestHostileAuth does the same against a relay that requires tokens.

const (
	hostileMaxFrame = 4 << 20 // -max-frame-bytes of the suite's relay
	// -max-loaded-bytes of the suite's relay: the stored size of the
	// documents its workers may hold (they hold about four times that).
	hostileMaxLoaded = 64 << 20
	hostileMaxDocs   = 1000 // -max-docs-per-connection
	hostileMaxConns  = 3100 // -max-connections
	hostileManyConn  = 3000 // connections held at once
	hostileBurst     = 5000 // -message-burst
	hostileRate      = 1000 // -message-rate (per second)
)

// refusal is what a hostile connection must end with.
type refusal struct {
	code     int
	errorMsg string // a substring of the relay's error message; "" wants none
}

// expectRefused sends frames on a new connection and checks that the
// relay answers with an error message (when want.errorMsg is set), closes
// with want.code, and sends no document data.
func expectRefused(addr string, want refusal, frames ...frame) (probeResult, error) {
	res, err := probe(addr, 20*time.Second, nil, frames...)
	if err != nil {
		return res, err
	}
	var errs []error
	if !res.closed || res.closeCode != want.code {
		errs = append(errs, fmt.Errorf("closed %v with %d, want %d", res.closed, res.closeCode, want.code))
	}
	if want.errorMsg != "" && !strings.Contains(res.errorMsg, want.errorMsg) {
		errs = append(errs, fmt.Errorf("error message %q does not contain %q", res.errorMsg, want.errorMsg))
	}
	for _, typ := range res.types {
		if typ == wire.TypeSync {
			errs = append(errs, errors.New("the relay sent document data to a hostile connection"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%s: %w", res, err)
	}
	return res, nil
}

// runParallel runs fn(w, i) for every i in [0, n) on workers goroutines
// (w is the goroutine's index) and returns every error.
func runParallel(n, workers int, fn func(w, i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(w, i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func TestHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary under attack")
	}
	start := time.Now()
	h := startHostile(t, nil, 3, "-addr", "127.0.0.1:0", "-data", t.TempDir(),
		"-max-frame-bytes", fmt.Sprint(hostileMaxFrame),
		"-max-docs-per-connection", fmt.Sprint(hostileMaxDocs),
		"-max-connections", fmt.Sprint(hostileMaxConns),
		"-message-rate", fmt.Sprint(hostileRate), "-message-burst", fmt.Sprint(hostileBurst),
		"-join-timeout", "3s",
		"-max-loaded-bytes", fmt.Sprint(hostileMaxLoaded))
	addr := h.p.addr
	rnd := rand.New(rand.NewPCG(e2eSeed, 8))
	ids := randReader{rand.New(rand.NewPCG(e2eSeed, 9))}
	request := emptyRequest(t)
	tried := 0

	// Slowloris at the HTTP level: sockets that send half a request
	// header and nothing more. http.Server's ReadHeaderTimeout (10 s)
	// closes them; they are checked at the end.
	const halfOpen = 200
	lorisStart := time.Now()
	type lorisEnd struct {
		after time.Duration
		err   error
	}
	lorisEnded := make(chan lorisEnd, halfOpen)
	for range halfOpen {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n"))
		require.NoError(t, err)
		go func() {
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			_, err := bufio.NewReader(c).ReadString(0) // until the server closes it
			e := lorisEnd{after: time.Since(lorisStart)}
			if isTimeout(err) {
				e.err = fmt.Errorf("still open after %v", e.after)
			}
			lorisEnded <- e
		}()
	}

	t.Run("random bytes", func(t *testing.T) {
		const n = 64
		cases := make([][]frame, n)
		for i := range cases {
			size := 1 + rnd.IntN(4096)
			if i%8 == 0 {
				size = 1 + rnd.IntN(hostileMaxFrame/4)
			}
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			_, err := wire.Decode(b)
			require.Error(t, err, "random frame %d decodes", i)
			if i%2 == 0 {
				cases[i] = []frame{binFrame(b)}
			} else {
				cases[i] = []frame{joinFrame(fmt.Sprintf("rnd-%d", i)), binFrame(b)}
			}
		}
		err := runParallel(n, 4, func(_, i int) error {
			_, err := expectRefused(addr, refusal{engine.CloseUnsupportedData, "malformed message"}, cases[i]...)
			return err
		})
		require.NoError(t, err)
		tried += n
		h.check(t, "random bytes", n, "each: error, closed 1003")
	})

	t.Run("CBOR null and other non-maps", func(t *testing.T) {
		items := map[string][]byte{
			"null": {0xf6}, "undefined": {0xf7}, "empty frame": {}, "zero": {0x00}, "text": {0x61, 'x'},
			"empty array": {0x80}, "false": {0xf4}, "break": {0xff}, "self-describe tag alone": {0xd9, 0xd9, 0xf7},
			"self-described null": {0xd9, 0xd9, 0xf7, 0xf6}, "truncated map": {0xa1, 0x61, 'a'},
			"map then garbage":        append(mapWith("type", "join", "senderId", "x"), 0x00),
			"map claiming 2^32 pairs": {0xba, 0xff, 0xff, 0xff, 0xff}, "bytes claiming 2^63": {0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			"integer keys": {0xa2, 0x01, 0x02, 0x03, 0x04},
		}
		n := 0
		for name, b := range items {
			for _, afterJoin := range []bool{false, true} {
				frames := []frame{binFrame(b)}
				if afterJoin {
					frames = append([]frame{joinFrame("nonmap")}, frames...)
				}
				_, err := expectRefused(addr, refusal{engine.CloseUnsupportedData, "malformed message"}, frames...)
				require.NoError(t, err, "%s (after join %v)", name, afterJoin)
				n++
			}
		}
		tried += n
		h.check(t, "CBOR null and non-maps", n, "each: error, closed 1003")
	})

	t.Run("deep nesting", func(t *testing.T) {
		deep10k, deep100k := deepMap(10_000), deepMap(100_000)
		tags := append(bytes.Repeat([]byte{0xc6}, 10_000), 0x00)
		cases := []struct {
			name   string
			frames []frame
		}{
			{"top-level map 10,000 deep", []frame{binFrame(deep10k)}},
			{"top-level map 100,000 deep", []frame{binFrame(deep100k)}},
			{"join with a 10,000-deep map under an unknown key", []frame{binFrame(mapWith("type", "join", "senderId", "deep", "x", deep10k))}},
			{"sync with 10,000 nested arrays", []frame{joinFrame("deep-a"), binFrame(mapWith("type", "sync", "senderId", "deep-a", "targetId", "r", "documentId", h.shared, "data", request, "x", deepArray(10_000, false)))}},
			{"sync with 10,000 nested indefinite arrays", []frame{joinFrame("deep-i"), binFrame(mapWith("type", "sync", "senderId", "deep-i", "targetId", "r", "documentId", h.shared, "data", request, "x", deepArray(10_000, true)))}},
			{"sync whose data is a 10,000-deep map", []frame{joinFrame("deep-d"), binFrame(mapWith("type", "sync", "senderId", "deep-d", "targetId", "r", "documentId", h.shared, "data", deep10k))}},
			{"peerMetadata 10,000 deep", []frame{binFrame(mapWith("type", "join", "senderId", "deep-m", "peerMetadata", deep10k))}},
			{"10,000 nested tags", []frame{joinFrame("deep-t"), binFrame(mapWith("type", "ephemeral", "senderId", "deep-t", "targetId", "r", "documentId", h.shared, "data", []byte{0xa0}, "count", 1, "sessionId", "s", "x", tags))}},
		}
		for _, tc := range cases {
			_, err := wire.Decode(tc.frames[len(tc.frames)-1].data)
			require.Error(t, err, tc.name)
			_, err = expectRefused(addr, refusal{engine.CloseUnsupportedData, "malformed message"}, tc.frames...)
			require.NoError(t, err, tc.name)
		}
		tried += len(cases)
		h.check(t, "deep nesting", len(cases), "each: error, closed 1003")
	})

	t.Run("wrong field types", func(t *testing.T) {
		const workers = 6
		var tables [workers][]wrongFieldCase
		for w := range workers {
			tables[w] = wrongFieldCases(t, fmt.Sprintf("wrongtype-%d", w), h.shared, request)
		}
		n := len(tables[0])
		types, fields := map[string]bool{}, map[string]bool{}
		for _, c := range tables[0] {
			types[c.typ], fields[c.typ+"."+c.field] = true, true
		}
		err := runParallel(n, workers, func(w, i int) error {
			c := tables[w][i]
			frames := []frame{binFrame(c.frame)}
			if c.typ != wire.TypeJoin {
				frames = append([]frame{joinFrame(fmt.Sprintf("wrongtype-%d", w))}, frames...)
			}
			// The relay tells the client exactly what its decoder found.
			_, err := expectRefused(addr, refusal{engine.CloseUnsupportedData, c.decodeErr.Error()}, frames...)
			if err != nil {
				return fmt.Errorf("%s.%s as %s: %w", c.typ, c.field, c.kind, err)
			}
			return nil
		})
		require.NoError(t, err)
		tried += n
		h.check(t, "wrong field types", n, fmt.Sprintf("%d types x %d fields x wrong kinds; each: the decoder's error, closed 1003", len(types), len(fields)))
	})

	t.Run("huge frames", func(t *testing.T) {
		big := make([]byte, hostileMaxFrame+1)
		tooBig := refusal{code: engine.CloseTooBig}
		n := 0
		for name, frames := range map[string][]frame{
			"max+1 before join":       {binFrame(big)},
			"max+1 after join":        {joinFrame("big"), binFrame(big)},
			"max+1 text after join":   {joinFrame("bigtext"), {typ: websocket.TextMessage, data: big}},
			"max+1 as ephemeral data": {joinFrame("bigeph"), msgFrame(wire.Message{Type: wire.TypeEphemeral, SenderID: "bigeph", TargetID: "r", DocumentID: h.shared, Data: big[:hostileMaxFrame], Count: 1, SessionID: "s"})},
		} {
			_, err := expectRefused(addr, tooBig, frames...)
			require.NoError(t, err, name)
			n++
		}
		// Frames whose header announces more than is sent: refused on
		// the header, before anything is allocated for them.
		for _, announced := range []uint64{1 << 40, 1<<63 - 1, 1 << 63} {
			r, _, err := dialRaw("ws://"+addr+"/", dialOptions{})
			require.NoError(t, err)
			require.NoError(t, r.join(fmt.Sprintf("liar-%d", n), true))
			_, err = r.ws.UnderlyingConn().Write(append(rawFrameHeader(websocket.BinaryMessage, announced), make([]byte, 1024)...))
			require.NoError(t, err)
			ce, _, err := r.ended(time.Now().Add(10 * time.Second))
			require.NoError(t, err, "announced %d bytes", announced)
			if announced < 1<<63 {
				assert.Equal(t, engine.CloseTooBig, ce.code, "announced %d bytes: %s", announced, ce)
			} else {
				// 2^63 breaks RFC 6455 itself (the top bit must be 0):
				// the relay may close with or without a code.
				t.Logf("a frame announcing 2^63 bytes: %s", ce)
			}
			r.close()
			n++
		}
		// Exactly -max-frame-bytes, holding a real document: accepted and
		// stored.
		var doc *crdt.Doc
		var f frame
		docID := randomDocIDs(t, ids, 1)[0]
		size := hostileMaxFrame - 1024
		for range 4 {
			var err error
			doc, err = crdt.New("b16b16")
			require.NoError(t, err)
			blob := make([]byte, size)
			randReader{rnd}.Read(blob)
			_, err = doc.Change(time.Time{}, "", func(tx *crdt.Tx) error { return tx.Set([]any{"blob"}, blob) })
			require.NoError(t, err)
			f = msgFrame(wire.Message{Type: wire.TypeSync, SenderID: "at-limit", TargetID: "r", DocumentID: docID, Data: changesFor(t, doc)})
			if len(f.data) == hostileMaxFrame {
				break
			}
			size += hostileMaxFrame - len(f.data)
		}
		require.Equal(t, hostileMaxFrame, len(f.data), "could not build a frame of exactly the limit")
		r, err := joinRaw("ws://"+addr+"/", "at-limit", dialOptions{})
		require.NoError(t, err)
		require.NoError(t, r.sendFrame(f))
		got, err := r.until(time.Now().Add(20*time.Second), func(m wire.Message) bool { return m.Type == wire.TypeSync && m.DocumentID == docID })
		require.NoError(t, err, "a frame of exactly the limit: %v", got)
		r.close()
		reader, err := newClient("limit-reader", "st-limit-reader", e2eSeed)
		require.NoError(t, err)
		require.NoError(t, reader.connect(addr, "limit-reader"))
		require.NoError(t, reader.request(docID))
		require.NoError(t, reader.pumpUntil(time.Now().Add(20*time.Second), func() bool { return reader.docs[docID].caughtUp() }))
		assert.Equal(t, doc.Heads(), reader.docs[docID].doc.Heads(), "the document sent in a frame of exactly the limit is stored")
		reader.disconnect()
		n++
		// Just below the limit, but garbage as sync data: amcheck refuses it.
		junk := make([]byte, hostileMaxFrame-1024)
		randReader{rnd}.Read(junk)
		junk[0] = 0x42 // a sync message's first byte, so that it is parsed
		_, err = expectRefused(addr, refusal{engine.ClosePolicyViolation, "rejected"}, joinFrame("junk"),
			msgFrame(wire.Message{Type: wire.TypeSync, SenderID: "junk", TargetID: "r", DocumentID: randomDocIDs(t, ids, 1)[0], Data: junk}))
		require.NoError(t, err)
		n++
		tried += n
		h.check(t, "huge frames", n, "above the limit: closed 1009 (lying headers too); at the limit: stored; garbage below it: error, 1008")
	})

	t.Run("join flood, one peer id", func(t *testing.T) {
		// Every join replaces the connection that held the peer id before
		// (automerge-repo's reconnect semantics): a connection may be
		// replaced before its own join was answered. Exactly one stays.
		const n = 200
		peers := make([]*rawPeer, n)
		err := runParallel(n, 16, func(_, i int) error {
			r, _, err := dialRaw("ws://"+addr+"/", dialOptions{})
			if err == nil {
				peers[i] = r
				err = r.join("dup-peer", false)
			}
			return err
		})
		require.NoError(t, err)
		type end struct {
			answered bool
			ce       *closedError
		}
		ends := make(chan end, n)
		for _, r := range peers {
			go func() {
				var e end
				_, err := r.until(time.Now().Add(15*time.Second), func(m wire.Message) bool {
					e.answered = e.answered || m.Type == wire.TypePeer
					return false
				})
				if !errors.As(err, &e.ce) {
					e.ce = nil // still open at the deadline or closed by the test
				}
				ends <- e
			}()
		}
		replaced, unanswered := 0, 0
		for range n - 1 {
			e := <-ends
			require.NotNil(t, e.ce, "a replaced connection was not closed")
			assert.Equal(t, engine.CloseNormal, e.ce.code, e.ce.text)
			assert.Contains(t, e.ce.text, "replaced")
			replaced++
			if !e.answered {
				unanswered++
			}
		}
		require.Eventually(t, func() bool { return h.p.metric(t, "amsync_connections") == h.baseConns+1 }, 10*time.Second, 5*time.Millisecond)
		for _, r := range peers {
			r.close()
		}
		last := <-ends
		assert.True(t, last.answered, "the connection that stayed was answered")
		if last.ce != nil {
			assert.Equal(t, -1, last.ce.code, "the last connection stayed open until the client closed it: %s", last.ce)
		}
		tried += n
		h.check(t, "join flood, one peer id", n, fmt.Sprintf("%d replaced (closed 1000; %d before their join was answered), the last one kept", replaced, unanswered))
	})

	t.Run("join flood, one connection", func(t *testing.T) {
		const n = 3000
		r, err := joinRaw("ws://"+addr+"/", "rejoiner", dialOptions{})
		require.NoError(t, err)
		defer r.close()
		type result struct {
			peers int
			end   error
		}
		done := make(chan result, 1)
		go func() {
			got, err := r.until(time.Now().Add(30*time.Second), func(wire.Message) bool { return false })
			res := result{end: err}
			for _, m := range got {
				if m.Type == wire.TypePeer {
					res.peers++
				}
			}
			done <- res
		}()
		for range n - 1 {
			require.NoError(t, r.sendFrame(joinFrame("rejoiner")))
		}
		// Another peer id on the same connection is a violation.
		require.NoError(t, r.sendFrame(joinFrame("someone-else")))
		res := <-done
		assert.Equal(t, n-1, res.peers, "a repeated join is answered with peer")
		var ce *closedError
		require.ErrorAs(t, res.end, &ce)
		assert.Equal(t, engine.ClosePolicyViolation, ce.code, ce.text)
		tried += n
		h.check(t, "join flood, one connection", n, "each repeated join answered; another peer id: error, closed 1008")
	})

	t.Run("request flood", func(t *testing.T) {
		const n = 6000
		docs := randomDocIDs(t, ids, n)
		r, err := joinRaw("ws://"+addr+"/", "requester", dialOptions{})
		require.NoError(t, err)
		defer r.close()
		type tally struct {
			unavailable, tooMany, other int
			err                         error
		}
		done := make(chan tally, 1)
		// At most 1,000 requests unanswered: a refused request costs two
		// frames out, and a client that pipelines more than its send
		// queue (4096 frames) holds is disconnected as a slow reader.
		window := make(chan struct{}, 1000)
		go func() {
			var tl tally
			_, tl.err = r.until(time.Now().Add(60*time.Second), func(m wire.Message) bool {
				switch {
				case m.Type == wire.TypeDocUnavailable:
					tl.unavailable++
					<-window
				case m.Type == wire.TypeError && strings.Contains(m.ErrorMessage, "too many documents"):
					tl.tooMany++
				default:
					tl.other++
				}
				return tl.unavailable == n
			})
			done <- tl
		}()
		startAcks := h.acks.Load()
		begin := time.Now()
		for _, id := range docs {
			select {
			case window <- struct{}{}:
			case <-time.After(30 * time.Second):
				t.Fatalf("requests unanswered for 30 s")
			}
			require.NoError(t, r.send(wire.Message{Type: wire.TypeRequest, DocumentID: id, Data: request}))
		}
		tl := <-done
		took := time.Since(begin)
		require.NoError(t, tl.err)
		assert.Equal(t, n, tl.unavailable, "every request is answered doc-unavailable")
		assert.Equal(t, n-hostileMaxDocs, tl.tooMany, "requests past -max-docs-per-connection are refused with an error")
		assert.Zero(t, tl.other)
		// The token bucket let hostileBurst frames through at once and the
		// rest at hostileRate per second: the relay cannot have read them
		// faster.
		minTook := time.Duration(n+1-hostileBurst) * time.Second / hostileRate
		assert.GreaterOrEqual(t, took, minTook*8/10, "the message rate was not enforced")
		during := h.acks.Load() - startAcks
		active := h.p.metric(t, "amsync_documents_active")
		r.close()
		tried += n
		h.check(t, "request flood", n, fmt.Sprintf("%d doc-unavailable, %d refused past the cap, read in %v (rate-limited), %d honest acks meanwhile, %v documents active",
			tl.unavailable, tl.tooMany, took.Round(time.Millisecond), during, active))
	})

	t.Run("ephemeral flood", func(t *testing.T) {
		const n, size = 2000, 16 << 10
		r, err := joinRaw("ws://"+addr+"/", "shouter", dialOptions{})
		require.NoError(t, err)
		defer r.close()
		require.NoError(t, r.send(wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request}))
		_, err = r.until(time.Now().Add(10*time.Second), func(m wire.Message) bool { return m.Type == wire.TypeSync })
		require.NoError(t, err)
		drained := make(chan error, 1)
		go func() {
			_, err := r.until(time.Now().Add(60*time.Second), func(wire.Message) bool { return false })
			drained <- err
		}()
		payload := make([]byte, size)
		sentBefore := h.p.metric(t, "amsync_sent_bytes_total")
		for i := range n {
			require.NoError(t, r.send(wire.Message{Type: wire.TypeEphemeral, DocumentID: h.shared, Data: payload, Count: uint64(i + 1), SessionID: "shout"}))
		}
		// The honest clients receive all of it (they ignore ephemeral
		// messages) while they keep editing.
		want := sentBefore + float64(n*size*len(h.honest))
		require.Eventually(t, func() bool { return h.p.metric(t, "amsync_sent_bytes_total") >= want }, 30*time.Second, 10*time.Millisecond,
			"the relay did not forward the flood")
		r.close()
		<-drained
		tried += n
		h.check(t, "ephemeral flood", n, fmt.Sprintf("%d x %d KiB forwarded to %d honest peers (%d MiB), none disconnected", n, size>>10, len(h.honest), n*size*len(h.honest)>>20))
	})

	t.Run("thousands of connections", func(t *testing.T) {
		// Both ends of every socket are open at once: this process needs
		// a descriptor for each (the relay, a Go program too, raises its
		// own soft limit to the hard one as this one did).
		var lim syscall.Rlimit
		require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
		if need := uint64(hostileManyConn + halfOpen + 500); lim.Cur < need {
			lim.Cur = min(need, lim.Max)
			require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
			if lim.Cur < need {
				t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d descriptors needed", lim.Max, need)
			}
		}
		before, err := memOf(h.p.pid())
		require.NoError(t, err)
		heapBefore := h.p.metric(t, "go_memstats_heap_alloc_bytes")
		peers := make([]*rawPeer, hostileManyConn)
		begin := time.Now()
		err = runParallel(hostileManyConn, 32, func(_, i int) error {
			r, err := joinRaw("ws://"+addr+"/", fmt.Sprintf("many-%d", i), dialOptions{})
			peers[i] = r
			return err
		})
		require.NoError(t, err)
		opened := time.Since(begin)
		ends := make(chan error, hostileManyConn+200)
		for _, r := range peers {
			go func() { // reading answers the relay's pings
				_, _, err := r.ended(time.Now().Add(60 * time.Second))
				ends <- err
			}()
		}
		held := h.p.metric(t, "amsync_connections")
		require.Equal(t, h.baseConns+hostileManyConn, held)
		// The global cap: beyond -max-connections, 503 at the upgrade.
		room := hostileMaxConns - int(held)
		limitBefore := h.p.metric(t, `amsync_connection_errors_total{kind="connection_limit"}`)
		var extra []*rawPeer
		refused := 0
		for i := range room + 20 {
			r, resp, err := dialRaw("ws://"+addr+"/", dialOptions{})
			if err != nil {
				require.NotNil(t, resp, "extra connection %d: %v", i, err)
				assert.Equal(t, 503, resp.StatusCode)
				refused++
				continue
			}
			require.NoError(t, r.join(fmt.Sprintf("extra-%d", i), true))
			extra = append(extra, r)
		}
		assert.Len(t, extra, room, "connections accepted up to the cap")
		assert.Equal(t, 20, refused)
		assert.Equal(t, float64(refused), h.p.metric(t, `amsync_connection_errors_total{kind="connection_limit"}`)-limitBefore)
		// The honest clients keep syncing while the sockets are held.
		acks := h.acks.Load()
		require.Eventually(t, func() bool { return h.acks.Load() > acks+10 }, 20*time.Second, 5*time.Millisecond, "honest clients stalled with %v connections open", held)
		m := h.memCheck(t, "thousands of connections (held)")
		heapHeld := h.p.metric(t, "go_memstats_heap_alloc_bytes")
		perConn := float64(m.relayRSS-before.relayRSS) / float64(hostileManyConn+len(extra))
		perConnHeap := (heapHeld - heapBefore) / float64(hostileManyConn+len(extra))
		for _, r := range append(peers, extra...) {
			r.close()
		}
		for range hostileManyConn {
			<-ends
		}
		tried += hostileManyConn + room + 20
		h.check(t, "thousands of connections", hostileManyConn+room+20, fmt.Sprintf("%d held at once, joined with distinct peer ids (opened in %v), %d more up to -max-connections, %d refused 503; while held: relay RSS %s (%.1f KiB per connection), Go heap %s (%.0f KiB per connection)",
			hostileManyConn, opened.Round(time.Millisecond), room, refused, mib(m.relayRSS), perConn/1024, mib(int64(heapHeld)), perConnHeap/1024))
	})

	t.Run("connections that never join", func(t *testing.T) {
		const n = 300
		peers := make([]*rawPeer, n)
		err := runParallel(n, 16, func(_, i int) error {
			r, _, err := dialRaw("ws://"+addr+"/", dialOptions{})
			peers[i] = r
			return err
		})
		require.NoError(t, err)
		err = runParallel(n, n, func(_, i int) error {
			ce, types, err := peers[i].ended(time.Now().Add(20 * time.Second))
			peers[i].close()
			switch {
			case err != nil:
				return err
			case ce.code != engine.ClosePolicyViolation || !strings.Contains(ce.text, "no join"):
				return fmt.Errorf("closed %s", ce)
			case len(types) != 1 || types[0] != wire.TypeError:
				return fmt.Errorf("received %v before the close", types)
			}
			return nil
		})
		require.NoError(t, err)
		tried += n
		h.check(t, "connections that never join", n, "each: error, closed 1008 after -join-timeout")
	})

	t.Run("pipelined uploads", func(t *testing.T) {
		// 48 documents of 3.8 MB (182 MB) sent on one connection without
		// waiting for acknowledgements. The relay reads while less than
		// -max-inflight-bytes-per-connection (16 MiB) of what it read is
		// unprocessed, then stops reading until the documents' tasks have
		// stored and answered it.
		const docs, size = 48, 3_800_000
		before, err := memOf(h.p.pid())
		require.NoError(t, err)
		pausesBefore := h.p.metric(t, "amsync_read_pauses_total")
		anon := sampleAnon(h.p.pid())
		seeder, err := newClient("pipeliner", "st-pipeliner", e2eSeed)
		require.NoError(t, err)
		require.NoError(t, seeder.connect(addr, "pipeliner"))
		defer seeder.disconnect()
		var big []string
		for range docs {
			id, err := seeder.createLarge(size) // no wait for the acknowledgement
			require.NoError(t, err)
			big = append(big, id)
		}
		require.NoError(t, seeder.settle(time.Now().Add(120*time.Second), big))
		seeder.disconnect()
		anonFirst, anonPeak := anon()
		after := h.memCheck(t, "pipelined uploads")
		pauses := h.p.metric(t, "amsync_read_pauses_total") - pausesBefore
		// What the relay holds for the pipeline is anonymous memory: the
		// frames in flight (16 MiB and one 4 MiB frame past it), each held
		// about four times on its way to the store, and Badger's memtables
		// and caches filling up (~100 MiB, bounded by badgerstore.Config).
		// Without the bound it grew with what the client sent (+157, +229,
		// +376 MiB for 12, 24, 48 uploads); with it, +55 to +133 MiB over
		// seven runs, whatever the count.
		// The store's memory-mapped value log is not counted: its pages are
		// the kernel's cache of what was written, which the kernel reclaims
		// under pressure (they are in VmHWM, and grow with what is stored).
		assert.Less(t, anonPeak-anonFirst, int64(160<<20), "the relay's anonymous memory grew by %s for %d x %.1f MB pipelined", mib(anonPeak-anonFirst), docs, float64(size)/1e6)
		assert.Less(t, h.p.metric(t, "amsync_inflight_bytes"), float64(1<<20), "the pipeline's bytes were not released once processed")
		tried += docs
		h.check(t, "pipelined uploads", docs, fmt.Sprintf("%d x %.1f MB sent without waiting: all stored; reading paused %.0f times; anonymous memory peaked %s above where it began (VmHWM +%s, the store's mapped files included)",
			docs, float64(size)/1e6, pauses, mib(anonPeak-anonFirst), mib(after.relayPeak-before.relayPeak)))
	})

	t.Run("slow reader", func(t *testing.T) {
		// 24 documents of 3.8 MB: 91 MB, more than a connection's send
		// queue (64 MiB) and the socket buffers hold.
		const docs, size = 24, 3_800_000
		seeder, err := newClient("seeder", "st-seeder", e2eSeed)
		require.NoError(t, err)
		require.NoError(t, seeder.connect(addr, "seeder"))
		var big []string
		for range docs {
			id, err := seeder.createLarge(size)
			require.NoError(t, err)
			big = append(big, id)
			// One upload at a time: "pipelined uploads" says why.
			require.NoError(t, seeder.settle(time.Now().Add(30*time.Second), []string{id}))
		}
		seeder.disconnect()
		seeded, err := memOf(h.p.pid())
		require.NoError(t, err)
		require.Eventually(t, func() bool { return h.p.metric(t, "amsync_connections") == h.baseConns }, 10*time.Second, 5*time.Millisecond)

		slowBefore := h.p.metric(t, "amsync_slow_consumers_closed_total")
		sentBefore := h.p.metric(t, "amsync_sent_bytes_total")
		r, _, err := dialRaw("ws://"+addr+"/", dialOptions{rcvBuf: 4096})
		require.NoError(t, err)
		defer r.close()
		require.NoError(t, r.join("slow-reader", false))
		for _, id := range big {
			require.NoError(t, r.send(wire.Message{Type: wire.TypeRequest, TargetID: "relay", DocumentID: id, Data: request}))
		}
		// The client reads nothing: the relay closes it once the queue is
		// full, and drops the socket when its blocked write times out.
		acks := h.acks.Load()
		require.Eventually(t, func() bool { return h.p.metric(t, "amsync_slow_consumers_closed_total") > slowBefore }, 40*time.Second, 10*time.Millisecond,
			"the slow reader was not disconnected")
		require.Eventually(t, func() bool { return h.p.metric(t, "amsync_connections") == h.baseConns }, 30*time.Second, 10*time.Millisecond,
			"the slow reader's socket was not dropped")
		sent := h.p.metric(t, "amsync_sent_bytes_total") - sentBefore
		heap := h.p.metric(t, "go_memstats_heap_inuse_bytes")
		m := h.memCheck(t, "slow reader")
		during := h.acks.Load() - acks
		// What reached the client before the drop, then the end.
		var syncs int
		ce, types, err := r.ended(time.Now().Add(30 * time.Second))
		require.NoError(t, err)
		for _, typ := range types {
			if typ == wire.TypeSync {
				syncs++
			}
		}
		assert.Less(t, syncs, docs, "the slow reader cannot have received every document")
		tried++
		h.check(t, "slow reader", 1, fmt.Sprintf("asked for %d x %.1f MB, read nothing: closed by the send-queue bound; %d documents reached its socket (%.1f MiB written), ended with %s; relay RSS %s after seeding, %s (peak %s, Go heap in use %s) at the drop; %d honest acks meanwhile",
			docs, float64(size)/1e6, syncs, sent/(1<<20), ce, mib(seeded.relayRSS), mib(m.relayRSS), mib(m.relayPeak), mib(int64(heap)), during))
	})

	t.Run("slowloris", func(t *testing.T) {
		// The half-sent requests of the start: the server closes them.
		var first, last time.Duration
		for i := range halfOpen {
			select {
			case e := <-lorisEnded:
				require.NoError(t, e.err)
				if i == 0 || e.after < first {
					first = e.after
				}
				last = max(last, e.after)
			case <-time.After(60 * time.Second):
				t.Fatal("half-sent requests still open")
			}
		}
		tried += halfOpen
		h.check(t, "slowloris (half-sent HTTP headers)", halfOpen, fmt.Sprintf("each closed by the server's header timeout, %v to %v after they began", first.Round(100*time.Millisecond), last.Round(100*time.Millisecond)))
	})

	verifier, err := newClient("verifier", "st-verifier", e2eSeed)
	require.NoError(t, err)
	require.NoError(t, verifier.connect(addr, "verifier"))
	defer verifier.disconnect()
	heads, verified := h.finish(t, verifier)
	require.NoError(t, h.p.alive())
	writes, acked := 0, 0
	for _, c := range h.honest {
		writes += c.docs[h.shared].writes
		acked += c.docs[h.shared].acks
	}
	h.summary(t, fmt.Sprintf("hostile clients: %d connections or frames tried in %d cases", tried, len(h.figures)))
	t.Logf("relay pid %d up throughout; peak relay RSS %s (bound %s), peak workers RSS %s (%d workers); honest: %d clients, %d writes, %d acks, converged on %d heads, %d announced heads verified, lost 0; total %v",
		h.p.pid(), mib(h.peak.relayPeak), mib(hostileRSSBound), mib(h.peak.workersRSS), h.peak.workers, len(h.honest), writes, acked, len(heads), verified, time.Since(start).Round(time.Millisecond))
	for _, l := range h.p.stderr.Lines("level=ERROR") {
		t.Logf("relay error: %s", truncateLine(l, 300))
	}
}

// TestHostileAuth attacks a relay started with -jwt-secret-file: tokens
// that must be refused (each from the three places a token is read),
// the per-principal connection cap, the origin allow-list, a token that
// expires while connected,
// a read-only client that writes, and a client without access that asks
// for, writes to and broadcasts on a document. Two honest clients with
// read-write tokens edit a shared document throughout; at the end a fresh
// reader checks that every head they were told of is stored and that no
// refused change was stored or forwarded.
func TestHostileAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary under attack")
	}
	start := time.Now()
	const perPrincipal = 8
	issuer := newTokenIssuer(t, "hostile-suite-secret")
	h := startHostile(t, issuer, 2, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-jwt-secret-file", issuer.file,
		"-max-connections-per-principal", fmt.Sprint(perPrincipal), "-join-timeout", "3s", "-allowed-origins", "https://app.example")
	tok := issuer.token
	ids := randReader{rand.New(rand.NewPCG(e2eSeed, 10))}
	request := emptyRequest(t)
	tried := 0
	// Changes the relay must never store or forward, by who tried them.
	refused := map[string]crdt.Hash{}
	// Documents no one with write access created: they must stay unknown.
	neverCreated := map[string]string{}

	t.Run("rejected tokens", func(t *testing.T) {
		now := time.Now().Unix()
		hs256 := `{"alg":"HS256","typ":"JWT"}`
		valid := tok(map[string]any{"sub": "someone", "docs": map[string]string{h.shared: "r"}})
		parts := strings.Split(valid, ".")
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"someone","docs":{"*":"rw"}}`)) + "." + parts[2]
		tokens := map[string]string{
			"garbage":                 "not-a-jwt",
			"signed with another key": signRaw([]byte("guessed-secret"), hs256, `{"sub":"mallory","docs":{"*":"rw"}}`),
			"expired":                 tok(map[string]any{"sub": "late", "exp": now - 60}),
			"not valid yet":           tok(map[string]any{"sub": "early", "nbf": now + 3600}),
			"alg none":                base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory"}`)) + ".",
			"alg HS512":               signRaw(issuer.secret, `{"alg":"HS512","typ":"JWT"}`, `{"sub":"mallory"}`),
			"claims swapped":          tampered,
			"docs grant not r or rw":  tok(map[string]any{"sub": "mallory", "docs": map[string]string{"*": "admin"}}),
			"exp not a number":        tok(map[string]any{"sub": "mallory", "exp": "never"}),
			"signature cut":           parts[0] + "." + parts[1] + ".",
		}
		unauthorizedBefore := h.p.metric(t, `amsync_connection_errors_total{kind="unauthorized"}`)
		n := 0
		try := func(name string, url string, header http.Header) {
			r, resp, err := dialRaw(url, dialOptions{header: header})
			if err == nil {
				r.close()
			}
			require.Error(t, err, "%s: upgraded", name)
			require.NotNil(t, resp, name)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, name)
			assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer", name)
			n++
		}
		try("no token", h.url(""), nil)
		try("empty bearer", h.url(""), http.Header{"Authorization": {"Bearer "}})
		try("basic credentials", h.url(""), http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("admin:admin"))}})
		for name, tk := range tokens {
			try(name+" (query)", h.url(tk), nil)
			try(name+" (header)", h.url(""), http.Header{"Authorization": {"Bearer " + tk}})
			try(name+" (cookie)", h.url(""), http.Header{"Cookie": {"relay_token=" + tk}})
		}
		assert.Equal(t, float64(n), h.p.metric(t, `amsync_connection_errors_total{kind="unauthorized"}`)-unauthorizedBefore)
		tried += n
		h.check(t, "rejected tokens", n, fmt.Sprintf("%d kinds of bad token x query, header, cookie, and none: each 401 with WWW-Authenticate, no WebSocket", len(tokens)))
	})

	t.Run("per-principal cap", func(t *testing.T) {
		capped := tok(map[string]any{"sub": "capped", "docs": map[string]string{"*": "r"}})
		var peers []*rawPeer
		defer func() {
			for _, r := range peers {
				r.close()
			}
		}()
		for i := range perPrincipal {
			r, err := joinRaw(h.url(capped), fmt.Sprintf("capped-%d", i), dialOptions{})
			require.NoError(t, err)
			peers = append(peers, r)
		}
		_, resp, err := dialRaw(h.url(capped), dialOptions{})
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		// Another principal is not affected.
		other, err := joinRaw(h.url(tok(map[string]any{"sub": "uncapped"})), "uncapped", dialOptions{})
		require.NoError(t, err)
		peers = append(peers, other)
		for _, r := range peers {
			r.close()
		}
		peers = nil
		tried += perPrincipal + 2
		h.check(t, "per-principal cap", perPrincipal+2, fmt.Sprintf("%d connections of one principal, the next 429, another principal unaffected", perPrincipal))
	})

	t.Run("origin allow-list", func(t *testing.T) {
		valid := tok(map[string]any{"sub": "browser", "docs": map[string]string{"*": "r"}})
		rejectedBefore := h.p.metric(t, `amsync_connection_errors_total{kind="origin_rejected"}`)
		_, resp, err := dialRaw(h.url(valid), dialOptions{header: http.Header{"Origin": {"https://evil.example"}}})
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a page of another origin, even with a valid token")
		_, resp, err = dialRaw(h.url(""), dialOptions{header: http.Header{"Origin": {"https://app.example"}}})
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the allowed origin without a token")
		r, _, err := dialRaw(h.url(valid), dialOptions{header: http.Header{"Origin": {"https://app.example"}}})
		require.NoError(t, err, "the allowed origin with a token")
		require.NoError(t, r.join("browser", true))
		r.close()
		assert.Equal(t, 1.0, h.p.metric(t, `amsync_connection_errors_total{kind="origin_rejected"}`)-rejectedBefore)
		tried += 3
		h.check(t, "origin allow-list", 3, "another origin: 403 even with a valid token; the allowed one: 401 without a token, accepted with one")
	})

	t.Run("token expiring while connected", func(t *testing.T) {
		exp := float64(time.Now().Add(1500*time.Millisecond).UnixMilli()) / 1000
		short := tok(map[string]any{"sub": "short-lived", "exp": exp, "docs": map[string]string{h.shared: "r"}})
		r, err := joinRaw(h.url(short), "short-lived", dialOptions{})
		require.NoError(t, err)
		defer r.close()
		require.NoError(t, r.send(wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request}))
		ce, types, err := r.ended(time.Now().Add(20 * time.Second))
		require.NoError(t, err)
		assert.Equal(t, engine.ClosePolicyViolation, ce.code, ce.text)
		assert.Contains(t, ce.text, "token expired")
		assert.Contains(t, types, wire.TypeError)
		late := time.Since(time.UnixMilli(int64(exp * 1000)))
		_, resp, err := dialRaw(h.url(short), dialOptions{})
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the expired token is refused at the next upgrade")
		tried += 2
		h.check(t, "token expiring while connected", 2, fmt.Sprintf("closed 1008 %q %v after exp; reconnecting with it: 401", ce.text, late.Round(time.Millisecond)))
	})

	t.Run("read-only client writes", func(t *testing.T) {
		reader, err := newClient("reader", "st-reader", e2eSeed)
		require.NoError(t, err)
		require.NoError(t, h.connect(reader, "reader", map[string]any{"sub": "reader", "docs": map[string]string{h.shared: "r"}}))
		defer reader.disconnect()
		require.NoError(t, reader.request(h.shared))
		require.NoError(t, reader.settle(time.Now().Add(10*time.Second), []string{h.shared}), "a read-only client reads")
		require.NoError(t, reader.edit(h.shared))
		head := reader.docs[h.shared].doc.Heads()
		require.Len(t, head, 1)
		refused["read-only change to the shared document"] = head[0]
		err = reader.pumpUntil(time.Now().Add(10*time.Second), func() bool { return false })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "read-only access: changes refused")
		reader.disconnect()

		// A principal that may read everything creates a document.
		doc, err := crdt.New("0eadbeef")
		require.NoError(t, err)
		_, err = doc.Change(time.Time{}, "", func(tx *crdt.Tx) error { return tx.Set([]any{"by"}, "read-only writer") })
		require.NoError(t, err)
		newID := randomDocIDs(t, ids, 1)[0]
		refused["read-only creation"] = doc.Heads()[0]
		neverCreated[newID] = "read-only creation"
		r, err := joinRaw(h.url(tok(map[string]any{"sub": "reader-all", "docs": map[string]string{"*": "r"}})), "reader-all", dialOptions{})
		require.NoError(t, err)
		defer r.close()
		require.NoError(t, r.send(wire.Message{Type: wire.TypeSync, DocumentID: newID, Data: changesFor(t, doc)}))
		got, err := r.until(time.Now().Add(10*time.Second), func(m wire.Message) bool { return m.Type == wire.TypeError })
		require.NoError(t, err, "%v", got)
		assert.Contains(t, got[len(got)-1].ErrorMessage, "read-only access: changes refused")
		// Still connected: it may go on reading.
		require.NoError(t, r.send(wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request}))
		got, err = r.until(time.Now().Add(10*time.Second), func(m wire.Message) bool { return m.Type == wire.TypeSync && m.DocumentID == h.shared })
		require.NoError(t, err, "%v", got)
		r.close()
		tried += 2
		h.check(t, "read-only client writes", 2, "each change refused with an error, the connection kept for reading")
	})

	t.Run("client without access", func(t *testing.T) {
		missing := randomDocIDs(t, ids, 1)[0]
		outsider, err := joinRaw(h.url(tok(map[string]any{"sub": "outsider", "docs": map[string]string{missing: "rw"}})), "outsider", dialOptions{})
		require.NoError(t, err)
		defer outsider.close()
		control, err := joinRaw(h.url(tok(map[string]any{"sub": "control", "docs": map[string]string{"*": "rw"}})), "control", dialOptions{})
		require.NoError(t, err)
		defer control.close()
		listener, err := joinRaw(h.url(tok(map[string]any{"sub": "listener", "docs": map[string]string{h.shared: "r"}})), "listener", dialOptions{})
		require.NoError(t, err)
		defer listener.close()
		require.NoError(t, listener.send(wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request}))
		_, err = listener.until(time.Now().Add(10*time.Second), func(m wire.Message) bool { return m.Type == wire.TypeSync })
		require.NoError(t, err)
		heard := make(chan []wire.Message, 1)
		go func() {
			got, _ := listener.until(time.Now().Add(20*time.Second), func(m wire.Message) bool {
				return m.Type == wire.TypeEphemeral && m.SessionID == "control"
			})
			heard <- got
		}()

		var seen []wire.Message
		ask := func(r *rawPeer, m wire.Message) wire.Message {
			require.NoError(t, r.send(m))
			got, err := r.until(time.Now().Add(10*time.Second), func(x wire.Message) bool {
				return x.DocumentID == m.DocumentID && x.Type != wire.TypeEphemeral
			})
			require.NoError(t, err)
			seen = append(seen, got...)
			return got[len(got)-1]
		}
		// Asking for the shared document and for one that exists nowhere:
		// the same answer, and the same as a principal with access gets
		// for the missing one.
		forbidden := ask(outsider, wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request})
		absent := ask(outsider, wire.Message{Type: wire.TypeRequest, DocumentID: missing, Data: request})
		reference := ask(control, wire.Message{Type: wire.TypeRequest, DocumentID: missing, Data: request})
		assert.Equal(t, wire.TypeDocUnavailable, forbidden.Type)
		forbidden.DocumentID = missing
		assert.Equal(t, absent, forbidden, "no access looks exactly like a missing document")
		reference.TargetID = absent.TargetID
		assert.Equal(t, reference, absent)

		// Writing to it: doc-unavailable again, nothing stored.
		doc, err := crdt.New("0badacce55")
		require.NoError(t, err)
		_, err = doc.Change(time.Time{}, "", func(tx *crdt.Tx) error { return tx.Set([]any{"by"}, "outsider") })
		require.NoError(t, err)
		refused["write without access"] = doc.Heads()[0]
		wrote := ask(outsider, wire.Message{Type: wire.TypeSync, DocumentID: h.shared, Data: changesFor(t, doc)})
		assert.Equal(t, wire.TypeDocUnavailable, wrote.Type)
		// Broadcasting on it: dropped. The request after it is answered
		// only once the broadcast was handled; the control's broadcast
		// then reaches the listener after the outsider's would have.
		require.NoError(t, outsider.send(wire.Message{Type: wire.TypeEphemeral, DocumentID: h.shared, Data: []byte{0xa0}, Count: 1, SessionID: "outsider"}))
		ask(outsider, wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request})
		require.NoError(t, control.send(wire.Message{Type: wire.TypeEphemeral, DocumentID: h.shared, Data: []byte{0xa0}, Count: 1, SessionID: "control"}))
		got := <-heard
		require.NotEmpty(t, got)
		assert.Equal(t, "control", got[len(got)-1].SessionID, "the control's broadcast arrived")
		for _, m := range got {
			assert.NotEqual(t, "outsider", m.SessionID, "a broadcast without access was forwarded")
		}
		for _, m := range seen {
			if m.DocumentID == h.shared {
				assert.Equal(t, wire.TypeDocUnavailable, m.Type, "the outsider received %s for the shared document", m.Type)
			}
		}
		outsider.close()
		control.close()
		listener.close()
		tried += 3
		h.check(t, "client without access", 3, "request, write and broadcast: doc-unavailable (identical to a missing document) or dropped")
	})

	t.Run("peer id of another principal", func(t *testing.T) {
		victim, err := joinRaw(h.url(tok(map[string]any{"sub": "victim", "docs": map[string]string{"*": "rw"}})), "victim-peer", dialOptions{})
		require.NoError(t, err)
		defer victim.close()
		mallory, err := joinRaw(h.url(tok(map[string]any{"sub": "mallory", "docs": map[string]string{}})), "victim-peer", dialOptions{})
		if err == nil {
			defer mallory.close()
		}
		require.NoError(t, victim.send(wire.Message{Type: wire.TypeRequest, DocumentID: h.shared, Data: request}))
		_, err = victim.until(time.Now().Add(10*time.Second), func(m wire.Message) bool { return m.Type == wire.TypeSync })
		require.NoError(t, err, "the victim was disconnected by another principal joining with its peer id")
		tried += 2
		h.check(t, "peer id of another principal", 2, "the victim keeps its connection")
	})

	auditor, err := newClient("auditor", "st-auditor", e2eSeed)
	require.NoError(t, err)
	require.NoError(t, h.connect(auditor, "auditor", map[string]any{"sub": "auditor", "docs": map[string]string{"*": "r"}}))
	defer auditor.disconnect()
	heads, verified := h.finish(t, auditor)
	// Nothing refused was stored, nor forwarded to the honest clients.
	for what, hash := range refused {
		assert.False(t, auditor.docs[h.shared].doc.HasChange(hash), "%s was stored", what)
		for _, c := range h.honest {
			assert.False(t, c.docs[h.shared].doc.HasChange(hash), "%s reached %s", what, c.name)
		}
	}
	for id, what := range neverCreated {
		require.NoError(t, auditor.request(id))
		require.NoError(t, auditor.pumpUntil(time.Now().Add(10*time.Second), func() bool { return auditor.docs[id].unavailable }), "%s: the document exists", what)
	}
	require.NoError(t, h.p.alive())
	writes, acked := 0, 0
	for _, c := range h.honest {
		writes += c.docs[h.shared].writes
		acked += c.docs[h.shared].acks
	}
	h.summary(t, fmt.Sprintf("hostile clients, authenticated relay: %d connections tried in %d cases", tried, len(h.figures)))
	t.Logf("relay pid %d up throughout; peak relay RSS %s; honest: %d clients, %d writes, %d acks, converged on %d heads, %d announced heads verified, lost 0; %d refused changes absent everywhere, %d refused creations unknown; total %v",
		h.p.pid(), mib(h.peak.relayPeak), len(h.honest), writes, acked, len(heads), verified, len(refused), len(neverCreated), time.Since(start).Round(time.Millisecond))
}

// sampleAnon samples the anonymous resident memory (RssAnon: heap,
// stacks, not the store's memory-mapped files) of process pid every 2 ms
// until the returned function is called, which returns the first sample
// and the highest. The Go heap gives memory back to the system slowly, so
// a peak lasts far longer than the sampling period.
func sampleAnon(pid int) func() (first, peak int64) {
	read := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "RssAnon:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb)
				return kb << 10
			}
		}
		return 0
	}
	first := read()
	var peak atomic.Int64
	peak.Store(first)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v := read(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		return first, peak.Load()
	}
}
