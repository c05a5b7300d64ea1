package wsrelay_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
	"github.com/amsync/amsync/wsrelay"
)

// What the network layer costs: frames through a real loopback WebSocket
// (httptest server, gorilla client), from the bare gorilla floor to the
// whole relay. Clients and server share the process: cpu-µs is the CPU
// time of both, which on a shared machine is steadier than wall time. Compare BenchmarkWebSocket/push with engine's
// BenchmarkPush/store=mem/core=inprocess, the same workload over in-memory
// connections.

const benchTimeout = 2 * time.Minute

var quiet = slog.New(slog.DiscardHandler)

// frameSize is a small sync frame: a sync message announcing one head with
// a Bloom filter of a few changes, in its CBOR envelope.
const frameSize = 160

// BenchmarkWebSocket measures frames per second over loopback:
//
//   - echo: gorilla only, a handler that writes back every frame; one op
//     is one frame there and back. The floor under everything else.
//   - ephemeral: the relay forwarding ephemeral frames from one client to
//     another on one document (read pump, session, document actor, send
//     queue, write pump; no automerge, no store). One op is one frame
//     delivered.
//   - push: clients push new small documents through the relay (engine on a
//     MemStore, automerge in process); four sync frames per document.
func BenchmarkWebSocket(b *testing.B) {
	b.Run("echo", benchEcho)
	b.Run("ephemeral", benchEphemeral)
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("push/clients=%d", clients), func(b *testing.B) { benchPush(b, clients) })
	}
}

func dial(b *testing.B, url string) *websocket.Conn {
	b.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ws.Close() })
	return ws
}

func wsURL(ts *httptest.Server) string { return "ws" + strings.TrimPrefix(ts.URL, "http") }

// pipeline writes n frames from one goroutine while this one reads n,
// failing after benchTimeout.
func pipeline(b *testing.B, n int, write func(i int) error, read func() error) {
	b.Helper()
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if err := write(i); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range n {
		if err := read(); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

func benchEcho(b *testing.B) {
	up := websocket.Upgrader{ReadBufferSize: 16 << 10, WriteBufferSize: 16 << 10}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			typ, p, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := ws.WriteMessage(typ, p); err != nil {
				return
			}
		}
	}))
	defer ts.Close()
	ws := dial(b, wsURL(ts))
	frame := make([]byte, frameSize)
	ws.SetReadDeadline(time.Now().Add(benchTimeout))
	b.SetBytes(frameSize)
	cpu := cpuTime()
	b.ResetTimer()
	pipeline(b, b.N,
		func(int) error { return ws.WriteMessage(websocket.BinaryMessage, frame) },
		func() error { _, _, err := ws.ReadMessage(); return err })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(cpuTime()-cpu)/1e3/float64(b.N), "cpu-µs/frame")
}

// relay is an engine on a MemStore behind a wsrelay.Server on loopback.
type relay struct {
	eng *engine.Engine
	url string
}

