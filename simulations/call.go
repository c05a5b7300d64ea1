package simulations

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/records"
)

// ErrAborted is the outcome of a call whose node crashed under it: the
// call's effect is unknown.
var ErrAborted = errors.New("simulations: node crashed during the call")

// The embedding API (Change, Read, Find, Create) blocks until a document
// task has run, and the World runs those tasks itself. So each scripted
// call runs on a helper goroutine, and the two take turns: the World waits
// while the helper runs, and the helper parks inside the engine (its
// context's Done is called, after the event is queued) while the World
// steps. The World resumes a parked helper only when it knows the answer
// has been sent, and waits for it to park again or finish:
//
//   - Change and Read: when the task that ran the call's function returns
//     (the answer is sent in the same task), or when the node has no task
//     left (every queued event has been processed);
//   - Find of a document the node holds: when the node has no task left;
//   - Find that waits for the network: when the document has arrived and
//     the node has no task left, when the node has no dialled connection
//     left, or when the whole World is quiet (see answered).
//
// No two goroutines ever run at once, and which one runs is decided only
// by the seed.

type callKind string

const (
	kindChange  callKind = "Change"
	kindRead    callKind = "Read"
	kindFind    callKind = "Find"
	kindFindNet callKind = "Find(network)"
)

type callSignal int

const (
	sigParked callSignal = iota
	sigDone
)

// call is one helper goroutine running a script against one node.
type call struct {
	w      *World
	n      *Node
	gen    int
	name   string
	sig    chan callSignal
	resume chan struct{}
	abort  chan struct{}
	onDone func(c *call, err error)
	recs   []*changeRec // the ledger entries of changes, in order

	// Written by the helper before it signals, read by the World after.
	kind        callKind
	doc         string
	waitNetwork bool // Find of a missing document waits for the network
	changes     []changeRec
	err         error
	panicked    string

	parked   bool // helper-owned: the current engine call parked
	fnRan    bool // set on the World's goroutine by wrapped functions
	aborted  bool // set by the World before abort is closed
	inflight bool // World-owned: parked and not resumed yet
	// diskError: a write of the node failed while the call was parked (a
	// Find may then stay unanswered until another event for its document).
	diskError bool
	collected int
}

// Handle is what a script running on a node sees: the node's engine
// through the simulator (records.Docs) and the records model over it.
type Handle struct {
	c *call
	// Docs is the node's engine. Find of a document the node does not
	// hold asks the relay and returns engine.ErrUnavailable at once,
	// unless WaitNetwork is set: see the package comment.
	Docs records.Docs
	// Records is the records model over Docs, on the node's clock.
	Records *records.Store
}

// Node is the node the script runs on.
func (h *Handle) Node() *Node { return h.c.n }

// callCtx is the context every engine call of a helper gets. Done is
// called by the engine once its event is queued: that is the helper
// parking.
type callCtx struct{ c *call }

