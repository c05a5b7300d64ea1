package main

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/wire"
)

// End-to-end tests: the relay binary, real loopback WebSockets, and test
// peers that speak the automerge-repo protocol (e2eclient_test.go).

const e2eSeed = 0x5eed_e2e

// claims maps a document id to every head the relay announced for it.
type claims map[string]map[crdt.Hash]bool

func (cl claims) add(c *e2eClient) {
	for id, d := range c.docs {
		if len(d.announced) == 0 {
			continue
		}
		if cl[id] == nil {
			cl[id] = map[crdt.Hash]bool{}
		}
		maps.Copy(cl[id], d.announced)
	}
}

func (cl claims) hashes() int {
	n := 0
	for _, hs := range cl {
		n += len(hs)
	}
	return n
}

// verifyDurable has a fresh client request every document in cl and checks
// that each announced head is in what the relay sends. It returns the
// verifier (its documents hold what the relay sent) and the heads that are
// missing.
func verifyDurable(t *testing.T, addr, name string, cl claims) (*e2eClient, []string) {
	t.Helper()
	v, err := newClient(name, "st-"+name, e2eSeed)
	require.NoError(t, err)
	require.NoError(t, v.connect(addr, name))
	t.Cleanup(v.disconnect)
	ids := slices.Sorted(maps.Keys(cl))
	for _, id := range ids {
		require.NoError(t, v.request(id))
	}
	err = v.pumpUntil(time.Now().Add(20*time.Second), func() bool {
		for _, id := range ids {
			if d := v.docs[id]; !d.caughtUp() && !d.unavailable {
				return false
			}
		}
		return true
	})
	require.NoError(t, err, "verifier did not receive every document")
	var missing []string
	for _, id := range ids {
		d := v.docs[id]
		for h := range cl[id] {
			if !d.doc.HasChange(h) {
				missing = append(missing, fmt.Sprintf("doc %s head %s (unavailable=%v)", id, h, d.unavailable))
			}
		}
	}
	slices.Sort(missing)
	return v, missing
}

// startLoops runs editLoop(stop, ids(c)) for each client; each result
// arrives on the returned channel.
func startLoops(clients []*e2eClient, stop <-chan struct{}, ids func(*e2eClient) []string) chan error {
	errs := make(chan error, len(clients))
	for _, c := range clients {
		go func() { errs <- c.editLoop(stop, ids(c)) }()
	}
	return errs
}

// waitLoops collects n loop results.
func waitLoops(t *testing.T, errs chan error, n int, timeout time.Duration) []error {
	t.Helper()
	var out []error
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for range n {
		select {
		case err := <-errs:
			out = append(out, err)
		case <-timer.C:
			t.Fatalf("%d of %d client loops still running after %v", n-len(out), n, timeout)
		}
	}
	return out
}

// noLoopFailed fails the test if a loop has ended with an error.
func noLoopFailed(t *testing.T, errs chan error) {
	t.Helper()
	select {
	case err := <-errs:
		t.Fatalf("an honest client stopped: %v", err)
	default:
	}
}

func docIDs(c *e2eClient) []string { return slices.Clone(c.order) }