func newRelay(b *testing.B) *relay {
	b.Helper()
	st := store.NewMemStore()
	eng, err := engine.New(engine.Config{Store: st, PeerID: "bench-relay", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	// The per-connection message rate limit (default 1,000 frames/s after
	// a burst of 5,000) is policy, not transport: lift it, or these
	// benchmarks measure the limiter.
	srv, err := wsrelay.New(wsrelay.Config{Engine: eng, Logger: quiet, MessageRate: 1e12, MessageBurst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Error(err)
		}
		ts.Close()
		if err := eng.Close(ctx); err != nil {
			b.Error(err)
		}
		st.Close()
	})
	return &relay{eng: eng, url: wsURL(ts)}
}

// join connects a client with peer id id and waits for the peer reply.
func (r *relay) join(b *testing.B, id string) *websocket.Conn {
	b.Helper()
	ws := dial(b, r.url)
	write(b, ws, wire.Message{Type: wire.TypeJoin, SenderID: id, PeerMetadata: &wire.PeerMetadata{StorageID: "storage-" + id}, SupportedProtocolVersions: []string{wire.ProtocolV1}})
	ws.SetReadDeadline(time.Now().Add(benchTimeout))
	m, err := readMsg(ws)
	if err != nil || m.Type != wire.TypePeer {
		b.Fatalf("join: %v %v", m.Type, err)
	}
	return ws
}

func write(b *testing.B, ws *websocket.Conn, m wire.Message) {
	b.Helper()
	if err := writeMsg(ws, m); err != nil {
		b.Fatal(err)
	}
}

func writeMsg(ws *websocket.Conn, m wire.Message) error {
	f, err := wire.Encode(m)
	if err != nil {
		return err
	}
	return ws.WriteMessage(websocket.BinaryMessage, f)
}

func readMsg(ws *websocket.Conn) (wire.Message, error) {
	_, f, err := ws.ReadMessage()
	if err != nil {
		return wire.Message{}, err
	}
	return wire.Decode(f)
}

func benchEphemeral(b *testing.B) {
	r := newRelay(b)
	const doc = "25gQkE3hoP2bJikoQWmNSo2vm1CY"
	from, to := r.join(b, "sender"), r.join(b, "receiver")
	payload := make([]byte, frameSize-100)
	eph := func(sender, session string, count int) wire.Message {
		return wire.Message{Type: wire.TypeEphemeral, SenderID: sender, TargetID: "bench-relay", DocumentID: doc, SessionID: session, Count: uint64(count), Data: payload}
	}
	// The receiver asks for the document, which joins it to the document's
	// peer set (it stays there after the doc-unavailable answer); the
	// sender's first frame then reaches it.
	empty, err := crdt.New("aa")
	if err != nil {
		b.Fatal(err)
	}
	req, _ := crdt.NewSyncState(empty).Generate()
	write(b, to, wire.Message{Type: wire.TypeRequest, SenderID: "receiver", TargetID: "bench-relay", DocumentID: doc, Data: req})
	if m, err := readMsg(to); err != nil || m.Type != wire.TypeDocUnavailable {
		b.Fatalf("request: %v %v", m.Type, err)
	}
	write(b, from, eph("sender", "s", 1))
	if m, err := readMsg(to); err != nil || m.Type != wire.TypeEphemeral {
		b.Fatalf("first ephemeral: %v %v", m.Type, err)
	}
	f, err := wire.Encode(eph("sender", "s", 2))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(f)))
	cpu := cpuTime()
	b.ResetTimer()
	pipeline(b, b.N,
		func(i int) error { return writeMsg(from, eph("sender", "s", i+2)) },
		func() error {
			m, err := readMsg(to)
			if err == nil && m.Type != wire.TypeEphemeral {
				err = fmt.Errorf("got %s", m.Type)
			}
			return err
		})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(cpuTime()-cpu)/1e3/float64(b.N), "cpu-µs/frame")
}

// wsClient is a minimal automerge-repo peer on a WebSocket: its reader
// goroutine answers every sync message; mu guards its documents and
// writes (gorilla allows one writer at a time).
type wsClient struct {
	id   string
	ws   *websocket.Conn
	mu   sync.Mutex
	docs map[string]*crdt.SyncState
	dh   map[string]*crdt.Doc
}

func (c *wsClient) flush(docID string) error {
	msg, ok := c.docs[docID].Generate()
	if !ok {
		return nil
	}
	return writeMsg(c.ws, wire.Message{Type: wire.TypeSync, SenderID: c.id, TargetID: "bench-relay", DocumentID: docID, Data: msg})
}

// serve handles frames until the connection ends; acked is called once
// per document whose heads the relay announced back.
func (c *wsClient) serve(acked func(), errc chan<- error) {
	done := map[string]bool{}
	for {
		m, err := readMsg(c.ws)
		if err != nil {
			return
		}
		if m.Type != wire.TypeSync {
			errc <- fmt.Errorf("%s: unexpected %s %s", c.id, m.Type, m.ErrorMessage)
			return
		}
		c.mu.Lock()
		theirs, err := c.docs[m.DocumentID].Receive(m.Data)
		if err == nil {
			err = c.flush(m.DocumentID)
		}
		ok := len(theirs) > 0 && theirs.Equal(c.dh[m.DocumentID].Heads())
		c.mu.Unlock()
		if err != nil {
			errc <- err
			return
		}
		if ok && !done[m.DocumentID] {
			done[m.DocumentID] = true
			acked()
		}
	}
}

