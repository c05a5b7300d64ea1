package simulations

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/engine/wire"
)

// Params is one seed's simulation: its size, workload and fault profile.
// DrawParams draws it from the seed (swarm testing: each seed also
// decides which faults are on and how harsh they are).
type Params struct {
	Clients, Relays int
	// Chain: relay i dials relay i-1; otherwise every relay dials r1.
	Chain bool
	// Harshness in [0,1] scales every fault rate.
	Harshness float64
	// Duration of the workload phase (virtual time); then the network
	// heals.
	Duration time.Duration
	// OpGap is the mean time between a client's operations.
	OpGap time.Duration
	// SharedDocs are created at the start and edited by every client.
	SharedDocs int
	LatencyMax time.Duration
	Keepalive  time.Duration
	AdvanceP   float64
	Faults     Faults
	// Mean time between fault events of each kind; 0: never.
	CutEvery, PartitionEvery, ClientCrashEvery, RelayCrashEvery, OfflineEvery time.Duration
	// Wipe is the probability that a client crash also loses its disk.
	Wipe float64
	// SwitchRelay is the probability that a client dials another relay.
	SwitchRelay float64
	// Skew bounds each node's clock offset.
	Skew time.Duration
	// MaxLoadedDocs and IdleTimeout of every engine (0: engine default).
	MaxLoadedDocs int
	IdleTimeout   time.Duration
	// WaitFind is the probability that a record lookup waits for the
	// network rather than asking and moving on.
	WaitFind float64
	// BigText makes text edits insert 32–287 characters instead of a
	// word, so documents outgrow the engine's 1 KiB snapshot threshold and
	// the incremental save path (and its compaction) is exercised.
	BigText bool
}

// DrawParams draws a seed's parameters from r.
func DrawParams(r *rand.Rand) Params {
	h := r.Float64()
	on := func(p float64) bool { return r.Float64() < p }
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	gap := func(p float64, lo, hi time.Duration) time.Duration {
		d := dur(lo, hi)
		if !on(p) || h < 0.02 {
			return 0
		}
		return time.Duration(float64(d) / h)
	}
	p := Params{
		Clients:    2 + r.IntN(5),
		Relays:     []int{1, 1, 1, 1, 2, 2, 2, 3, 3, 3}[r.IntN(10)],
		Chain:      on(0.5),
		Harshness:  h,
		Duration:   dur(15*time.Second, 45*time.Second),
		OpGap:      dur(200*time.Millisecond, 1500*time.Millisecond),
		SharedDocs: 1 + r.IntN(3),
		LatencyMax: dur(2*time.Millisecond, 150*time.Millisecond),
		Keepalive:  dur(2*time.Second, 20*time.Second),
		WaitFind:   0.03,
	}
	if on(0.7) {
		p.AdvanceP = 0.3 * h
	}
	if on(0.5) {
		p.Faults.Lose = 0.03 * h * r.Float64()
	}
	if on(0.4) {
		p.Faults.Duplicate = 0.02 * h * r.Float64()
	}
	if on(0.4) {
		p.Faults.Reorder = 0.02 * h * r.Float64()
	}
	if on(0.5) {
		p.Faults.CrashBeforeWrite = 0.02 * h * r.Float64()
	}
	if on(0.4) {
		p.Faults.CrashAfterWrite = 0.02 * h * r.Float64()
	}
	if on(0.4) {
		p.Faults.WriteError = 0.02 * h * r.Float64()
	}
	p.CutEvery = gap(0.6, 2*time.Second, 20*time.Second)
	p.PartitionEvery = gap(0.5, 4*time.Second, 30*time.Second)
	p.ClientCrashEvery = gap(0.5, 4*time.Second, 30*time.Second)
	p.RelayCrashEvery = gap(0.4, 8*time.Second, 40*time.Second)
	p.OfflineEvery = gap(0.6, 4*time.Second, 30*time.Second)
	if on(0.2) {
		p.Wipe = 0.3
	}
	if p.Relays > 1 && on(0.5) {
		p.SwitchRelay = 0.3
	}
	if on(0.5) {
		p.Skew = dur(time.Second, 10*time.Minute)
	}
	if on(0.3) {
		p.MaxLoadedDocs = 1 + r.IntN(4)
	}
	if on(0.3) {
		p.IdleTimeout = dur(500*time.Millisecond, 10*time.Second)
	}
	p.BigText = on(0.5)
	return p
}

