package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/isolate"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/engine/wire"
)

// End-to-end benchmarks of the real Engine (default Config.Go: one
// goroutine per busy document) driven by automerge clients over in-memory
// connections that carry real wire frames. Each client runs on its own
// goroutine and does real automerge work (it is a minimal automerge-repo
// peer), so the clients share the machine with the engine. cpu-µs/op is
// the CPU time of the whole test process (engine, clients, GC) plus that
// of the isolated core's worker processes, per operation: on a shared
// machine it is steadier than wall time, and it shows what isolation
// costs in CPU.
//
// Completion is awaited with a deadline on a countdown that the clients'
// goroutines decrement when the condition of the workload holds (the
// server announced the client's heads, or a reader reached the writer's
// heads); nothing sleeps.

// waitTimeout bounds every wait; a benchmark that exceeds it has hung.
const waitTimeout = 2 * time.Minute

var quiet = slog.New(slog.DiscardHandler)

// pcgReader is a seeded byte source for document and actor ids.
type pcgReader struct{ r *rand.Rand }

func (p pcgReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.r.Uint32())
	}
	return len(b), nil
}

// countdown signals done when it has been decremented n times since arm.
type countdown struct {
	mu   sync.Mutex
	left int
	done chan struct{}
}

func (c *countdown) arm(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.left = n
	c.done = make(chan struct{})
	return c.done
}

func (c *countdown) signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left <= 0 {
		return
	}
	c.left--
	if c.left == 0 {
		close(c.done)
	}
}

// countingCore wraps the Core under test and counts replica steps and the
// sync messages they received, which shows how the document actors batch:
// msgs/step above 1 means several peers' messages shared one step (and
// so one durable write and one round of messages).
type countingCore struct {
	engine.Core
	steps, msgs *atomic.Int64
}

func (c countingCore) Load(id string, actor crdt.ActorID, chunks []store.Chunk) (engine.CoreReplica, error) {
	r, err := c.Core.Load(id, actor, chunks)
	if err != nil {
		return nil, err
	}
	return countingReplica{r, c}, nil
}

type countingReplica struct {
	engine.CoreReplica
	c countingCore
}

func (r countingReplica) Step(in engine.ReplicaInput) (engine.ReplicaOutput, error) {
	r.c.steps.Add(1)
	r.c.msgs.Add(int64(len(in.Receive)))
	return r.CoreReplica.Step(in)
}

// benchEnv is one engine with its store, core and clients.
type benchEnv struct {
	b       *testing.B
	eng     *engine.Engine
	st      store.Store
	bs      *badgerstore.Store // nil for the memory store
	host    *isolate.Host      // nil in process
	rng     pcgReader
	errs    chan error
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	clients []*benchClient
	count   countdown
	target  atomic.Pointer[crdt.Heads] // fan-out: the heads readers must reach
	steps   atomic.Int64               // replica steps
	msgs    atomic.Int64               // sync messages those steps received
}