// TestE2EKill9LosesNothingAcknowledged kills the relay with SIGKILL while
// four clients stream edits, restarts it on the same data directory, and
// checks that every head the relay had announced is still there. Three
// rounds on the same directory.
func TestE2EKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills the relay binary")
	}
	start := time.Now()
	bin := buildRelay(t)
	data := t.TempDir()
	rnd := rand.New(rand.NewPCG(e2eSeed, 1))
	const nClients, docsPerRound, rounds = 4, 2, 3

	clients := make([]*e2eClient, nClients)
	for i := range clients {
		c, err := newClient(fmt.Sprintf("c%d", i), fmt.Sprintf("st-c%d", i), e2eSeed)
		require.NoError(t, err)
		clients[i] = c
		t.Cleanup(c.disconnect)
	}
	all := claims{}
	p := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", data)
	for round := 1; round <= rounds; round++ {
		killAt := int64(150 + rnd.IntN(151))
		var acks atomic.Int64
		kill := make(chan struct{})
		for _, c := range clients {
			c.onAck = func(string) {
				if acks.Add(1) == killAt {
					close(kill)
				}
			}
			require.NoError(t, c.connect(p.addr, fmt.Sprintf("%s-r%d", c.name, round)))
			for range docsPerRound {
				_, err := c.create()
				require.NoError(t, err)
			}
		}
		roundStart := time.Now()
		errs := startLoops(clients, nil, docIDs)
		select {
		case <-kill:
		case err := <-errs:
			t.Fatalf("round %d: a client stopped before the kill: %v\nrelay log:\n%s", round, err, p.stderr)
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: only %d of %d acknowledgements in 30 s\nrelay log:\n%s", round, acks.Load(), killAt, p.stderr)
		}
		p.kill9(t)
		streamed := time.Since(roundStart)
		for _, err := range waitLoops(t, errs, nClients, 10*time.Second) {
			require.ErrorIs(t, err, errConnEnded, "a client failed for another reason than the kill")
		}
		inFlight := 0
		for _, c := range clients {
			c.disconnect()
			c.onAck = nil
			all.add(c)
			for _, d := range c.docs {
				if d.pending {
					inFlight++
				}
			}
		}
		killLog := p.stderr.Lines("level=ERROR")

		restart := time.Now()
		p = startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", data)
		restartTook := time.Since(restart)
		verifyStart := time.Now()
		_, missing := verifyDurable(t, p.addr, fmt.Sprintf("verify-r%d", round), all)
		t.Logf("round %d: kill -9 after %d acks (target %d) in %v, %d local changes unacknowledged at the kill; restart %v; verified %d announced heads of %d docs in %v, lost %d",
			round, acks.Load(), killAt, streamed.Round(time.Millisecond), inFlight, restartTook.Round(time.Millisecond), all.hashes(), len(all), time.Since(verifyStart).Round(time.Millisecond), len(missing))
		for _, l := range killLog {
			t.Logf("round %d relay error log: %s", round, l)
		}
		require.Empty(t, missing, "announced heads lost after kill -9 (round %d)\nrelay log after restart:\n%s", round, p.stderr)
	}

	docs, writes, acked := 0, 0, 0
	for _, c := range clients {
		for _, d := range c.docs {
			docs++
			writes += d.writes
			acked += d.acks
		}
	}
	t.Logf("kill -9 x%d: seed %#x, docs %d, writes %d, acks %d, verified %d announced heads, lost 0, total %v",
		rounds, e2eSeed, docs, writes, acked, all.hashes(), time.Since(start).Round(time.Millisecond))
}

// honestSetup starts n clients on one shared document: the first creates
// it, the others request it; all are caught up when it returns.
func honestSetup(t *testing.T, addr, prefix string, n int) ([]*e2eClient, string) {
	t.Helper()
	var clients []*e2eClient
	for i := range n {
		c, err := newClient(fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("st-%s%d", prefix, i), e2eSeed)
		require.NoError(t, err)
		require.NoError(t, c.connect(addr, c.name))
		t.Cleanup(c.disconnect)
		clients = append(clients, c)
	}
	shared, err := clients[0].create()
	require.NoError(t, err)
	require.NoError(t, clients[0].settle(time.Now().Add(10*time.Second), []string{shared}))
	for _, c := range clients[1:] {
		require.NoError(t, c.request(shared))
		require.NoError(t, c.settle(time.Now().Add(10*time.Second), []string{shared}))
	}
	return clients, shared
}

