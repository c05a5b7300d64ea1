package simulations

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/wire"
)

// errConnClosed is what Send returns on an end whose session has ended.
var errConnClosed = errors.New("simulations: connection closed")

// conn is one transport connection (a WebSocket over TCP): two ends, each
// with the queue of frames it sent that the other has not received yet.
// Within a connection frames arrive in order or not at all, as TCP
// delivers them; every fault that breaks that order also breaks the
// connection, which is then cut.
type conn struct {
	id   int
	a, b *endpoint // a: the dialler's end (engine.Connect), b: the acceptor's (engine.Open)
	cut  bool
	// faulty: the frame faults of the World's profile apply.
	faulty bool
}

// dead reports whether nothing more can happen on the connection.
func (c *conn) dead() bool {
	return (c.cut || (c.a.closed && c.b.closed)) && len(c.a.q) == 0 && len(c.b.q) == 0
}

// endpoint is one end of a conn: the engine.Conn its session sends on.
type endpoint struct {
	c    *conn
	n    *Node
	gen  int
	sess *engine.Session
	peer *endpoint
	name string // "c1>r1": frames from c1 to r1

	q      []frame
	lastAt time.Time
	// broken: a frame was lost on this direction; later ones are dropped
	// until the connection is cut.
	broken bool
	// cutWhenDrained: cut the connection once q is delivered (after a
	// duplicated or reordered frame).
	cutWhenDrained bool
	closing        bool // the engine closed this end: flush q, then the peer notices
	closed         bool // this end's session has ended
	stopped        bool // HandleFrame failed: this end reads no more
	noticing       bool // a notice of the cut is scheduled
}

type frame struct {
	data []byte
	at   time.Time
}

var _ engine.Conn = (*endpoint)(nil)

func (e *endpoint) alive() bool { return e.n.up && e.n.gen == e.gen }

// Send implements engine.Conn. It never blocks: the frame is queued on the
// link with its delivery time, or lost to a fault.
func (e *endpoint) Send(data []byte) error {
	w := e.n.w
	if e.closed || e.closing {
		return errConnClosed
	}
	w.stats.Frames++
	w.stats.Bytes += len(data)
	if m, err := wire.Decode(data); err == nil && m.DocumentID != "" {
		w.sent[nodeDoc{e.n.Name, m.DocumentID}] = w.steps
		if m.Type == wire.TypeSync || m.Type == wire.TypeRequest {
			w.checkSentDurable(e.n, m.DocumentID, m.Data)
		}
	}
	c := e.c
	if c.cut || e.broken {
		w.stats.Dropped++
		w.tr.logf("%s send %s: lost (dead path)", e.name, describe(data))
		return nil
	}
	f := frame{data: data, at: w.now.Add(w.latency())}
	if f.at.Before(e.lastAt) {
		f.at = e.lastAt
	}
	if c.faulty && w.faults != nil {
		switch w.faults.frame() {
		case frameLose:
			w.stats.FrameFaults++
			w.stats.Dropped++
			e.broken = true
			d := w.between(0, w.cfg.Keepalive/4)
			w.tr.logf("%s send %s: LOST, connection cut in %v", e.name, describe(data), d)
			w.after(d, "cut "+e.name+" after loss", func() { w.cutConn(c, "loss") })
			return nil
		case frameDuplicate:
			w.stats.FrameFaults++
			w.tr.logf("%s send %s: DUPLICATED, connection cut after delivery", e.name, describe(data))
			e.q = append(e.q, f, f)
			e.lastAt = f.at
			e.broken, e.cutWhenDrained = true, true
			return nil
		case frameReorder:
			if len(e.q) > 0 {
				w.stats.FrameFaults++
				w.tr.logf("%s send %s: REORDERED before the previous frame, connection cut after delivery", e.name, describe(data))
				last := e.q[len(e.q)-1]
				f.at = last.at
				e.q = append(e.q[:len(e.q)-1], f, last)
				e.broken, e.cutWhenDrained = true, true
				return nil
			}
		}
	}
	e.q = append(e.q, f)
	e.lastAt = f.at
	w.tr.logf("%s send %s", e.name, describe(data))
	return nil
}

// Close implements engine.Conn: the engine ends this end (and calls
// Session.Closed itself). Queued frames are still delivered, as a
// WebSocket close frame follows the data; then the peer notices.
func (e *endpoint) Close(code int, reason string) {
	w := e.n.w
	if e.closing || e.closed {
		return
	}
	w.tr.logf("%s close %d %q", e.name, code, reason)
	e.closing, e.closed = true, true
	w.endClosed(e)
	if len(e.q) == 0 || e.c.cut {
		w.noticeLater(e.peer, w.latency())
	}
}

