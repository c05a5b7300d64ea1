package simulations

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// Sentinel errors. A failed run's error wraps one of them.
var (
	// ErrInvariant: a checked property did not hold.
	ErrInvariant = errors.New("simulations: invariant violated")
	// ErrLost: a change that a client saw acknowledged is missing.
	ErrLost = errors.New("simulations: acknowledged change lost")
	// ErrPanic: the engine panicked.
	ErrPanic = errors.New("simulations: panic")
	// ErrStuck: an embedding API call did not return, or the replicas did
	// not converge within the step budget.
	ErrStuck = errors.New("simulations: no progress")
	// ErrDiskFault is what the simulated disk returns for an injected
	// write error.
	ErrDiskFault = errors.New("simulations: injected disk write error")
	// ErrConfig: a WorldConfig or Options value is invalid.
	ErrConfig = errors.New("simulations: invalid config")
	// ErrAckNeverSent: after the heal, a client still holds changes as
	// pending although its relay holds every one of them: the relay never
	// announced its heads to the client, so the client never learns.
	ErrAckNeverSent = errors.New("simulations: a relay holds a client's changes but never acknowledged them")
	// ErrNotDurable: a node sent heads (in a sync message) that its disk
	// did not hold: the durability rule says writes first, then messages.
	ErrNotDurable = errors.New("simulations: a node sent heads before they were on its disk")
	// ErrSyncStalled: after the heal, a replica holds older heads of a
	// document than another, was last sent heads it lacks, and never
	// answered (asked for the missing changes).
	ErrSyncStalled = errors.New("simulations: a replica was told of heads it lacks and never asked for them")
	// ErrNeverRequested: a node asked for a document its relay has, and
	// never sent anything for it.
	ErrNeverRequested = errors.New("simulations: a node asked for a document and never requested it")
)

// WorldConfig configures a World. Zero fields get the defaults in
// validate.
type WorldConfig struct {
	// Seed feeds the World's one generator.
	Seed uint64
	// Relays and Clients are the number of relay and client nodes, named
	// r1…rN and c1…cN. Default 1 relay and 2 clients.
	Relays, Clients int
	// Trace receives every step when set.
	Trace io.Writer
	// Keepalive is the longest a node takes to notice a dead connection
	// (the half-open window). Default 10s.
	Keepalive time.Duration
	// LatencyMin and LatencyMax bound the one-way delay of a frame.
	// Default 1ms and 50ms.
	LatencyMin, LatencyMax time.Duration
	// AdvanceP is the probability that a step moves the clock forward to
	// the next timed event although other work is ready (a slow node).
	// Default 0: time only moves when nothing else can happen.
	AdvanceP float64
	// TickEvery is how often each engine's Tick runs (idle eviction).
	// Default 5s, as the relay does.
	TickEvery time.Duration
	// Watchdog is the wall-clock time an embedding API call may take to
	// return once the World knows it has been answered. Default 60s.
	Watchdog time.Duration
	// Engine adjusts each engine's configuration before it starts.
	Engine func(n *Node, c *engine.Config)
}

func (c *WorldConfig) validate() error {
	if c.Relays == 0 {
		c.Relays = 1
	}
	if c.Clients == 0 {
		c.Clients = 2
	}
	if c.Relays < 1 || c.Clients < 0 {
		return fmt.Errorf("%w: %d relays, %d clients", ErrConfig, c.Relays, c.Clients)
	}
	if c.Keepalive == 0 {
		c.Keepalive = 10 * time.Second
	}
	if c.LatencyMin == 0 {
		c.LatencyMin = time.Millisecond
	}
	if c.LatencyMax == 0 {
		c.LatencyMax = 50 * time.Millisecond
	}
	if c.LatencyMax < c.LatencyMin || c.Keepalive < 0 {
		return fmt.Errorf("%w: latency %v..%v, keepalive %v", ErrConfig, c.LatencyMin, c.LatencyMax, c.Keepalive)
	}
	if c.Watchdog == 0 {
		c.Watchdog = 60 * time.Second
	}
	if c.TickEvery == 0 {
		c.TickEvery = 5 * time.Second
	}
	if c.TickEvery < 0 {
		return fmt.Errorf("%w: TickEvery %v", ErrConfig, c.TickEvery)
	}
	if c.AdvanceP < 0 || c.AdvanceP >= 1 {
		return fmt.Errorf("%w: AdvanceP %v", ErrConfig, c.AdvanceP)
	}
	return nil
}