func (x callCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (x callCtx) Done() <-chan struct{} {
	x.c.parked = true
	x.c.sig <- sigParked
	return x.c.abort
}

func (x callCtx) Err() error {
	if x.c.aborted {
		return ErrAborted
	}
	return nil
}

func (x callCtx) Value(any) any { return nil }

func (c *call) begin(kind callKind, doc string) {
	c.kind, c.doc, c.fnRan = kind, doc, false
}

// end waits, after a parked engine call returned, until the World resumes
// the helper; a helper whose node crashed exits here.
func (c *call) end() {
	if c.parked {
		<-c.resume
		c.parked = false
	}
	if c.aborted {
		runtime.Goexit()
	}
}

func (c *call) wrapChange(fn func(*crdt.Tx) error) func(*crdt.Tx) error {
	return func(tx *crdt.Tx) error {
		c.fnRan = true
		return fn(tx)
	}
}

// callDocs is records.Docs over one node's engine, for one helper.
type callDocs struct {
	c   *call
	eng *engine.Engine
}

var _ records.Docs = callDocs{}

func (d callDocs) Create(_ context.Context, init func(*crdt.Tx) error) (string, error) {
	c := d.c
	c.begin(kindChange, "")
	id, err := d.eng.Create(callCtx{c}, c.wrapChange(init))
	c.end()
	if err == nil {
		c.changes = append(c.changes, changeRec{doc: id, heads: c.n.heads[id]})
	}
	return id, err
}

func (d callDocs) Change(_ context.Context, id string, fn func(*crdt.Tx) error) (crdt.Heads, error) {
	c := d.c
	c.begin(kindChange, id)
	h, err := d.eng.Change(callCtx{c}, id, c.wrapChange(fn))
	c.end()
	if err == nil {
		c.changes = append(c.changes, changeRec{doc: id, heads: h})
	}
	return h, err
}

func (d callDocs) Read(_ context.Context, id string, fn func(*crdt.Doc) error) error {
	c := d.c
	c.begin(kindRead, id)
	err := d.eng.Read(callCtx{c}, id, func(doc *crdt.Doc) error {
		c.fnRan = true
		return fn(doc)
	})
	c.end()
	return err
}

func (d callDocs) Find(_ context.Context, id string) error {
	c := d.c
	kind := kindFind
	if !c.n.local[id] {
		if !c.waitNetwork {
			return ask(d.eng, id)
		}
		kind = kindFindNet
	}
	c.begin(kind, id)
	err := d.eng.Find(callCtx{c}, id)
	c.end()
	return err
}

func (d callDocs) Subscribe(fn func(string, crdt.Heads, bool)) func() { return d.eng.Subscribe(fn) }

// ask starts a Find without waiting for it: the engine asks the dialled
// relays for the document, which arrives (or not) later. The context is
// already cancelled and the engine's task has not run, so Find returns
// the context's error at once, deterministically.
func ask(eng *engine.Engine, id string) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := eng.Find(ctx, id)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: not here; asked the relay (the simulator does not wait)", engine.ErrUnavailable)
	}
	return err
}

// Ask makes node name request document id from its relays without
// waiting.
func (w *World) Ask(name, id string) {
	n := w.mustNode(name)
	if n.up && !n.local[id] {
		w.asked[nodeDoc{n.Name, id}] = w.steps
		w.tr.logf("%s asks for %s", n.Name, short(id))
		w.protect(n, "Find", func() { _ = ask(n.eng, id) })
	}
}

func (w *World) startCall(n *Node, label string, waitNetwork bool, fn func(ctx context.Context, h *Handle) error, onDone func(*call, error)) *call {
	if !n.up {
		if onDone != nil {
			onDone(nil, ErrAborted)
		}
		return nil
	}
	c := &call{
		w: w, n: n, gen: n.gen, name: label, onDone: onDone, waitNetwork: waitNetwork,
		sig: make(chan callSignal), resume: make(chan struct{}), abort: make(chan struct{}),
	}
	docs := callDocs{c: c, eng: n.eng}
	h := &Handle{c: c, Docs: docs, Records: records.New(docs, records.WithClock(n.Now))}
	n.calls = append(n.calls, c)
	w.tr.logf("%s call %s", n.Name, label)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				c.panicked = fmt.Sprintf("%v\n%s", r, debug.Stack())
			}
			c.sig <- sigDone
		}()
		c.err = fn(callCtx{c}, h)
	}()
	w.await(c)
	return c
}

// await waits for the helper to park in the engine or finish.
func (w *World) await(c *call) {
	t := time.NewTimer(w.cfg.Watchdog)
	defer t.Stop()
	select {
	case s := <-c.sig:
		w.collect(c)
		if s == sigParked {
			c.inflight = true
			return
		}
		w.finishCall(c)
	case <-t.C:
		w.dropCall(c)
		w.fail(fmt.Errorf("%w: %s on %s did not return from %s(%s) within %v", ErrStuck, c.name, c.n.Name, c.kind, short(c.doc), w.cfg.Watchdog))
	}
}

// resumeCall lets a parked helper continue; its engine call has been
// answered.
func (w *World) resumeCall(c *call) {
	c.inflight = false
	t := time.NewTimer(w.cfg.Watchdog)
	defer t.Stop()
	select {
	case c.resume <- struct{}{}:
	case <-t.C:
		w.dropCall(c)
		w.fail(fmt.Errorf("%w: %s on %s: %s(%s) was answered but did not return within %v", ErrStuck, c.name, c.n.Name, c.kind, short(c.doc), w.cfg.Watchdog))
		return
	}
	w.await(c)
}