// checkSentDurable fails the run unless n's disk holds every head the sync
// message data announces.
func (w *World) checkSentDurable(n *Node, id string, data []byte) {
	heads, ok := crdt.SyncMessageHeads(data)
	if !ok || len(heads) == 0 {
		return
	}
	k := diskDoc{n.disk, id}
	known := w.durable[k]
	missing := false
	for _, h := range heads {
		if !known[h] {
			missing = true
		}
	}
	if !missing {
		return
	}
	d, err := loadDoc(n.disk, id)
	if err != nil {
		w.fail(fmt.Errorf("%w: %s: load %s: %v", ErrInvariant, n.Name, short(id), err))
		return
	}
	if known == nil {
		known = map[crdt.Hash]bool{}
		w.durable[k] = known
	}
	for _, h := range heads {
		if !d.HasChange(h) {
			w.fail(fmt.Errorf("%w: %s sent heads of %s including %s, which its disk lacks", ErrNotDurable, n.Name, short(id), h.String()[:8]))
			return
		}
		known[h] = true
	}
}

// describe summarises a frame for the trace.
func describe(data []byte) string {
	m, err := wire.Decode(data)
	if err != nil {
		return fmt.Sprintf("undecodable(%dB)", len(data))
	}
	if m.DocumentID != "" {
		return fmt.Sprintf("%s doc=%s %dB", m.Type, short(m.DocumentID), len(data))
	}
	return fmt.Sprintf("%s %dB", m.Type, len(data))
}

func (w *World) latency() time.Duration {
	return w.between(w.cfg.LatencyMin, w.cfg.LatencyMax)
}

// between draws a duration in [lo, hi].
func (w *World) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)+1))
}

func (w *World) deliverable(e *endpoint) bool {
	return len(e.q) > 0 && !e.c.cut && !e.q[0].at.After(w.now) && !w.isBlocked(e.n, e.peer.n)
}

// deliver hands the next frame of e to the peer's session.
func (w *World) deliver(e *endpoint) {
	f := e.q[0]
	e.q = slices.Delete(e.q, 0, 1)
	p := e.peer
	switch {
	case p.closed || p.stopped || !p.alive():
		w.stats.Dropped++
		w.tr.logf("%s deliver %s: dropped (receiver gone)", e.name, describe(f.data))
	default:
		w.stats.Delivered++
		w.tr.logf("%s deliver %s", e.name, describe(f.data))
		if m, err := wire.Decode(f.data); err == nil && m.DocumentID != "" {
			w.received[nodeDoc{p.n.Name, m.DocumentID}] = w.steps
		}
		var err error
		if w.protect(p.n, "HandleFrame", func() { err = p.sess.HandleFrame(f.data) }) && err != nil {
			p.stopped = true
			w.tr.logf("%s stops reading: %v", p.name, err)
		}
	}
	if len(e.q) == 0 {
		if e.closing {
			w.noticeLater(p, w.latency())
		}
		if e.cutWhenDrained {
			w.cutConn(e.c, "after a duplicated or reordered frame")
		}
	}
}

// cutConn breaks a connection: frames in flight are lost, and each end
// notices on its own within the keepalive (until then it is half-open).
func (w *World) cutConn(c *conn, why string) {
	if c.cut {
		return
	}
	c.cut = true
	w.stats.Cuts++
	lost := len(c.a.q) + len(c.b.q)
	w.stats.Dropped += lost
	c.a.q, c.b.q = nil, nil
	w.tr.logf("%s cut (%s): %d frames in flight lost", c.a.name, why, lost)
	for _, e := range []*endpoint{c.a, c.b} {
		if !e.alive() {
			e.closed = true
			continue
		}
		w.noticeLater(e, w.between(0, w.cfg.Keepalive))
	}
}

// noticeLater makes e's node notice after d that the connection is gone.
func (w *World) noticeLater(e *endpoint, d time.Duration) {
	if e.closed || e.noticing {
		return
	}
	e.noticing = true
	w.after(d, "notice "+e.peer.name+" gone at "+e.n.Name, func() { w.notice(e) })
}

// notice ends e's session: the transport saw the connection close.
func (w *World) notice(e *endpoint) {
	if e.closed || !e.alive() {
		e.closed = true
		return
	}
	e.closed = true
	w.tr.logf("%s notices the connection is gone", e.n.Name)
	n := e.n
	w.protect(n, "Session.Closed", func() { e.sess.Closed() })
	w.endClosed(e)
}

// endClosed schedules a redial when a dialler's connection ended.
func (w *World) endClosed(e *endpoint) {
	if n := e.n; n.out == e {
		n.out = nil
		w.scheduleDial(n)
	}
}