// World is a deterministic universe of relays and clients: engines with
// queued tasks, simulated disks, links and a virtual clock, all driven by
// one generator. It is not safe for concurrent use.
type World struct {
	cfg   WorldConfig
	rng   *rand.Rand
	randR io.Reader
	tr    *tracer
	now   time.Time
	steps int
	err   error

	nodes   []*Node
	conns   []*conn
	nextCID int
	blocked map[[2]int]int // directed, counted:: from node index -> to node index

	timers  []*timer
	nextSeq uint64

	// faults on frames and disk writes; nil when the network is healthy.
	faults *Faults

	ledger ledger
	stats  Stats
	// asked, sent and received record, per node and document, the step of
	// the last Ask, of the last frame the node sent about the document and
	// of the last one delivered to it.
	asked, sent, received map[nodeDoc]int
	// durable caches, per disk and document, the changes known to be on
	// that disk (disks only grow, so the cache never goes stale).
	durable map[diskDoc]map[crdt.Hash]bool
}

type diskDoc struct {
	disk *store.MemStore
	doc  string
}

type nodeDoc struct{ node, doc string }

// Stats counts what a World did.
type Stats struct {
	Steps        int
	Frames       int // frames the engines handed to a link
	Bytes        int
	Delivered    int // frames handed to Session.HandleFrame
	Dropped      int // frames lost to faults, cuts and closed ends
	Changes      int // local changes whose Change returned nil
	Ops          int // workload operations completed
	OpErrors     int // workload operations that returned an error
	Dials        int
	Cuts         int
	Crashes      int
	Restarts     int
	Wipes        int
	Partitions   int
	FrameFaults  int // losses, duplications and reorderings injected
	DiskFaults   int // crashes and errors injected into Apply
	Acks         int // relay acknowledgements observed by clients
	Evictions    int64
	ProtocolErrs int64
}