// DrawParamsForSeed returns the parameters Run uses for seed.
func DrawParamsForSeed(seed uint64) Params {
	return DrawParams(rand.New(rand.NewPCG(seed, ^seed)))
}

// Options configures Run.
type Options struct {
	Seed uint64
	// Trace receives every step (replay with -v).
	Trace io.Writer
	// Params, when set, replaces the parameters drawn from the seed.
	Params *Params
}

// Result is the outcome of one seed.
type Result struct {
	Seed   uint64
	Params Params
	// Err is the first failure (nil: every invariant held).
	Err error
	// Converged: after healing, every replica held identical heads and
	// JSON for every document.
	Converged bool
	// StepsToConverge counts the steps from the heal to quiescence.
	StepsToConverge int
	// Lost counts acknowledged changes missing at the end.
	Lost int
	// Docs is the number of documents at the end.
	Docs int
	// RelayGaps counts (relay, document) pairs missing before the
	// clients asked for every document: documents a relay only gets when
	// one of its clients asks (see docs/simulations.md).
	RelayGaps int
	// FaultRate is the injected faults per virtual minute of workload.
	FaultRate float64
	// FramesPerChange is frames sent per durable change.
	FramesPerChange float64
	// FrameBudget and ByteBudget are the bounds the frames and bytes sent
	// were checked against.
	FrameBudget, ByteBudget int
	Stats                   Stats
	TraceHash               [32]byte
	// LastTrace holds the trace lines before the end of the run.
	LastTrace []string
}

// ReplayCommand is the one command that replays a seed with its trace.
func ReplayCommand(seed uint64) string {
	return fmt.Sprintf("go run ./simulations/cmd/simulate -seed %d -v", seed)
}

// Limits every run is held to.
const (
	// healSteps bounds each phase of the liveness check (heal, then
	// fetch every document everywhere).
	healSteps = 200_000
)

// Run simulates one seed: the workload under its fault profile, then the
// heal, then the checks.
func Run(opts Options) (res Result) {
	res.Seed = opts.Seed
	var w *World
	defer func() {
		if r := recover(); r != nil {
			res.Err = fmt.Errorf("%w: simulator: %v\n%s", ErrPanic, r, debug.Stack())
		}
		if w != nil {
			res.Stats = w.Stats()
			res.TraceHash = w.TraceHash()
			if res.Err != nil {
				res.LastTrace = w.tr.lastLines()
			}
		}
	}()
	p := DrawParamsForSeed(opts.Seed)
	if opts.Params != nil {
		p = *opts.Params
	}
	res.Params = p
	cfg := WorldConfig{
		Seed:       opts.Seed,
		Relays:     p.Relays,
		Clients:    p.Clients,
		Trace:      opts.Trace,
		Keepalive:  p.Keepalive,
		LatencyMax: p.LatencyMax,
		AdvanceP:   p.AdvanceP,
		Engine: func(n *Node, c *engine.Config) {
			c.MaxLoadedDocs = p.MaxLoadedDocs
			c.IdleTimeout = p.IdleTimeout
		},
	}
	var err error
	if w, err = NewWorld(cfg); err != nil {
		res.Err = err
		return res
	}
	s := newSwarm(w, p)
	s.run(&res)
	return res
}