// Connect makes node name dial relay: now, and again after every
// disconnection (with backoff) until Disconnect.
func (w *World) Connect(name, relay string) {
	n, r := w.mustNode(name), w.mustNode(relay)
	n.home = r
	n.wantOnline = true
	n.attempt = 0
	w.scheduleDialIn(n, 0)
}

// Disconnect takes node name offline: its connection is cut and it does
// not dial again until Connect.
func (w *World) Disconnect(name string) {
	n := w.mustNode(name)
	n.wantOnline = false
	n.redial.cancel()
	n.redial = nil
	if n.out != nil {
		w.cutConn(n.out.c, n.Name+" goes offline")
	}
}

func (w *World) scheduleDial(n *Node) {
	d := min(10*time.Second, (200*time.Millisecond)<<min(n.attempt, 6))
	w.scheduleDialIn(n, w.between(d/2, d))
}

func (w *World) scheduleDialIn(n *Node, d time.Duration) {
	if !n.up || !n.wantOnline || n.home == nil || n.out != nil || (n.redial != nil && !n.redial.dead) {
		return
	}
	n.redial = w.after(d, "dial from "+n.Name, func() {
		n.redial = nil
		w.dial(n)
	})
}

// dial opens a connection from n to its relay: the relay's engine Opens
// its end, n's engine Connects (and sends join).
func (w *World) dial(n *Node) {
	if !n.up || !n.wantOnline || n.out != nil {
		return
	}
	target := n.home
	if n.pick != nil {
		target = n.pick()
	}
	if !target.up || w.isBlocked(n, target) || w.isBlocked(target, n) {
		n.attempt++
		w.tr.logf("%s dial %s: fails", n.Name, target.Name)
		w.scheduleDial(n)
		return
	}
	n.attempt = 0
	w.stats.Dials++
	w.nextCID++
	c := &conn{id: w.nextCID, faulty: true}
	c.a = &endpoint{c: c, n: n, gen: n.gen, name: n.Name + ">" + target.Name}
	c.b = &endpoint{c: c, n: target, gen: target.gen, name: target.Name + ">" + n.Name}
	c.a.peer, c.b.peer = c.b, c.a
	w.conns = append(w.conns, c)
	n.out = c.a
	w.tr.logf("%s dial %s: connection %d", n.Name, target.Name, c.id)
	if !w.protect(target, "Open", func() { c.b.sess = target.eng.Open(c.b) }) {
		return
	}
	w.protect(n, "Connect", func() { c.a.sess = n.eng.Connect(c.a) })
}

// Cut breaks node name's dialled connection now (it redials).
func (w *World) Cut(name string) {
	if n := w.mustNode(name); n.out != nil {
		w.cutConn(n.out.c, "scripted")
	}
}

func (w *World) isBlocked(from, to *Node) bool {
	return len(w.blocked) > 0 && w.blocked[[2]int{from.index, to.index}] > 0
}

// Block stops frames from node from to node to (a one-way partition).
// Frames wait on the link; a connection that stays blocked longer than
// the keepalive is cut.
func (w *World) Block(from, to string) {
	a, b := w.mustNode(from), w.mustNode(to)
	w.blocked[[2]int{a.index, b.index}]++
	w.tr.logf("partition %s -> %s", a.Name, b.Name)
	for _, c := range w.conns {
		if (c.a.n == a && c.b.n == b) || (c.a.n == b && c.b.n == a) {
			w.watchBlocked(c)
		}
	}
}

// Unblock undoes one Block.
func (w *World) Unblock(from, to string) {
	a, b := w.mustNode(from), w.mustNode(to)
	k := [2]int{a.index, b.index}
	if w.blocked[k] > 0 {
		w.blocked[k]--
		if w.blocked[k] == 0 {
			delete(w.blocked, k)
			w.tr.logf("partition %s -> %s healed", a.Name, b.Name)
		}
	}
}

// Partition splits the nodes into groups that cannot reach each other
// (symmetric). Nodes not named keep every link.
func (w *World) Partition(groups ...[]string) {
	w.stats.Partitions++
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					w.Block(a, b)
				}
			}
		}
	}
}

// Heal removes every partition; blocked frames flow again.
func (w *World) Heal() {
	if len(w.blocked) > 0 {
		w.tr.logf("partitions healed")
	}
	clear(w.blocked)
}

// watchBlocked cuts c if it is still blocked after the keepalive: the
// ends stop hearing each other's pings.
func (w *World) watchBlocked(c *conn) {
	d := w.between(w.cfg.Keepalive/2, w.cfg.Keepalive)
	w.after(d, fmt.Sprintf("keepalive of connection %d", c.id), func() {
		if !c.cut && (w.isBlocked(c.a.n, c.b.n) || w.isBlocked(c.b.n, c.a.n)) {
			w.cutConn(c, "keepalive timeout across a partition")
		}
	})
}