// NewWorld builds a World with every node started, and no connection.
func NewWorld(cfg WorldConfig) (*World, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &World{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		now:      epoch,
		blocked:  map[[2]int]int{},
		asked:    map[nodeDoc]int{},
		sent:     map[nodeDoc]int{},
		received: map[nodeDoc]int{},
		durable:  map[diskDoc]map[crdt.Hash]bool{},
	}
	w.randR = randReader{w.rng}
	w.tr = newTracer(w, cfg.Trace)
	w.ledger.init()
	for i := range cfg.Relays {
		w.nodes = append(w.nodes, &Node{w: w, Name: fmt.Sprintf("r%d", i+1), Relay: true, index: len(w.nodes), disk: store.NewMemStore()})
	}
	for i := range cfg.Clients {
		w.nodes = append(w.nodes, &Node{w: w, Name: fmt.Sprintf("c%d", i+1), index: len(w.nodes), disk: store.NewMemStore()})
	}
	for _, n := range w.nodes {
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// randReader is the engines' Config.Rand: bytes from the World's one
// generator, so actor, storage and document ids follow the seed.
type randReader struct{ r *rand.Rand }

func (r randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := r.r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}

// Rand returns the World's generator, for scripts that draw their own
// choices (everything stays on the seed).
func (w *World) Rand() *rand.Rand { return w.rng }

// Now is the virtual time.
func (w *World) Now() time.Time { return w.now }

// Steps is the number of steps taken so far.
func (w *World) Steps() int { return w.steps }

// Err is the first failure the World detected, or nil.
func (w *World) Err() error { return w.err }

// Stats returns the counters.
func (w *World) Stats() Stats {
	s := w.stats
	s.Steps = w.steps
	return s
}

// TraceHash is the SHA-256 of every trace line so far.
func (w *World) TraceHash() [32]byte { return w.tr.sum() }

// Logf adds a line to the trace (scripts use it to label phases).
func (w *World) Logf(format string, args ...any) { w.tr.logf("# "+format, args...) }

// fail records the first failure; the World stops stepping.
func (w *World) fail(err error) {
	if w.err == nil {
		w.err = err
		w.tr.logf("FAIL %v", err)
	}
}

// Node returns the node called name (r1…, c1…), or nil.
func (w *World) Node(name string) *Node {
	for _, n := range w.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Nodes returns every node, relays first.
func (w *World) Nodes() []*Node { return slices.Clone(w.nodes) }

// Relays returns the relay nodes.
func (w *World) Relays() []*Node {
	var out []*Node
	for _, n := range w.nodes {
		if n.Relay {
			out = append(out, n)
		}
	}
	return out
}

// Clients returns the client nodes.
func (w *World) Clients() []*Node {
	var out []*Node
	for _, n := range w.nodes {
		if !n.Relay {
			out = append(out, n)
		}
	}
	return out
}

// Node is one simulated process: an engine, the disk it writes to, and
// the document tasks it has queued.
type Node struct {
	w     *World
	Name  string
	Relay bool
	index int
	// Skew is added to the World's clock to give this node's clock.
	Skew time.Duration

	disk  *store.MemStore
	eng   *engine.Engine
	gen   int // incarnation: bumped by every crash
	up    bool
	tasks []func()

	local   map[string]bool       // documents with changes in this incarnation
	heads   map[string]crdt.Heads // latest heads seen through OnChange
	pending map[string]bool       // Pending() as last observed

	// Dialling: a client dials its home relay; a relay may dial another.
	home       *Node
	pick       func() *Node // chooses the relay of the next dial (swarm)
	wantOnline bool
	out        *endpoint // our end of the current dialled connection
	redial     *timer
	attempt    int
	ticker     *timer

	calls []*call

	// ApplyFault, when set, is asked before every write batch of this
	// node's engine; see DiskAction.
	ApplyFault func(ops []store.Op) DiskAction
	starting   bool
}

// DiskAction is what the simulated disk does with one write batch.
type DiskAction int

// Disk actions.
const (
	// DiskWrite writes the batch (the normal case).
	DiskWrite DiskAction = iota
	// DiskError fails the batch with ErrDiskFault; nothing is written.
	DiskError
	// DiskCrashBefore crashes the process before the batch is written.
	DiskCrashBefore
	// DiskCrashAfter writes the batch, then crashes the process before
	// Apply returns (the engine never learns that it is durable).
	DiskCrashAfter
	// DiskLie reports success without writing (a disk that lies about
	// fsync). No engine can survive it; tests use it to show that the
	// checks catch a lost write.
	DiskLie
)

func (a DiskAction) String() string {
	return [...]string{"write", "error", "crash-before-write", "crash-after-write", "lie"}[a]
}

// Up reports whether the node's process is running.
func (n *Node) Up() bool { return n.up }

// Engine is the node's current engine (nil while it is down). Scripts
// must not call its blocking methods directly: use World.Do.
func (n *Node) Engine() *engine.Engine { return n.eng }

// Disk is the node's simulated disk.
func (n *Node) Disk() *store.MemStore { return n.disk }

// Now is the node's clock: the World's plus its skew.
func (n *Node) Now() time.Time { return n.w.now.Add(n.Skew) }

// Online reports whether the node has a joined dialled connection.
func (n *Node) Online() bool { return n.up && n.eng.Online() }

// Has reports whether the node's current incarnation holds changes of
// document id.
func (n *Node) Has(id string) bool { return n.local[id] }

func (n *Node) start() error {
	w := n.w
	gen := n.gen
	cfg := engine.Config{
		Store:        &nodeStore{n: n, gen: gen, mem: n.disk},
		PeerID:       n.Name,
		Logger:       slog.New(&traceHandler{w: w, node: n.Name}),
		Now:          n.Now,
		Rand:         w.randR,
		TrackPending: !n.Relay,
		Go: func(f func()) {
			if n.gen == gen && n.up {
				n.tasks = append(n.tasks, f)
			}
		},
		OnChange: func(doc string, heads crdt.Heads, local bool) {
			if n.gen == gen {
				n.local[doc] = true
				n.heads[doc] = heads
			}
		},
	}
	if w.cfg.Engine != nil {
		w.cfg.Engine(n, &cfg)
	}
	n.local, n.heads, n.pending = map[string]bool{}, map[string]crdt.Heads{}, map[string]bool{}
	if err := n.disk.Documents(context.Background(), func(id string) bool {
		n.local[id] = true
		return true
	}); err != nil {
		return err
	}
	n.up = true
	n.starting = true
	eng, err := engine.New(cfg)
	n.starting = false
	if err != nil {
		n.up = false
		return fmt.Errorf("simulations: start %s: %w", n.Name, err)
	}
	n.eng = eng
	for _, id := range eng.Pending() {
		n.pending[id] = true
	}
	w.tr.logf("%s start gen=%d storage=%s docs=%d pending=%d", n.Name, n.gen, eng.StorageID(), len(n.local), len(n.pending))
	n.ticker = w.every(w.cfg.TickEvery, n.Name+" tick", func() {
		if n.up {
			w.protect(n, "Tick", func() { n.eng.Tick(n.Now()) })
		}
	})
	if n.home != nil && n.wantOnline {
		w.scheduleDial(n)
	}
	return nil
}

// nodeStore is the simulated disk as the engine sees it: the node's
// MemStore, with faults injected into Apply.
type nodeStore struct {
	n   *Node
	gen int
	mem *store.MemStore
}

var _ store.Store = (*nodeStore)(nil)

// crashSignal unwinds a document task when the simulated process dies in
// the middle of it.
type crashSignal struct {
	n      *Node
	reason string
}

func (s *nodeStore) Load(ctx context.Context, k store.Key) ([]byte, error) {
	return s.mem.Load(ctx, k)
}

func (s *nodeStore) LoadRange(ctx context.Context, p store.Key) ([]store.Chunk, error) {
	return s.mem.LoadRange(ctx, p)
}

func (s *nodeStore) Documents(ctx context.Context, fn func(string) bool) error {
	return s.mem.Documents(ctx, fn)
}

func (s *nodeStore) Close() error { return s.mem.Close() }

func (s *nodeStore) Apply(ctx context.Context, ops []store.Op) error {
	n := s.n
	act := DiskWrite
	if !n.starting && n.gen == s.gen {
		if n.ApplyFault != nil {
			act = n.ApplyFault(ops)
		}
		if act == DiskWrite && n.w.faults != nil {
			act = n.w.faults.disk(n)
		}
	}
	if act == DiskError {
		for _, c := range n.calls {
			c.diskError = true
		}
	}
	if act != DiskWrite {
		n.w.stats.DiskFaults++
		n.w.tr.logf("%s disk %s (%d ops: %s)", n.Name, act, len(ops), opsSummary(ops))
	}
	switch act {
	case DiskError:
		return fmt.Errorf("%w: %d ops", ErrDiskFault, len(ops))
	case DiskCrashBefore:
		panic(crashSignal{n, "crash in Apply, before the write"})
	case DiskCrashAfter:
		if err := s.mem.Apply(ctx, ops); err != nil {
			return err
		}
		panic(crashSignal{n, "crash in Apply, after the write"})
	case DiskLie:
		return nil
	}
	return s.mem.Apply(ctx, ops)
}

func opsSummary(ops []store.Op) string {
	docs := map[string]bool{}
	var ids []string
	for _, o := range ops {
		if len(o.Key) > 0 && !docs[o.Key[0]] {
			docs[o.Key[0]] = true
			ids = append(ids, short(o.Key[0]))
		}
	}
	return fmt.Sprint(ids)
}

// short abbreviates a document id for the trace.
func short(id string) string {
	if len(id) > 6 {
		return id[:6]
	}
	return id
}

// timer is an event at a virtual time.
type timer struct {
	at       time.Time
	seq      uint64
	name     string
	fn       func()
	periodic bool
	dead     bool
}

func (w *World) after(d time.Duration, name string, fn func()) *timer {
	t := &timer{at: w.now.Add(d), seq: w.nextSeq, name: name, fn: fn}
	w.nextSeq++
	i, _ := slices.BinarySearchFunc(w.timers, t, func(a, b *timer) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return int(a.seq) - int(b.seq)
	})
	w.timers = slices.Insert(w.timers, i, t)
	return t
}

// every runs fn every d until the returned handle is cancelled. Periodic
// timers do not keep the World from being quiet.
func (w *World) every(d time.Duration, name string, fn func()) *timer {
	handle := &timer{periodic: true}
	var tick func()
	tick = func() {
		if handle.dead {
			return
		}
		fn()
		if !handle.dead {
			w.after(d, name, tick).periodic = true
		}
	}
	w.after(d, name, tick).periodic = true
	return handle
}

func (t *timer) cancel() {
	if t != nil {
		t.dead = true
	}
}

// item is one thing a step can do.
type item struct {
	task  *Node
	frame *endpoint
	timer *timer
}

func (w *World) readyItems() []item {
	var items []item
	for _, n := range w.nodes {
		if n.up && len(n.tasks) > 0 {
			items = append(items, item{task: n})
		}
	}
	live := w.conns[:0]
	for _, c := range w.conns {
		if c.dead() {
			continue
		}
		live = append(live, c)
		for _, e := range []*endpoint{c.a, c.b} {
			if w.deliverable(e) {
				items = append(items, item{frame: e})
			}
		}
	}
	clear(w.conns[len(live):])
	w.conns = live
	keep := w.timers[:0]
	for _, t := range w.timers {
		if !t.dead {
			keep = append(keep, t)
		}
	}
	clear(w.timers[len(keep):])
	w.timers = keep
	for _, t := range w.timers {
		if t.at.After(w.now) {
			break
		}
		items = append(items, item{timer: t})
	}
	return items
}

// nextTime is the earliest future time at which something is due.
func (w *World) nextTime() (time.Time, bool) {
	var next time.Time
	found := false
	for _, t := range w.timers {
		if !t.dead && t.at.After(w.now) {
			next, found = t.at, true
			break
		}
	}
	for _, c := range w.conns {
		for _, e := range []*endpoint{c.a, c.b} {
			if len(e.q) == 0 || c.cut || w.isBlocked(e.n, e.peer.n) {
				continue
			}
			if at := e.q[0].at; at.After(w.now) && (!found || at.Before(next)) {
				next, found = at, true
			}
		}
	}
	return next, found
}

// Step takes one step: it runs one queued document task, delivers one
// frame, fires one timer or advances the clock, chosen by the generator.
// It reports false when nothing can happen any more, or after a failure.
func (w *World) Step() bool {
	if w.err != nil {
		return false
	}
	items := w.readyItems()
	next, hasNext := w.nextTime()
	if len(items) == 0 || (hasNext && w.cfg.AdvanceP > 0 && w.rng.Float64() < w.cfg.AdvanceP) {
		if w.quiet() && w.resumeNetworkCalls() {
			return w.err == nil
		}
		if !hasNext {
			return false
		}
		w.steps++
		w.now = next
		w.tr.logf("advance")
		return w.err == nil
	}
	w.steps++
	it := items[w.rng.IntN(len(items))]
	switch {
	case it.task != nil:
		w.runTask(it.task)
	case it.frame != nil:
		w.deliver(it.frame)
	default:
		t := it.timer
		t.dead = true
		w.tr.logf("timer %s", t.name)
		t.fn()
	}
	return w.err == nil
}

func (w *World) runTask(n *Node) {
	i := w.rng.IntN(len(n.tasks))
	f := n.tasks[i]
	n.tasks = slices.Delete(n.tasks, i, i+1)
	gen := n.gen
	w.tr.logf("%s task (%d more queued)", n.Name, len(n.tasks))
	before := n.eng.Stats()
	if !w.protect(n, "document task", f) || n.gen != gen {
		return
	}
	after := n.eng.Stats()
	if l, e := after.DocLoads-before.DocLoads, after.Evictions-before.Evictions; l+e > 0 {
		w.tr.logf("%s task loaded %d and evicted %d documents", n.Name, l, e)
	}
	w.afterTask(n)
}

// protect runs f, one call into n's engine. A crashSignal crashes the
// node; any other panic fails the run.
func (w *World) protect(n *Node, what string, f func()) (ok bool) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		ok = false
		if cs, isCrash := r.(crashSignal); isCrash {
			w.crash(cs.n, cs.reason)
			return
		}
		w.fail(fmt.Errorf("%w: %s on %s: %v\n%s", ErrPanic, what, n.Name, r, debug.Stack()))
	}()
	f()
	return true
}