func (w *World) dropCall(c *call) {
	c.n.calls = slices.DeleteFunc(c.n.calls, func(x *call) bool { return x == c })
}

func (w *World) finishCall(c *call) {
	w.dropCall(c)
	if c.panicked != "" {
		w.fail(fmt.Errorf("%w: in %s on %s: %s", ErrPanic, c.name, c.n.Name, c.panicked))
		return
	}
	err := c.err
	if c.aborted {
		err = ErrAborted
	}
	w.tr.logf("%s call %s done: %v", c.n.Name, c.name, errString(err))
	if c.onDone != nil {
		c.onDone(c, err)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// abortCall ends a helper whose node crashed.
func (w *World) abortCall(c *call) {
	c.aborted = true
	close(c.abort)
	if c.inflight {
		w.resumeCall(c)
	}
}

// collect takes the changes a helper reported since it last signalled:
// each must already be on the node's disk.
func (w *World) collect(c *call) {
	for _, ch := range c.changes[c.collected:] {
		w.stats.Changes++
		w.tr.logf("%s change %s heads=%s", c.n.Name, short(ch.doc), headsString(ch.heads))
		w.checkOnDisk(c.n, ch.doc, ch.heads, "a Change that returned")
		c.recs = append(c.recs, w.ledger.addChange(c.n, ch))
	}
	c.collected = len(c.changes)
}

// answered reports whether the engine has certainly answered parked call
// c of node n, given that n's task queue is empty when quiet is set.
func answered(n *Node, c *call, quiet bool) bool {
	switch {
	case c.fnRan:
		return true // Change and Read answer in the task that ran fn
	case !quiet:
		return false
	case c.kind == kindChange || c.kind == kindRead:
		return true // every queued event has been processed
	case !n.eng.Online():
		return true // Find with no dialled remote: settled when the last one left
	case c.kind == kindFind:
		return !c.diskError // the document is here: answered by its first step
	default:
		// Find(network): answered in the step that brought the document.
		return n.local[c.doc] && !c.diskError
	}
}

// wakeCalls resumes the parked helpers of n whose answer has been sent.
func (w *World) wakeCalls(n *Node) {
	quiet := len(n.tasks) == 0
	var ready []*call
	for _, c := range n.calls {
		if c.inflight && answered(n, c, quiet) {
			ready = append(ready, c)
		}
	}
	for _, c := range ready {
		if c.inflight && c.gen == n.gen {
			w.resumeCall(c)
		}
	}
}

// resumeNetworkCalls resumes every parked helper once the World is quiet:
// every answer that will ever come has come.
func (w *World) resumeNetworkCalls() bool {
	var ready []*call
	for _, n := range w.nodes {
		for _, c := range n.calls {
			if c.inflight {
				ready = append(ready, c)
			}
		}
	}
	for _, c := range ready {
		if c.inflight {
			w.resumeCall(c)
		}
	}
	return len(ready) > 0
}

// Do runs fn on node name and steps the World until it returns (at most
// maxDoSteps steps).
func (w *World) Do(name string, fn func(ctx context.Context, h *Handle) error) error {
	return w.do(w.mustNode(name), "do", false, fn)
}

// DoWait is Do with Find of a missing document waiting for the network.
func (w *World) DoWait(name string, fn func(ctx context.Context, h *Handle) error) error {
	return w.do(w.mustNode(name), "do", true, fn)
}

const maxDoSteps = 1_000_000

func (w *World) do(n *Node, label string, waitNetwork bool, fn func(ctx context.Context, h *Handle) error) error {
	var result error
	done := false
	w.startCall(n, label, waitNetwork, fn, func(_ *call, err error) { result, done = err, true })
	start := w.steps
	for !done && w.err == nil {
		if w.steps-start > maxDoSteps || !w.Step() {
			if !done && w.err == nil {
				w.fail(fmt.Errorf("%w: %s on %s did not return: %s", ErrStuck, label, n.Name, w.busy()))
			}
		}
	}
	if w.err != nil {
		return w.err
	}
	return result
}

func headsString(h crdt.Heads) string {
	s := make([]string, len(h))
	for i, x := range h {
		s[i] = x.String()[:8]
	}
	return fmt.Sprint(s)
}