// swarm drives a World with the workload and faults of one seed's Params.
type swarm struct {
	w       *World
	p       Params
	healing bool
	busy    map[*Node]bool
	seq     int

	shared      []string
	toCreate    map[*Node]int // shared documents a client still has to create
	recordIDs   []string
	recordColl  map[string]string
	expect      []expectation
	counter     map[string]*counterBook
	faultEvents int
	timers      []*timer // workload and fault timers, cancelled at the heal
}

func (s *swarm) after(d time.Duration, name string, fn func()) {
	s.timers = append(s.timers, s.w.after(d, name, fn))
}

// expectation is a property of a converged document that follows from a
// change a client was told is durable.
type expectation struct {
	rec   *changeRec
	doc   string
	what  string
	check func(v map[string]any) bool
}

// counterBook bounds a shared counter: every acknowledged increment is in
// it; increments whose outcome is unknown (crash) or that may be lost
// (wiped disk) may be.
type counterBook struct {
	sure    []counted
	unknown int64
}

type counted struct {
	rec   *changeRec
	delta int64
}

func newSwarm(w *World, p Params) *swarm {
	return &swarm{w: w, p: p, busy: map[*Node]bool{}, toCreate: map[*Node]int{}, recordColl: map[string]string{}, counter: map[string]*counterBook{}}
}

var collections = []string{"todos", "notes"}

func (s *swarm) run(res *Result) {
	w, p := s.w, s.p
	w.Logf("params %+v", p)
	w.SetFaults(&p.Faults)
	relays, clients := w.Relays(), w.Clients()
	for _, n := range w.nodes {
		if p.Skew > 0 {
			n.Skew = w.between(-p.Skew, p.Skew)
		}
	}
	for i, r := range relays {
		if i == 0 {
			continue
		}
		to := relays[0]
		if p.Chain {
			to = relays[i-1]
		}
		w.Connect(r.Name, to.Name)
	}
	for _, c := range clients {
		w.Connect(c.Name, relays[w.rng.IntN(len(relays))].Name)
		if p.SwitchRelay > 0 {
			c.pick = func() *Node {
				if !s.healing && w.rng.Float64() < p.SwitchRelay {
					return relays[w.rng.IntN(len(relays))]
				}
				return c.home
			}
		}
	}
	for k := range p.SharedDocs {
		s.toCreate[clients[k%len(clients)]]++
	}
	for _, c := range clients {
		s.scheduleOp(c)
	}
	s.scheduleFaults()
	healAt := w.now.Add(p.Duration)
	w.after(p.Duration, "heal", s.heal)
	for w.now.Before(healAt) && w.Step() {
	}
	for !s.healing && w.Step() {
	}
	if w.err != nil {
		res.Err = w.err
		return
	}
	minutes := p.Duration.Minutes()
	st := w.Stats()
	res.FaultRate = float64(s.faultEvents+st.FrameFaults+st.DiskFaults) / minutes

	// Liveness: everything heals; the replicas must converge.
	healStart := w.steps
	if _, err := w.RunUntilQuiet(healSteps); err != nil {
		res.Err = err
		return
	}
	for _, n := range w.nodes {
		if n.home != nil && !n.Online() {
			res.Err = fmt.Errorf("%w: %s is not online after the heal", ErrStuck, n.Name)
			return
		}
	}
	docs := w.Documents()
	for _, r := range relays {
		for _, id := range docs {
			if !r.local[id] {
				res.RelayGaps++
			}
		}
	}
	// Every client (and every relay that dials) asks for every document,
	// as a user opening everything would.
	for _, n := range w.nodes {
		if n.home != nil {
			for _, id := range docs {
				w.Ask(n.Name, id)
			}
		}
	}
	if _, err := w.RunUntilQuiet(healSteps); err != nil {
		res.Err = err
		return
	}
	res.StepsToConverge = w.steps - healStart
	ackErr := w.CheckAcknowledged() // reported after the safety checks
	final, err := w.CheckConverged(docs)
	if err != nil {
		res.Err = err
		return
	}
	res.Converged = true
	res.Docs = len(final)
	res.Lost, err = w.CheckLedger(final)
	if err != nil {
		res.Err = err
		return
	}
	if err := s.checkExpectations(final); err != nil {
		res.Err = err
		return
	}
	if ackErr != nil {
		res.Err = ackErr
		return
	}
	st = w.Stats()
	docBytes := 0
	for _, d := range final {
		docBytes += d.Size()
	}
	res.FrameBudget = frameBudget(p, st, len(final))
	res.ByteBudget = byteBudget(res.FrameBudget, st, docBytes)
	if st.Changes > 0 {
		res.FramesPerChange = float64(st.Frames) / float64(st.Changes)
	}
	if st.Frames > res.FrameBudget {
		res.Err = fmt.Errorf("%w: %d frames sent for %d changes, %d dials and %d documents: over the budget of %d (a sync storm)", ErrInvariant, st.Frames, st.Changes, st.Dials, len(final), res.FrameBudget)
		return
	}
	if st.Bytes > res.ByteBudget {
		res.Err = fmt.Errorf("%w: %d bytes sent in %d frames, %d dials, %d bytes of documents: over the budget of %d", ErrInvariant, st.Bytes, st.Frames, st.Dials, docBytes, res.ByteBudget)
		return
	}
	if res.Err = w.err; res.Err != nil {
		return
	}
	w.Logf("done: %d steps, %d to converge, %d frames (budget %d), %d changes, %d acks", w.steps, res.StepsToConverge, st.Frames, res.FrameBudget, st.Changes, st.Acks)
}