// converge stops the clients' edits and lets them answer until all hold
// the same heads with nothing unacknowledged; it returns those heads.
func converge(t *testing.T, clients []*e2eClient, stop chan struct{}, errs chan error, id string) crdt.Heads {
	t.Helper()
	close(stop)
	for _, err := range waitLoops(t, errs, len(clients), 10*time.Second) {
		require.NoError(t, err, "an honest client stopped with an error")
	}
	quiet := make(chan struct{})
	errs = startLoops(clients, quiet, func(*e2eClient) []string { return nil })
	var heads crdt.Heads
	require.Eventually(t, func() bool {
		first := clients[0].Snapshot(id)
		for _, c := range clients {
			s := c.Snapshot(id)
			if s.pending || !s.heads.Equal(first.heads) {
				return false
			}
		}
		heads = first.heads
		return true
	}, 15*time.Second, 10*time.Millisecond, "honest clients did not converge")
	close(quiet)
	for _, err := range waitLoops(t, errs, len(clients), 10*time.Second) {
		require.NoError(t, err)
	}
	return heads
}

// crasherInput is one input built from the automerge crashers.
type crasherInput struct {
	name string
	data []byte
}

// wrapChange puts raw into the changes section of a v1 sync message that
// has no heads, needs or haves.
func wrapChange(raw []byte) []byte {
	out := []byte{0x42, 0x00, 0x00, 0x00, 0x01}
	out = appendLEB(out, uint64(len(raw)))
	return append(out, raw...)
}

func appendLEB(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// crasherInputs reads crdt/amcheck/testdata and turns each file into sync
// message payloads: sync messages as they are, a change chunk wrapped as a
// changes entry, a document both as the whole payload and as a changes
// entry.
func crasherInputs(t *testing.T) []crasherInput {
	t.Helper()
	files, err := filepath.Glob("../../crdt/amcheck/testdata/*.bin")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no crasher inputs found")
	var out []crasherInput
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		name := filepath.Base(f)
		switch {
		case b[0] == 0x42:
			out = append(out, crasherInput{name, b})
		case len(b) > 8 && b[8] == 0x00: // chunk type 0: a document
			out = append(out, crasherInput{name + " as sync", b}, crasherInput{name + " as change", wrapChange(b)})
		default: // a change chunk
			out = append(out, crasherInput{name + " as change", wrapChange(b)})
		}
	}
	return out
}

// syncTo returns a sync message frame from peerID for doc.
func syncTo(peerID, doc string, data []byte) frame {
	return msgFrame(wire.Message{Type: wire.TypeSync, SenderID: peerID, TargetID: "relay", DocumentID: doc, Data: data})
}

// TestE2ECrashersOverTheWire sends the inputs that abort the automerge core
// to the relay on their own connections, while three honest clients keep
// editing a shared document, then ~200 seeded mutations of valid sync
// messages. The relay must stay up, each crasher connection must get an
// error and be closed, and the honest clients must converge with nothing
// acknowledged lost.
// TestE2ECrashersOverTheWire sends the crashers to the relay binary twice:
// with sync validation on (the default: amcheck rejects every one of them
// before the core), and with it off, so that they reach the automerge core
// and only process isolation stands between them and the relay.
func TestE2ECrashersOverTheWire(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary")
	}
	t.Run("validated", func(t *testing.T) { crashersOverTheWire(t, true) })
	t.Run("isolation-only", func(t *testing.T) { crashersOverTheWire(t, false) })
}