func benchPush(b *testing.B, nclients int) {
	r := newRelay(b)
	rng := pcg{rand.New(rand.NewPCG(9, uint64(b.N)))}
	clients := make([]*wsClient, nclients)
	for i := range clients {
		id := fmt.Sprintf("client-%d", i)
		clients[i] = &wsClient{id: id, ws: r.join(b, id), docs: map[string]*crdt.SyncState{}, dh: map[string]*crdt.Doc{}}
	}
	ids := make([][]string, nclients)
	for i := range b.N {
		c := clients[i%nclients]
		id, err := wire.NewDocumentID(rng)
		if err != nil {
			b.Fatal(err)
		}
		actor, err := crdt.NewActorID(rng)
		if err != nil {
			b.Fatal(err)
		}
		d, err := crdt.New(actor)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Change(time.Unix(1700000000, 0), "", func(tx *crdt.Tx) error {
			return tx.Set(nil, map[string]any{"title": fmt.Sprintf("document %d", i), "done": false, "tags": []any{"bench"}, "body": crdt.Text("The quick brown fox jumps over the lazy dog.")})
		}); err != nil {
			b.Fatal(err)
		}
		c.docs[id], c.dh[id] = crdt.NewSyncState(d), d
		ids[i%nclients] = append(ids[i%nclients], id)
	}

	var mu sync.Mutex
	left := b.N
	all := make(chan struct{})
	acked := func() {
		mu.Lock()
		defer mu.Unlock()
		if left--; left == 0 {
			close(all)
		}
	}
	errc := make(chan error, nclients)
	for _, c := range clients {
		c.ws.SetReadDeadline(time.Now().Add(benchTimeout))
		go c.serve(acked, errc)
	}
	before, cpu := r.eng.Stats(), cpuTime()
	b.ResetTimer()
	for i, c := range clients {
		go func() {
			for _, id := range ids[i] {
				c.mu.Lock()
				err := c.flush(id)
				c.mu.Unlock()
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	timer := time.NewTimer(benchTimeout)
	defer timer.Stop()
	select {
	case <-all:
	case err := <-errc:
		b.Fatal(err)
	case <-timer.C:
		b.Fatalf("push not done after %v", benchTimeout)
	}
	b.StopTimer()
	after, used := r.eng.Stats(), cpuTime()-cpu
	frames := after.FramesIn + after.FramesOut - before.FramesIn - before.FramesOut
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(frames)/float64(b.N), "frames/doc")
	b.ReportMetric(float64(used)/1e3/float64(b.N), "cpu-µs/doc")
	b.ReportMetric(float64(after.BytesIn+after.BytesOut-before.BytesIn-before.BytesOut)/float64(frames), "bytes/frame")
}

// cpuTime is the user and system CPU time of this process: client and
// relay together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pcg is a seeded byte source for ids.
type pcg struct{ r *rand.Rand }

func (p pcg) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.r.Uint32())
	}
	return len(b), nil
}

// BenchmarkIdleConnections measures what an idle joined connection costs
// the relay: each op opens 2,000 connections and joins them, and the live
// Go heap and goroutine stacks (after a collection) are compared with
// before. bytes/conn is that difference per connection. The clients are
// raw sockets in this process, a few hundred bytes each, counted in. (The
// resident memory is measured apart, with the clients in another process:
// docs/security.md.)
func BenchmarkIdleConnections(b *testing.B) {
	const n = 2000 // two descriptors each in this process
	r := newRelay(b)
	addr := strings.TrimPrefix(r.url, "ws://")
	var perConn, goroutines float64
	for b.Loop() {
		before, gBefore := liveBytes(), runtime.NumGoroutine()
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = rawJoin(b, addr, fmt.Sprintf("idle-%d", i))
		}
		// The relay answers a join before the engine counts the session.
		pollUntil(b, func() bool { return r.eng.Stats().SessionsOpen == n })
		after, gAfter := liveBytes(), runtime.NumGoroutine()
		perConn = float64(after-before) / n
		goroutines = float64(gAfter-gBefore) / n
		for _, c := range conns {
			c.Close()
		}
		pollUntil(b, func() bool { return r.eng.Stats().SessionsOpen == 0 })
	}
	b.ReportMetric(perConn, "bytes/conn")
	b.ReportMetric(goroutines, "goroutines/conn")
}

// pollUntil polls cond until it holds, failing after benchTimeout.
func pollUntil(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(benchTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("condition not met in time")
		}
		<-tick.C
	}
}

// liveBytes is the live heap and the goroutine stacks, after a collection.
func liveBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// rawJoin opens a WebSocket by hand (no client library, no goroutine),
// joins as id and reads the relay's peer message.
func rawJoin(b *testing.B, addr, id string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %v %v", resp, err)
	}
	f, err := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: id, PeerMetadata: &wire.PeerMetadata{StorageID: "st-" + id}, SupportedProtocolVersions: []string{wire.ProtocolV1}})
	if err != nil || len(f) > 0xffff {
		b.Fatal(err)
	}
	// A client masks its frames: a zero mask leaves the payload as it is.
	hdr := []byte{0x82, 0x80 | 126, byte(len(f) >> 8), byte(len(f)), 0, 0, 0, 0}
	if _, err := c.Write(append(hdr, f...)); err != nil {
		b.Fatal(err)
	}
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		b.Fatal(err)
	}
	size := int(h[1] & 0x7f)
	if size == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			b.Fatal(err)
		}
		size = int(binary.BigEndian.Uint16(ext[:]))
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(br, payload); err != nil {
		b.Fatal(err)
	}
	if m, err := wire.Decode(payload); err != nil || m.Type != wire.TypePeer {
		b.Fatalf("join answered with %v %v", m.Type, err)
	}
	return c
}