// frameBudget is the most frames a run may send (see docs/simulations.md,
// "No sync storms"). A change reaches each other replica in a round of
// sync and reply per hop (about two frames per replica), and each
// connection re-syncs each document it carries in a round trip or two.
// The measured maximum over thousands of seeds is about half of this.
func frameBudget(p Params, st Stats, docs int) int {
	nodes := p.Clients + p.Relays
	return 4*(st.Changes*nodes+(st.Dials+nodes)*(docs+1)) + 200
}

// byteBudget is the most bytes a run may send: every frame carries a
// header, heads and a bloom filter (well under 256 bytes at these
// document sizes), and every connection may carry each document in full,
// a few times over when bloom filters give false positives.
func byteBudget(frames int, st Stats, docBytes int) int {
	return 256*frames + 4*(st.Dials+1)*docBytes
}

func (s *swarm) heal() {
	w := s.w
	s.healing = true
	w.Logf("heal: faults off, partitions healed, every node up and online")
	w.SetFaults(nil)
	for _, t := range s.timers {
		t.cancel()
	}
	s.timers = nil
	w.Heal()
	for _, n := range w.nodes {
		if !n.up {
			_ = w.restart(n, false)
		}
	}
	for _, n := range w.nodes {
		if n.home != nil && !n.wantOnline {
			w.Connect(n.Name, n.home.Name)
		}
	}
}

func (s *swarm) exp(mean time.Duration) time.Duration {
	return time.Duration(s.w.rng.ExpFloat64() * float64(mean))
}

func (s *swarm) scheduleOp(n *Node) {
	s.after(s.exp(s.p.OpGap), "op at "+n.Name, func() {
		if s.healing {
			return
		}
		if n.up && !s.busy[n] {
			s.op(n)
		}
		s.scheduleOp(n)
	})
}

// op starts one workload operation on client n. Every random choice is
// drawn here, on the World's goroutine, before the helper starts.
func (s *swarm) op(n *Node) {
	w := s.w
	r := w.rng
	s.seq++
	seq := s.seq
	rnd := r.Uint64()
	var (
		label   string
		fn      func(ctx context.Context, h *Handle) error
		after   func(c *call, err error)
		waitNet bool
	)
	switch {
	case s.toCreate[n] > 0:
		label = "create shared"
		fn = func(ctx context.Context, h *Handle) error {
			_, err := h.Docs.Create(ctx, initShared)
			return err
		}
		after = func(c *call, err error) {
			if err == nil && len(c.recs) > 0 {
				s.toCreate[n]--
				s.shared = append(s.shared, c.recs[0].doc)
			}
		}
	default:
		kind := weighted(r, opWeights)
		label, fn, after, waitNet = s.build(n, kind, seq, rnd)
	}
	if fn == nil {
		return
	}
	s.busy[n] = true
	w.startCall(n, label, waitNet, fn, func(c *call, err error) {
		s.busy[n] = false
		w.stats.Ops++
		if err != nil {
			w.stats.OpErrors++
		}
		if after != nil && c != nil {
			after(c, err)
		}
	})
}