// afterTask observes what a document task changed: the client's pending
// set (acknowledgements) and the embedding API calls it answered.
func (w *World) afterTask(n *Node) {
	if !n.Relay {
		w.observePending(n)
	}
	w.wakeCalls(n)
}

func (w *World) observePending(n *Node) {
	cur := n.eng.Pending()
	set := make(map[string]bool, len(cur))
	for _, id := range cur {
		set[id] = true
	}
	var gone []string
	for id := range n.pending {
		if !set[id] {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	n.pending = set
	for _, id := range gone {
		w.acknowledged(n, id)
	}
}

// quiet reports whether nothing is left to happen but periodic ticks:
// no queued task, no frame that can still be delivered, no pending timer.
func (w *World) quiet() bool {
	for _, n := range w.nodes {
		if n.up && len(n.tasks) > 0 {
			return false
		}
	}
	for _, c := range w.conns {
		if c.cut {
			continue
		}
		for _, e := range []*endpoint{c.a, c.b} {
			if len(e.q) > 0 && !w.isBlocked(e.n, e.peer.n) {
				return false
			}
		}
	}
	for _, t := range w.timers {
		if !t.dead && !t.periodic {
			return false
		}
	}
	return true
}

// Quiet reports whether nothing is left to happen but periodic ticks, and
// no embedding API call is waiting.
func (w *World) Quiet() bool {
	if !w.quiet() {
		return false
	}
	for _, n := range w.nodes {
		if len(n.calls) > 0 {
			return false
		}
	}
	return true
}

// RunUntilQuiet steps until the World is quiet, at most maxSteps steps.
// It returns the steps taken.
func (w *World) RunUntilQuiet(maxSteps int) (int, error) {
	start := w.steps
	for !w.Quiet() {
		if w.steps-start >= maxSteps {
			w.fail(fmt.Errorf("%w: not quiet after %d steps", ErrStuck, maxSteps))
			break
		}
		if !w.Step() {
			if w.err == nil && !w.Quiet() {
				w.fail(fmt.Errorf("%w: nothing can happen, but %s", ErrStuck, w.busy()))
			}
			break
		}
	}
	return w.steps - start, w.err
}

// busy describes what keeps the World from being quiet.
func (w *World) busy() string {
	for _, n := range w.nodes {
		if n.up && len(n.tasks) > 0 {
			return n.Name + " has queued tasks"
		}
		for _, c := range n.calls {
			return fmt.Sprintf("%s: %s is waiting in %s(%s)", n.Name, c.name, c.kind, short(c.doc))
		}
	}
	for _, t := range w.timers {
		if !t.dead && !t.periodic {
			return "timer " + t.name + " is pending"
		}
	}
	return "frames are in flight"
}

// RunFor steps until the virtual clock has advanced by d (or a failure).
func (w *World) RunFor(d time.Duration) error {
	end := w.now.Add(d)
	done := false
	w.after(d, "end of run", func() { done = true })
	for !done && w.Step() {
	}
	if w.err == nil && w.now.Before(end) {
		w.now = end
	}
	return w.err
}

// Crash kills node name's process: its engine, queued tasks and
// everything not on disk are gone; its connections die (the other ends
// notice within the keepalive).
func (w *World) Crash(name string) { w.crash(w.mustNode(name), "scripted") }

func (w *World) crash(n *Node, reason string) {
	if !n.up {
		return
	}
	w.stats.Crashes++
	w.tr.logf("%s CRASH (%s): %d queued tasks lost", n.Name, reason, len(n.tasks))
	n.up = false
	n.gen++
	n.tasks = nil
	n.eng = nil
	n.ticker.cancel()
	n.redial.cancel()
	n.redial = nil
	n.out = nil
	_ = n.disk.Close()
	for _, c := range slices.Clone(n.calls) {
		w.abortCall(c)
	}
	for _, c := range w.conns {
		if c.a.n == n || c.b.n == n {
			w.cutConn(c, "crash of "+n.Name)
		}
	}
}

// Restart starts node name again on its disk: a new engine (with a new
// actor id) on a clone of what the crashed one made durable. With wipe the
// disk is lost too (a reinstalled device): the node starts empty.
func (w *World) Restart(name string, wipe bool) error { return w.restart(w.mustNode(name), wipe) }

func (w *World) restart(n *Node, wipe bool) error {
	if n.up {
		return nil
	}
	w.stats.Restarts++
	if wipe {
		w.stats.Wipes++
		w.tr.logf("%s disk wiped", n.Name)
		w.ledger.wiped(n)
		n.disk = store.NewMemStore()
	} else {
		n.disk = n.disk.Clone()
	}
	if err := n.start(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

func (w *World) mustNode(name string) *Node {
	n := w.Node(name)
	if n == nil {
		panic("simulations: no node " + name)
	}
	return n
}

// TraceTail returns the last lines of the trace, oldest first.
func (w *World) TraceTail() []string { return w.tr.lastLines() }

// DiskHas reports whether the node's disk holds every change in heads of
// document id.
func (n *Node) DiskHas(id string, heads crdt.Heads) (bool, error) {
	d, err := loadDoc(n.disk, id)
	if err != nil {
		return false, err
	}
	for _, h := range heads {
		if !d.HasChange(h) {
			return false, nil
		}
	}
	return true, nil
}

// Pending is the node's engine's Pending set (nil while it is down).
func (n *Node) Pending() []string {
	if !n.up {
		return nil
	}
	return n.eng.Pending()
}