func crashersOverTheWire(t *testing.T, validate bool) {
	start := time.Now()
	bin := buildRelay(t)
	p := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-core-timeout", "5s", fmt.Sprintf("-validate-sync=%v", validate))
	honest, shared := honestSetup(t, p.addr, "h", 3)

	// Valid sync messages to mutate, built before the clients' loops own
	// their documents: a fork of the shared document with one more change,
	// synced locally with an empty peer. hello carries heads and a bloom
	// filter; full carries every change.
	base, err := honest[0].docs[shared].doc.Fork("0badc0de")
	require.NoError(t, err)
	_, err = base.Change(time.Time{}, "", func(tx *crdt.Tx) error { return tx.Set([]any{"mutant"}, "x") })
	require.NoError(t, err)
	sBase := crdt.NewSyncState(base)
	hello, ok := sBase.Generate()
	require.True(t, ok)
	empty, err := crdt.New("0e0e")
	require.NoError(t, err)
	sEmpty := crdt.NewSyncState(empty)
	_, err = sEmpty.Receive(hello)
	require.NoError(t, err)
	reply, ok := sEmpty.Generate()
	require.True(t, ok)
	_, err = sBase.Receive(reply)
	require.NoError(t, err)
	full, ok := sBase.Generate()
	require.True(t, ok)

	var honestAcks atomic.Int64
	for _, c := range honest {
		c.onAck = func(string) { honestAcks.Add(1) }
	}
	stop := make(chan struct{})
	errs := startLoops(honest, stop, func(*e2eClient) []string { return []string{shared} })
	crashesBefore := p.metric(t, "amsync_core_worker_crashes_total")

	// The crashers.
	aborted := 0
	inputs := crasherInputs(t)
	for i, in := range inputs {
		acksBefore := honestAcks.Load()
		peer := fmt.Sprintf("crasher-%d", i)
		res, err := probe(p.addr, 20*time.Second, nil, joinFrame(peer), syncTo(peer, shared, in.data))
		require.NoError(t, err, "%s: %s\nrelay log:\n%s", in.name, res, p.stderr)
		crashes := p.metric(t, "amsync_core_worker_crashes_total")
		t.Logf("crasher %-45s %d bytes: %s in %v (worker crashes so far %v)", in.name, len(in.data), res, res.elapsed.Round(time.Millisecond), crashes-crashesBefore)
		assert.True(t, res.gotError, "%s: no error message", in.name)
		assert.True(t, res.closed, "%s: connection not closed", in.name)
		assert.Equal(t, engine.ClosePolicyViolation, res.closeCode, "%s: close code", in.name)
		require.NoError(t, p.alive(), "%s\nrelay log:\n%s", in.name, p.stderr)
		noLoopFailed(t, errs)
		// A peer whose message aborted the core is refused for a while;
		// one whose message was merely invalid may come back at once.
		again, err := probe(p.addr, 10*time.Second, func(m wire.Message) bool { return m.Type == wire.TypePeer }, joinFrame(peer))
		require.NoError(t, err, "%s: rejoin: %s", in.name, again)
		if strings.Contains(res.errorMsg, "aborts the automerge core") {
			aborted++
			assert.True(t, again.gotError, "%s: rejoin after aborting the core is refused: %s", in.name, again)
			assert.Equal(t, engine.ClosePolicyViolation, again.closeCode, "%s: rejoin close code", in.name)
		} else {
			assert.Equal(t, []string{wire.TypePeer}, again.types, "%s: a cleanly rejected peer may rejoin", in.name)
		}
		// The honest clients still get acknowledgements.
		require.Eventually(t, func() bool { return honestAcks.Load() > acksBefore }, 15*time.Second, 5*time.Millisecond,
			"honest clients made no progress after %s\nrelay log:\n%s", in.name, p.stderr)
	}
	crashes := p.metric(t, "amsync_core_worker_crashes_total") - crashesBefore
	if validate {
		assert.Zero(t, crashes, "validation let a crasher reach the core")
		assert.Zero(t, aborted)
	} else {
		assert.Positive(t, crashes, "no crasher reached a worker: the test did not exercise isolation")
	}
	t.Logf("crashers: %d inputs, %d disconnected as aborting the core (peer banned), %d rejected cleanly, %v worker crashes",
		len(inputs), aborted, len(inputs)-aborted, crashes)

	// Seeded mutations of the valid messages.
	rnd := rand.New(rand.NewPCG(e2eSeed, 2))
	const mutations = 200
	var rejected, accepted, silent int
	codes := map[int]int{}
	mutStart := time.Now()
	for i := range mutations {
		src := hello
		if i%2 == 1 {
			src = full
		}
		data := mutate(rnd, src)
		peer := fmt.Sprintf("mutant-%d", i)
		res, err := probe(p.addr, 20*time.Second, func(m wire.Message) bool { return m.Type == wire.TypeSync }, joinFrame(peer), syncTo(peer, shared, data))
		require.NoError(t, err, "mutation %d (%x): %s\nrelay log:\n%s", i, data, res, p.stderr)
		switch {
		case res.gotError:
			rejected++
			codes[res.closeCode]++
			assert.True(t, res.closed, "mutation %d: error but not closed", i)
		case res.gotSync:
			accepted++
		default:
			silent++
			t.Logf("mutation %d: closed without error or sync: %s", i, res)
		}
		if i%50 == 49 {
			require.NoError(t, p.alive(), "after mutation %d\nrelay log:\n%s", i, p.stderr)
			noLoopFailed(t, errs)
		}
	}
	mutTook := time.Since(mutStart)
	require.NoError(t, p.alive())
	mutCrashes := p.metric(t, "amsync_core_worker_crashes_total") - crashesBefore - crashes

	heads := converge(t, honest, stop, errs, shared)
	cl := claims{}
	writes, acked := 0, 0
	for _, c := range honest {
		cl.add(c)
		writes += c.docs[shared].writes
		acked += c.docs[shared].acks
	}
	v, missing := verifyDurable(t, p.addr, "verify-crashers", cl)
	require.Empty(t, missing, "announced heads lost\nrelay log:\n%s", p.stderr)
	assert.Equal(t, heads, v.docs[shared].doc.Heads(), "a fresh client sees what the honest clients converged on")
	require.NoError(t, p.alive())

	t.Logf("mutations: %d sent in %v: %d rejected with error (close codes %v), %d accepted, %d other; worker crashes from mutations %v",
		mutations, mutTook.Round(time.Millisecond), rejected, codes, accepted, silent, mutCrashes)
	t.Logf("honest: 3 clients, %d writes, %d acks, %d announced heads verified, lost 0; worker crashes from crashers %v; relay pid %d up throughout; total %v",
		writes, acked, cl.hashes(), crashes, p.pid(), time.Since(start).Round(time.Millisecond))
	for _, l := range p.stderr.Lines("automerge worker crashed") {
		t.Logf("relay: %s", truncateLine(l, 300))
	}
	for _, l := range p.stderr.Lines("level=ERROR") {
		t.Logf("relay error: %s", truncateLine(l, 300))
	}
}

func truncateLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// mutate returns a copy of src with one to four random mutations; half the
// time the checksums of the automerge chunks inside are recomputed, so
// that the mutation reaches past the checksum check.
func mutate(r *rand.Rand, src []byte) []byte {
	b := slices.Clone(src)
	for range 1 + r.IntN(4) {
		if len(b) == 0 {
			b = append(b, 0x42)
		}
		i := r.IntN(len(b))
		switch r.IntN(7) {
		case 0:
			b[i] ^= 1 << r.IntN(8)
		case 1:
			b[i] = byte(r.IntN(256))
		case 2:
			b[i] = []byte{0x00, 0x01, 0x7f, 0x80, 0xff}[r.IntN(5)]
		case 3:
			b = slices.Insert(b, i, byte(r.IntN(256)))
		case 4:
			b = slices.Delete(b, i, i+1)
		case 5:
			b = b[:max(1, i)]
		case 6:
			j := i + r.IntN(len(b)-i)
			b = slices.Insert(b, j, b[i:j]...)
		}
	}
	if len(b) == 0 {
		b = []byte{0x42}
	}
	if r.IntN(2) == 0 {
		fixChecksums(b)
	}
	return b
}

// fixChecksums recomputes, in place, the checksum of every automerge chunk
// (magic, 4-byte checksum, type, LEB128 length, body) found in b whose
// length fits.
func fixChecksums(b []byte) {
	magic := []byte{0x85, 0x6f, 0x4a, 0x83}
	for i := 0; i+9 < len(b); i++ {
		if b[i] != magic[0] || string(b[i:i+4]) != string(magic) {
			continue
		}
		n, w := readLEB(b[i+9:])
		if w == 0 || n > uint64(len(b)) {
			continue
		}
		end := i + 9 + w + int(n)
		if end > len(b) {
			continue
		}
		sum := sha256.Sum256(b[i+8 : end])
		copy(b[i+4:i+8], sum[:4])
	}
}