type opKind int

const (
	opPut opKind = iota
	opSet
	opLike
	opBody
	opDelete
	opGet
	opList
	opMap
	opList2
	opText
	opCounter
	opNewShared
	opWaitFind
)

var opWeights = []int{
	opPut: 18, opSet: 10, opLike: 5, opBody: 8, opDelete: 4, opGet: 5, opList: 3,
	opMap: 8, opList2: 8, opText: 8, opCounter: 10, opNewShared: 1, opWaitFind: 1,
}

func weighted(r *rand.Rand, weights []int) opKind {
	total := 0
	for _, x := range weights {
		total += x
	}
	v := r.IntN(total)
	for i, x := range weights {
		if v < x {
			return opKind(i)
		}
		v -= x
	}
	return 0
}

func initShared(tx *crdt.Tx) error {
	for _, kv := range []struct {
		k string
		v any
	}{
		{"title", "shared"},
		{"items", []any{}},
		{"text", crdt.Text("")},
		{"count", crdt.Counter(0)},
		{"meta", map[string]any{}},
	} {
		if err := tx.Set([]any{kv.k}, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// localRecord picks a record n holds, or "".
func (s *swarm) localRecord(n *Node, rnd uint64) string {
	var have []string
	for _, id := range s.recordIDs {
		if n.local[id] {
			have = append(have, id)
		}
	}
	if len(have) == 0 {
		return ""
	}
	return have[rnd%uint64(len(have))]
}

// sharedDoc picks a shared document n holds; when it holds none, it asks
// for one and returns "".
func (s *swarm) sharedDoc(n *Node, rnd uint64) string {
	if len(s.shared) == 0 {
		return ""
	}
	id := s.shared[rnd%uint64(len(s.shared))]
	if !n.local[id] {
		s.w.Ask(n.Name, id)
		return ""
	}
	return id
}

func (s *swarm) build(n *Node, kind opKind, seq int, rnd uint64) (label string, fn func(context.Context, *Handle) error, after func(*call, error), waitNet bool) {
	w := s.w
	coll := collections[rnd%2]
	switch kind {
	case opPut:
		id, err := wire.NewDocumentID(w.randR)
		if err != nil {
			w.fail(err)
			return
		}
		fields := map[string]any{"title": fmt.Sprintf("%s-%d", n.Name, seq), "done": false, "rank": int64(rnd % 1000), "body": crdt.Text("note " + n.Name)}
		label = fmt.Sprintf("put %s/%s", coll, short(id))
		fn = func(ctx context.Context, h *Handle) error {
			return h.Records.Collection(coll).PutID(ctx, id, fields)
		}
		after = func(c *call, err error) {
			if err != nil {
				return
			}
			s.recordIDs = append(s.recordIDs, id)
			s.recordColl[id] = coll
			if len(c.recs) == 2 {
				idx, rec := c.recs[0], c.recs[1]
				s.expect = append(s.expect,
					expectation{rec: rec, doc: id, what: "record " + short(id) + " is in " + coll, check: func(v map[string]any) bool { return v["_collection"] == coll }},
					expectation{rec: idx, doc: idx.doc, what: "index of " + coll + " lists " + short(id), check: func(v map[string]any) bool { _, ok := v[id].(bool); return ok }},
				)
			}
		}
	case opSet, opLike, opBody, opDelete:
		id := s.localRecord(n, rnd)
		if id == "" {
			return s.build(n, opPut, seq, rnd)
		}
		coll = s.recordColl[id]
		c := func(h *Handle) *records.Collection { return h.Records.Collection(coll) }
		switch kind {
		case opSet:
			fields := map[string]any{"done": rnd&4 != 0, "title": fmt.Sprintf("%s-%d", n.Name, seq)}
			label = "set " + short(id)
			fn = func(ctx context.Context, h *Handle) error { return c(h).Set(ctx, id, fields) }
		case opLike:
			label = "like " + short(id)
			fn = func(ctx context.Context, h *Handle) error {
				return c(h).Update(ctx, id, func(tx *crdt.Tx) error { return tx.Increment([]any{"likes"}, 1) })
			}
		case opBody:
			label = "edit body " + short(id)
			fn = func(ctx context.Context, h *Handle) error {
				return c(h).Update(ctx, id, func(tx *crdt.Tx) error { return splice(tx, []any{"body"}, rnd, s.textFor(n.Name, rnd)) })
			}
		case opDelete:
			label = "delete " + short(id)
			fn = func(ctx context.Context, h *Handle) error { return c(h).Delete(ctx, id) }
			after = func(c *call, err error) {
				if err == nil && len(c.recs) > 0 {
					s.expect = append(s.expect, expectation{rec: c.recs[0], doc: id, what: "record " + short(id) + " is deleted", check: func(v map[string]any) bool { return v["_deleted"] == true }})
				}
			}
		}
	case opGet:
		if len(s.recordIDs) == 0 {
			return s.build(n, opPut, seq, rnd)
		}
		id := s.recordIDs[rnd%uint64(len(s.recordIDs))]
		coll = s.recordColl[id]
		label = "get " + short(id)
		fn = func(ctx context.Context, h *Handle) error {
			_, err := h.Records.Collection(coll).Get(ctx, id)
			return err
		}
	case opList:
		label = "list " + coll
		fn = func(ctx context.Context, h *Handle) error {
			_, err := h.Records.Collection(coll).List(ctx)
			return err
		}
	case opWaitFind:
		var missing []string
		for _, id := range s.recordIDs {
			if !n.local[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return s.build(n, opGet, seq, rnd)
		}
		id := missing[rnd%uint64(len(missing))]
		label, waitNet = "find (waiting) "+short(id), true
		fn = func(ctx context.Context, h *Handle) error { return h.Docs.Find(ctx, id) }
	case opNewShared:
		if len(s.shared) >= 6 {
			return s.build(n, opMap, seq, rnd)
		}
		s.toCreate[n]++
		return "", nil, nil, false
	case opMap, opList2, opText, opCounter:
		id := s.sharedDoc(n, rnd)
		if id == "" {
			return
		}
		switch kind {
		case opMap:
			key := fmt.Sprintf("k%d", rnd%8)
			val := fmt.Sprintf("%s-%d", n.Name, seq)
			label = "map " + short(id) + " " + key
			fn = func(ctx context.Context, h *Handle) error {
				_, err := h.Docs.Change(ctx, id, func(tx *crdt.Tx) error {
					cur, err := tx.Get([]any{"meta", key})
					if err != nil {
						return err
					}
					if cur != nil && rnd&8 != 0 {
						return tx.Delete([]any{"meta", key})
					}
					return tx.Set([]any{"meta", key}, val)
				})
				return err
			}
		case opList2:
			label = "list edit " + short(id)
			fn = func(ctx context.Context, h *Handle) error {
				_, err := h.Docs.Change(ctx, id, func(tx *crdt.Tx) error {
					cur, err := tx.Get([]any{"items"})
					if err != nil {
						return err
					}
					items, _ := cur.([]any)
					if len(items) > 0 && rnd%3 == 0 {
						return tx.Delete([]any{"items", int(rnd>>8) % len(items)})
					}
					return tx.Insert([]any{"items"}, int(rnd>>8)%(len(items)+1), fmt.Sprintf("%s-%d", n.Name, seq))
				})
				return err
			}
		case opText:
			label = "text edit " + short(id)
			fn = func(ctx context.Context, h *Handle) error {
				_, err := h.Docs.Change(ctx, id, func(tx *crdt.Tx) error { return splice(tx, []any{"text"}, rnd, s.textFor(n.Name, rnd)) })
				return err
			}
		case opCounter:
			delta := int64(1 + rnd%5)
			label = fmt.Sprintf("count %s +%d", short(id), delta)
			fn = func(ctx context.Context, h *Handle) error {
				_, err := h.Docs.Change(ctx, id, func(tx *crdt.Tx) error { return tx.Increment([]any{"count"}, delta) })
				return err
			}
			after = func(c *call, err error) {
				b := s.counter[id]
				if b == nil {
					b = &counterBook{}
					s.counter[id] = b
				}
				switch {
				case err == nil && len(c.recs) == 1:
					b.sure = append(b.sure, counted{rec: c.recs[0], delta: delta})
				case err == ErrAborted && c.fnRan:
					b.unknown += delta
				}
			}
		}
	}
	return label, fn, after, waitNet
}

// textFor is what a text edit inserts: the node's name, or with BigText
// the name repeated to 32–287 characters.
func (s *swarm) textFor(who string, rnd uint64) string {
	if !s.p.BigText {
		return " " + who
	}
	n := 32 + int(rnd>>40)%256
	return (" " + strings.Repeat(who+".", n/(len(who)+1)+1))[:n]
}

// splice inserts text into the string at path, at a position drawn from
// rnd, deleting up to two characters there.
func splice(tx *crdt.Tx, path []any, rnd uint64, text string) error {
	cur, err := tx.Get(path)
	if err != nil {
		return err
	}
	s, ok := cur.(string)
	if !ok {
		return nil
	}
	runes := []rune(s)
	pos := int(rnd>>16) % (len(runes) + 1)
	del := min(int(rnd>>24)%3, len(runes)-pos)
	return tx.Splice(path, pos, del, text)
}

func (s *swarm) checkExpectations(final map[string]DocState) error {
	for _, e := range s.expect {
		if e.rec.exempt {
			continue
		}
		st, ok := final[e.doc]
		if !ok || !e.check(st.Value) {
			return fmt.Errorf("%w: expected %s (from %s's change #%d)", ErrInvariant, e.what, e.rec.node, e.rec.seq)
		}
	}
	for _, id := range s.shared {
		b := s.counter[id]
		if b == nil {
			continue
		}
		st, ok := final[id]
		if !ok {
			continue // the creator's disk was wiped before the relay had it
		}
		got, _ := st.Value["count"].(int64)
		var lo, hi int64
		for _, c := range b.sure {
			if !c.rec.exempt {
				lo += c.delta
			}
			hi += c.delta
		}
		hi += b.unknown
		if got < lo || got > hi {
			return fmt.Errorf("%w: shared counter %s is %d; acknowledged increments sum to %d (at most %d with unknown and wiped ones)", ErrInvariant, short(id), got, lo, hi)
		}
	}
	return nil
}

// scheduleFaults starts the fault events of the profile.
func (s *swarm) scheduleFaults() {
	p := s.p
	s.repeat(p.CutEvery, "fault: cut", s.cutOne)
	s.repeat(p.PartitionEvery, "fault: partition", s.partition)
	s.repeat(p.ClientCrashEvery, "fault: client crash", func() { s.crashOne(false) })
	s.repeat(p.RelayCrashEvery, "fault: relay crash", func() { s.crashOne(true) })
	s.repeat(p.OfflineEvery, "fault: offline", s.offline)
}

func (s *swarm) repeat(mean time.Duration, name string, fn func()) {
	if mean <= 0 {
		return
	}
	s.after(s.exp(mean), name, func() {
		if s.healing {
			return
		}
		fn()
		s.repeat(mean, name, fn)
	})
}

func (s *swarm) cutOne() {
	w := s.w
	var live []*conn
	for _, c := range w.conns {
		if !c.cut && !c.a.closed && !c.b.closed {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return
	}
	s.faultEvents++
	w.cutConn(live[w.rng.IntN(len(live))], "fault")
}

func (s *swarm) partition() {
	w := s.w
	relays := w.Relays()
	var pairs [][2]*Node
	block := func(a, b *Node) { pairs = append(pairs, [2]*Node{a, b}) }
	both := func(a, b *Node) { block(a, b); block(b, a) }
	var what string
	switch k := w.rng.IntN(4); {
	case k == 0 && len(relays) > 1:
		// Split brain: the relays split in two, each with its clients.
		cut := 1 + w.rng.IntN(len(relays)-1)
		side := map[*Node]int{}
		for i, r := range relays {
			if i >= cut {
				side[r] = 1
			}
		}
		for _, n := range w.nodes {
			if !n.Relay && n.home != nil {
				side[n] = side[n.home]
			}
		}
		for _, a := range w.nodes {
			for _, b := range w.nodes {
				if a.index < b.index && side[a] != side[b] {
					both(a, b)
				}
			}
		}
		what = fmt.Sprintf("split brain at relay %d", cut)
	case k <= 1:
		n := w.nodes[w.rng.IntN(len(w.nodes))]
		for _, m := range w.nodes {
			if m != n {
				both(n, m)
			}
		}
		what = "isolate " + n.Name
	case k == 2:
		c := w.Clients()[w.rng.IntN(len(w.Clients()))]
		if c.home == nil {
			return
		}
		if w.rng.IntN(2) == 0 {
			block(c, c.home)
			what = "one-way " + c.Name + " -> " + c.home.Name
		} else {
			block(c.home, c)
			what = "one-way " + c.home.Name + " -> " + c.Name
		}
	default:
		a, b := w.nodes[w.rng.IntN(len(w.nodes))], w.nodes[w.rng.IntN(len(w.nodes))]
		if a == b {
			return
		}
		both(a, b)
		what = "between " + a.Name + " and " + b.Name
	}
	d := w.between(time.Second, 30*time.Second)
	if w.rng.IntN(5) == 0 {
		d = w.between(30*time.Second, 2*time.Minute)
	}
	s.faultEvents++
	w.stats.Partitions++
	w.tr.logf("partition %s for %v", what, d)
	for _, pr := range pairs {
		w.Block(pr[0].Name, pr[1].Name)
	}
	s.after(d, "end of partition "+what, func() {
		for _, pr := range pairs {
			w.Unblock(pr[0].Name, pr[1].Name)
		}
	})
}

func (s *swarm) crashOne(relay bool) {
	w := s.w
	var up []*Node
	for _, n := range w.nodes {
		if n.Relay == relay && n.up {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return
	}
	n := up[w.rng.IntN(len(up))]
	wipe := !relay && w.rng.Float64() < s.p.Wipe
	down := w.between(200*time.Millisecond, 15*time.Second)
	s.faultEvents++
	w.crash(n, "fault")
	s.after(down, "restart "+n.Name, func() {
		if !n.up {
			_ = w.restart(n, wipe)
		}
	})
}

func (s *swarm) offline() {
	w := s.w
	var on []*Node
	for _, n := range w.Clients() {
		if n.wantOnline {
			on = append(on, n)
		}
	}
	if len(on) == 0 {
		return
	}
	n := on[w.rng.IntN(len(on))]
	d := w.between(time.Second, 20*time.Second)
	if w.rng.IntN(5) == 0 {
		d = w.between(time.Minute, 10*time.Minute)
	}
	s.faultEvents++
	w.tr.logf("%s goes offline for %v", n.Name, d)
	w.Disconnect(n.Name)
	s.after(d, n.Name+" back online", func() {
		if !s.healing {
			w.Connect(n.Name, n.home.Name)
		}
	})
}