// newBenchEnv starts an engine on storeKind ("mem" or "badger", in
// b.TempDir) with coreKind ("inprocess" or "isolated") and tears it all
// down when the benchmark function returns.
func newBenchEnv(b *testing.B, storeKind, coreKind string) *benchEnv {
	b.Helper()
	env := &benchEnv{b: b, rng: pcgReader{rand.New(rand.NewPCG(7, uint64(b.N)))}, errs: make(chan error, 16)}
	switch storeKind {
	case "mem":
		env.st = store.NewMemStore()
	case "badger":
		bs, err := badgerstore.Open(badgerstore.Config{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		env.st, env.bs = bs, bs
	default:
		b.Fatalf("unknown store %q", storeKind)
	}
	cfg := engine.Config{Store: env.st, PeerID: "bench-server", Logger: quiet}
	switch coreKind {
	case "inprocess":
		cfg.Core = engine.InProcess{}
	case "isolated":
		h, err := isolate.New(isolate.Config{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		env.host = h
		cfg.Core = h
	default:
		b.Fatalf("unknown core %q", coreKind)
	}
	cfg.Core = countingCore{Core: cfg.Core, steps: &env.steps, msgs: &env.msgs}
	eng, err := engine.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	env.eng = eng
	env.ctx, env.stop = context.WithCancel(context.Background())
	b.Cleanup(env.close)
	return env
}

func (env *benchEnv) close() {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, c := range env.clients {
		c.conn.shutdown.Store(true)
	}
	if err := env.eng.Close(ctx); err != nil {
		env.b.Error(err)
	}
	env.stop()
	env.wg.Wait()
	if env.host != nil {
		env.host.Close()
	}
	if err := env.st.Close(); err != nil {
		env.b.Error(err)
	}
}

// fail records an error from a client goroutine; wait reports it.
func (env *benchEnv) fail(err error) {
	select {
	case env.errs <- err:
	default:
	}
}

// wait blocks until done is closed, failing the benchmark on a client
// error or after waitTimeout.
func (env *benchEnv) wait(done <-chan struct{}, what string) {
	env.b.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case err := <-env.errs:
		env.b.Fatalf("%s: %v", what, err)
	case <-timer.C:
		env.b.Fatalf("%s: not done after %v", what, waitTimeout)
	}
}

// role decides what a client counts as done.
type role int

const (
	// pusher: the server announced heads equal to the client's own.
	pusher role = iota
	// reader: the client reached the heads in benchEnv.target.
	reader
)

// benchConn is a goroutine-safe engine.Conn: Send queues the frame for
// the client's goroutine and never blocks, as a transport's queue does.
type benchConn struct {
	mu       sync.Mutex
	items    []item
	closed   bool
	reason   string
	wake     chan struct{}
	shutdown atomic.Bool // closing is expected from now on
}

type item struct {
	frame []byte
	fn    func()
}

func (c *benchConn) Send(frame []byte) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("bench: connection closed")
	}
	c.items = append(c.items, item{frame: frame})
	c.mu.Unlock()
	c.poke()
	return nil
}

func (c *benchConn) Close(code int, reason string) {
	c.mu.Lock()
	if !c.closed {
		c.closed, c.reason = true, fmt.Sprintf("%d %s", code, reason)
	}
	c.mu.Unlock()
	c.poke()
}

func (c *benchConn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *benchConn) do(fn func()) {
	c.mu.Lock()
	c.items = append(c.items, item{fn: fn})
	c.mu.Unlock()
	c.poke()
}

func (c *benchConn) take() ([]item, bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := c.items
	c.items = nil
	return it, c.closed, c.reason
}

// benchClient is a minimal automerge-repo peer. Everything it owns is
// touched only by its goroutine: the benchmark hands it work with do.
type benchClient struct {
	env  *benchEnv
	id   string
	role role
	conn *benchConn
	sess *engine.Session
	docs map[string]*clientDoc
}

type clientDoc struct {
	doc  *crdt.Doc
	sync *crdt.SyncState
	seen crdt.Heads // heads already counted
}

// connect opens a session for a new client, starts its goroutine and
// joins (the peer reply is handled by the goroutine).
func (env *benchEnv) connect(r role) *benchClient {
	n := len(env.clients)
	c := &benchClient{
		env:  env,
		id:   fmt.Sprintf("client-%d", n),
		role: r,
		conn: &benchConn{wake: make(chan struct{}, 1)},
		docs: map[string]*clientDoc{},
	}
	c.sess = env.eng.Open(c.conn)
	env.clients = append(env.clients, c)
	env.wg.Add(1)
	go c.run()
	c.do(func() {
		c.send(wire.Message{
			Type: wire.TypeJoin, SenderID: c.id,
			PeerMetadata:              &wire.PeerMetadata{StorageID: "storage-" + c.id},
			SupportedProtocolVersions: []string{wire.ProtocolV1},
		})
	})
	return c
}

func (c *benchClient) do(fn func()) { c.conn.do(fn) }

func (c *benchClient) run() {
	defer c.env.wg.Done()
	for {
		select {
		case <-c.env.ctx.Done():
			return
		case <-c.conn.wake:
		}
		items, closed, reason := c.conn.take()
		for _, it := range items {
			if it.fn != nil {
				it.fn()
			} else {
				c.handle(it.frame)
			}
		}
		if closed && !c.conn.shutdown.Load() {
			c.env.fail(fmt.Errorf("%s: server closed the connection: %s", c.id, reason))
			return
		}
	}
}

func (c *benchClient) send(m wire.Message) {
	frame, err := wire.Encode(m)
	if err != nil {
		c.env.fail(err)
		return
	}
	if err := c.sess.HandleFrame(frame); err != nil && !c.conn.shutdown.Load() {
		c.env.fail(fmt.Errorf("%s: %w", c.id, err))
	}
}

// newDoc creates a document with one change, as a client that makes a new
// document does: a few fields and a short text, about 250 bytes saved.
func (c *benchClient) newDoc(i int) string {
	id, err := wire.NewDocumentID(c.env.rng)
	if err != nil {
		c.env.b.Fatal(err)
	}
	actor, err := crdt.NewActorID(c.env.rng)
	if err != nil {
		c.env.b.Fatal(err)
	}
	d, err := crdt.New(actor)
	if err != nil {
		c.env.b.Fatal(err)
	}
	_, err = d.Change(time.Unix(1700000000, 0), "", func(tx *crdt.Tx) error {
		return tx.Set(nil, map[string]any{
			"title": fmt.Sprintf("document %d of %s", i, c.id),
			"done":  false,
			"tags":  []any{"bench", "small"},
			"body":  crdt.Text("The quick brown fox jumps over the lazy dog."),
		})
	})
	if err != nil {
		c.env.b.Fatal(err)
	}
	c.docs[id] = &clientDoc{doc: d, sync: crdt.NewSyncState(d)}
	return id
}

// flush sends the document's next sync message, if one is due.
func (c *benchClient) flush(docID string, typ string) {
	cd := c.docs[docID]
	if msg, ok := cd.sync.Generate(); ok {
		c.send(wire.Message{Type: typ, SenderID: c.id, TargetID: c.env.eng.PeerID(), DocumentID: docID, Data: msg})
	}
}

// edit makes one small change to a document the client has.
func (c *benchClient) edit(docID string, n int) {
	_, err := c.docs[docID].doc.Change(time.Unix(1700000000+int64(n), 0), "", func(tx *crdt.Tx) error {
		if err := tx.Set([]any{"title"}, fmt.Sprintf("edit %d by %s", n, c.id)); err != nil {
			return err
		}
		return tx.Splice([]any{"body"}, 0, 0, "x")
	})
	if err != nil {
		c.env.fail(err)
	}
}

func (c *benchClient) handle(frame []byte) {
	m, err := wire.Decode(frame)
	if err != nil {
		c.env.fail(err)
		return
	}
	switch m.Type {
	case wire.TypeSync:
		cd := c.docs[m.DocumentID]
		if cd == nil {
			c.env.fail(fmt.Errorf("%s: sync for unknown document %s", c.id, m.DocumentID))
			return
		}
		theirs, err := cd.sync.Receive(m.Data)
		if err != nil {
			c.env.fail(err)
			return
		}
		c.flush(m.DocumentID, wire.TypeSync)
		c.check(cd, theirs)
	case wire.TypePeer:
	default:
		if !c.conn.shutdown.Load() {
			c.env.fail(fmt.Errorf("%s: unexpected %s: %s", c.id, m.Type, m.ErrorMessage))
		}
	}
}

// check counts the document done once per new heads, by the client's role.
func (c *benchClient) check(cd *clientDoc, theirs crdt.Heads) {
	var reached crdt.Heads
	switch c.role {
	case pusher:
		if len(theirs) == 0 || !theirs.Equal(cd.doc.Heads()) {
			return
		}
		reached = theirs
	case reader:
		t := c.env.target.Load()
		if t == nil || !cd.doc.Heads().Equal(*t) {
			return
		}
		reached = *t
	}
	if !reached.Equal(cd.seen) {
		cd.seen = reached
		c.env.count.signal()
	}
}

// counters is a snapshot of what the engine and the store have done.
type counters struct {
	stats       engine.StatsSnapshot
	commits     uint64
	cpu, worker time.Duration
	steps, msgs int64
}

func (env *benchEnv) counters() counters {
	c := counters{stats: env.eng.Stats(), cpu: selfCPU(), worker: childrenCPU(), steps: env.steps.Load(), msgs: env.msgs.Load()}
	if env.bs != nil {
		c.commits = env.bs.Stats().Commits
	}
	return c
}

// report adds the per-operation metrics of what happened since before.
func (env *benchEnv) report(before counters, ops int, unit string) {
	b := env.b
	after := env.counters()
	n := float64(ops)
	s, t := after.stats, before.stats
	b.ReportMetric(float64(s.FramesIn+s.FramesOut-t.FramesIn-t.FramesOut)/n, "frames/"+unit)
	b.ReportMetric(float64(s.BytesIn+s.BytesOut-t.BytesIn-t.BytesOut)/n, "wire-bytes/"+unit)
	b.ReportMetric(float64(s.Saves-t.Saves)/n, "saves/"+unit)
	steps := float64(after.steps - before.steps)
	b.ReportMetric(steps/n, "steps/"+unit)
	if steps > 0 {
		b.ReportMetric(float64(after.msgs-before.msgs)/steps, "msgs/step")
	}
	if env.bs != nil {
		b.ReportMetric(float64(after.commits-before.commits)/n, "fsyncs/"+unit)
	}
	worker := after.worker - before.worker
	b.ReportMetric(float64(after.cpu-before.cpu+worker)/1e3/n, "cpu-µs/"+unit)
	if env.host != nil {
		b.ReportMetric(float64(worker)/1e3/n, "worker-cpu-µs/"+unit)
	}
	if s.CoreCrashes != 0 {
		b.Fatalf("%d core crashes", s.CoreCrashes)
	}
}

// selfCPU is the user and system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenCPU sums utime and stime of the live processes whose parent is
// this one: the isolated core's workers. /proc/<pid>/stat counts in clock ticks of 10 ms (USER_HZ is 100 on
// Linux), so the sum is coarse; over a benchmark of a second or more it is
// good to a few percent. It is 0 where there is no /proc.
func childrenCPU() time.Duration {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces: fields are counted
		// after its closing parenthesis.
		i := bytes.LastIndexByte(raw, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(raw[i+1:]))
		// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// push has the clients push docs new documents each, all at once (as
// automerge-repo syncs every document it holds as soon as it connects),
// and waits until the server has acknowledged every one.
func (env *benchEnv) push(clients []*benchClient, docs int) {
	env.b.Helper()
	ids := make([][]string, len(clients))
	for i, c := range clients {
		for j := range docs {
			ids[i] = append(ids[i], c.newDoc(j))
		}
	}
	env.pushIDs(clients, ids)
}

func (env *benchEnv) pushIDs(clients []*benchClient, ids [][]string) {
	env.b.Helper()
	total := 0
	for _, l := range ids {
		total += len(l)
	}
	done := env.count.arm(total)
	for i, c := range clients {
		mine := ids[i]
		c.do(func() {
			for _, id := range mine {
				c.flush(id, wire.TypeSync)
			}
		})
	}
	env.wait(done, "push")
}

// connectAll connects n clients of role r and waits for their joins.
func (env *benchEnv) connectAll(n int, r role) []*benchClient {
	out := make([]*benchClient, n)
	for i := range out {
		out[i] = env.connect(r)
	}
	// A client's goroutine handles its commands in order: once an empty
	// command ran after the join, the join was handled.
	done := env.count.arm(n)
	for _, c := range out {
		c.do(env.count.signal)
	}
	env.wait(done, "join")
	return out
}

// BenchmarkPush measures new documents pushed by C clients, each pushing
// its share of b.N small documents concurrently; one op is one document
// made durable and acknowledged (the server announced its heads back).
// saves/doc is Store.Apply calls per document and fsyncs/doc the Badger
// transactions committed per document: below 1 when group commit
// coalesces concurrent documents' writes.
func BenchmarkPush(b *testing.B) {
	for _, st := range []string{"mem", "badger"} {
		for _, core := range []string{"inprocess", "isolated"} {
			for _, clients := range []int{1, 16} {
				b.Run(fmt.Sprintf("store=%s/core=%s/clients=%d", st, core, clients), func(b *testing.B) {
					benchPush(b, st, core, clients)
				})
			}
		}
	}
}

func benchPush(b *testing.B, storeKind, coreKind string, nclients int) {
	env := newBenchEnv(b, storeKind, coreKind)
	cs := env.connectAll(nclients, pusher)
	// Warm up: worker processes started, Badger's first commits done.
	env.push(cs, 4)

	ids := make([][]string, len(cs))
	for i := range b.N {
		c := i % len(cs)
		ids[c] = append(ids[c], cs[c].newDoc(i))
	}
	before := env.counters()
	b.ResetTimer()
	env.pushIDs(cs, ids)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	env.report(before, b.N, "doc")
}

// BenchmarkFanOut measures one writer and R readers of one document: one
// op is one change made by the writer, persisted, delivered to all R
// readers and acknowledged to the writer. Changes go one at a time, so
// ns/op is the latency of a change reaching everybody.
func BenchmarkFanOut(b *testing.B) {
	for _, core := range []string{"inprocess", "isolated"} {
		for _, readers := range []int{10, 100} {
			b.Run(fmt.Sprintf("store=mem/core=%s/readers=%d", core, readers), func(b *testing.B) {
				benchFanOut(b, "mem", core, readers)
			})
		}
	}
}

func benchFanOut(b *testing.B, storeKind, coreKind string, nreaders int) {
	env := newBenchEnv(b, storeKind, coreKind)
	writer := env.connectAll(1, pusher)[0]
	readers := env.connectAll(nreaders, reader)
	docID := writer.newDoc(0)
	heads := writer.docs[docID].doc.Heads()
	env.pushIDs([]*benchClient{writer}, [][]string{{docID}})

	// Readers ask for the document and sync it.
	env.target.Store(&heads)
	done := env.count.arm(nreaders)
	for _, r := range readers {
		r.do(func() {
			d, err := crdt.New(crdt.ActorID(fmt.Sprintf("%x", r.id)))
			if err != nil {
				env.fail(err)
				return
			}
			r.docs[docID] = &clientDoc{doc: d, sync: crdt.NewSyncState(d)}
			r.flush(docID, wire.TypeRequest)
		})
	}
	env.wait(done, "readers sync")

	before := env.counters()
	b.ResetTimer()
	for i := range b.N {
		// Every reader reaches the new heads, and the writer is told the
		// server has them.
		done := env.count.arm(nreaders + 1)
		writer.do(func() {
			writer.edit(docID, i)
			h := writer.docs[docID].doc.Heads()
			env.target.Store(&h)
			writer.flush(docID, wire.TypeSync)
		})
		env.wait(done, "fan-out")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
	env.report(before, b.N, "change")
}

// BenchmarkManyDocs measures parallel scaling over documents: 10 clients
// hold 100 documents each; one op is one round in which every one of the
// 1,000 documents gets a change and the server acknowledges all of them.
// procs is GOMAXPROCS: the engine runs every document on its own task, so
// throughput should grow with cores (the clients use them too).
func BenchmarkManyDocs(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("store=mem/docs=1000/procs=%d", procs), func(b *testing.B) {
			prev := runtime.GOMAXPROCS(procs)
			defer runtime.GOMAXPROCS(prev)
			benchManyDocs(b, "mem", 10, 100)
		})
	}
}

func benchManyDocs(b *testing.B, storeKind string, nclients, perClient int) {
	env := newBenchEnv(b, storeKind, "inprocess")
	cs := env.connectAll(nclients, pusher)
	ids := make([][]string, len(cs))
	for i, c := range cs {
		for j := range perClient {
			ids[i] = append(ids[i], c.newDoc(j))
		}
	}
	env.pushIDs(cs, ids)

	total := nclients * perClient
	before := env.counters()
	b.ResetTimer()
	for round := range b.N {
		done := env.count.arm(total)
		for i, c := range cs {
			mine := ids[i]
			c.do(func() {
				for _, id := range mine {
					c.edit(id, round+1)
					c.flush(id, wire.TypeSync)
				}
			})
		}
		env.wait(done, "round")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "changes/s")
	env.report(before, b.N*total, "change")
}