func readLEB(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// TestE2ECleanRejectSameWithoutIsolation sends an input the automerge core
// rejects cleanly (a saved document where a sync message belongs) to a
// relay with -isolation process and one with -isolation none: the peer is
// told and disconnected the same way by both, and the relay carries on.
func TestE2ECleanRejectSameWithoutIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary")
	}
	bin := buildRelay(t)
	results := map[string]probeResult{}
	for _, mode := range []string{"process", "none"} {
		p := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-isolation", mode)
		honest, shared := honestSetup(t, p.addr, "n"+mode, 2)
		saved := honest[0].docs[shared].doc.Save()
		var acks atomic.Int64
		for _, c := range honest {
			c.onAck = func(string) { acks.Add(1) }
		}
		stop := make(chan struct{})
		errs := startLoops(honest, stop, func(*e2eClient) []string { return []string{shared} })

		before := acks.Load()
		peer := "clean-reject-" + mode
		res, err := probe(p.addr, 15*time.Second, nil, joinFrame(peer), syncTo(peer, shared, saved))
		require.NoError(t, err, "%s\nrelay log:\n%s", res, p.stderr)
		t.Logf("-isolation %s: %d-byte document as sync data: %s", mode, len(saved), res)
		assert.True(t, res.gotError, "error message")
		assert.Equal(t, engine.ClosePolicyViolation, res.closeCode)
		require.NoError(t, p.alive())
		require.Eventually(t, func() bool { return acks.Load() > before+5 }, 15*time.Second, 5*time.Millisecond, "honest clients stalled")
		noLoopFailed(t, errs)
		converge(t, honest, stop, errs, shared)
		results[mode] = res
	}
	assert.Equal(t, results["process"].types, results["none"].types)
	assert.Equal(t, results["process"].closeCode, results["none"].closeCode)
	assert.Equal(t, results["process"].errorMsg, results["none"].errorMsg, "the same error text with and without isolation")
}

// TestE2EMalformedFrames sends malformed frames to the relay binary, each
// on its own connection, while an honest client keeps editing: each closes
// only its own connection, with the expected close code.
func TestE2EMalformedFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary")
	}
	bin := buildRelay(t)
	const maxFrame = 4096
	p := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-max-frame-bytes", fmt.Sprint(maxFrame))
	honest, shared := honestSetup(t, p.addr, "m", 1)
	var acks atomic.Int64
	honest[0].onAck = func(string) { acks.Add(1) }
	stop := make(chan struct{})
	errs := startLoops(honest, stop, func(*e2eClient) []string { return []string{shared} })

	rnd := rand.New(rand.NewPCG(e2eSeed, 3))
	randomBytes := make([]byte, 64)
	for i := range randomBytes {
		randomBytes[i] = byte(rnd.IntN(256))
	}
	big := make([]byte, maxFrame+1)
	// The shared id with its last character changed: base58, but the
	// checksum no longer matches.
	alt := "Z"
	if strings.HasSuffix(shared, alt) {
		alt = "Y"
	}
	badChecksum := shared[:len(shared)-1] + alt
	emptyRequest := []byte("\x42\x00\x00\x01\x00\x00\x00\x02\x02\x84")
	jsonJoin := `{"type":"join","senderId":"t","supportedProtocolVersions":["1"]}`

	cases := []struct {
		name      string
		frames    []frame
		wantCode  int
		wantError bool // an error message precedes the close
	}{
		{"CBOR null first", []frame{binFrame([]byte{0xf6})}, engine.CloseUnsupportedData, true},
		{"random bytes first", []frame{binFrame(randomBytes)}, engine.CloseUnsupportedData, true},
		{"text frame first", []frame{{typ: websocket.TextMessage, data: []byte(jsonJoin)}}, engine.CloseUnsupportedData, true},
		{"frame above max first", []frame{binFrame(big)}, engine.CloseTooBig, false},
		{"sync before join", []frame{syncTo("early", shared, emptyRequest)}, engine.ClosePolicyViolation, true},
		{"CBOR null after join", []frame{joinFrame("null"), binFrame([]byte{0xf6})}, engine.CloseUnsupportedData, true},
		{"random bytes after join", []frame{joinFrame("rnd"), binFrame(randomBytes)}, engine.CloseUnsupportedData, true},
		{"text frame after join", []frame{joinFrame("text"), {typ: websocket.TextMessage, data: []byte(jsonJoin)}}, engine.CloseUnsupportedData, true},
		{"frame above max after join", []frame{joinFrame("big"), binFrame(big)}, engine.CloseTooBig, false},
		{"invalid documentId", []frame{joinFrame("baddoc"), rawSync(t, "sync", "baddoc", "not-a-document-id", emptyRequest)}, engine.CloseUnsupportedData, true},
		{"documentId with a bad checksum", []frame{joinFrame("badsum"), rawSync(t, "sync", "badsum", badChecksum, emptyRequest)}, engine.CloseUnsupportedData, true},
		{"request with empty documentId", []frame{joinFrame("nodoc"), rawSync(t, "request", "nodoc", "", emptyRequest)}, engine.CloseUnsupportedData, true},
		{"senderId mismatch", []frame{joinFrame("alice"), syncTo("mallory", shared, emptyRequest)}, engine.ClosePolicyViolation, true},
		{"unsupported protocol version", []frame{msgFrame(wire.Message{Type: wire.TypeJoin, SenderID: "v2", SupportedProtocolVersions: []string{"2"}})}, engine.CloseProtocolError, true},
	}
	for _, tc := range cases {
		before := acks.Load()
		res, err := probe(p.addr, 15*time.Second, nil, tc.frames...)
		require.NoError(t, err, "%s: %s\nrelay log:\n%s", tc.name, res, p.stderr)
		t.Logf("%-32s -> %s (write error: %v) in %v", tc.name, res, res.writeErr, res.elapsed.Round(time.Millisecond))
		assert.True(t, res.closed, "%s: closed", tc.name)
		assert.Equal(t, tc.wantCode, res.closeCode, "%s: close code (%s)", tc.name, res)
		if tc.wantError {
			assert.True(t, res.gotError, "%s: error message", tc.name)
		}
		assert.NotContains(t, res.types, wire.TypeSync, "%s: no document data to a bad peer", tc.name)
		require.NoError(t, p.alive(), tc.name)
		noLoopFailed(t, errs)
		require.Eventually(t, func() bool { return acks.Load() > before }, 10*time.Second, 5*time.Millisecond,
			"%s: the honest client made no progress\nrelay log:\n%s", tc.name, p.stderr)
	}
	close(stop)
	for _, err := range waitLoops(t, errs, 1, 10*time.Second) {
		require.NoError(t, err)
	}
	require.NoError(t, honest[0].settle(time.Now().Add(10*time.Second), []string{shared}))
	cl := claims{}
	cl.add(honest[0])
	_, missing := verifyDurable(t, p.addr, "verify-malformed", cl)
	require.Empty(t, missing)
	d := honest[0].docs[shared]
	t.Logf("honest client: %d writes, %d acks across %d malformed connections; %d announced heads verified", d.writes, d.acks, len(cases), cl.hashes())
	assert.Len(t, p.stderr.Lines("level=ERROR"), 0, "relay logged errors:\n%s", p.stderr)
}

// rawSync encodes a sync or request message with the generic CBOR encoder,
// so that fields the codec would refuse (an invalid documentId) get out.
func rawSync(t *testing.T, typ, sender, docID string, data []byte) frame {
	t.Helper()
	b, err := cbor.Marshal(map[string]any{"type": typ, "senderId": sender, "targetId": "relay", "documentId": docID, "data": data})
	require.NoError(t, err)
	return binFrame(b)
}
