package wsrelay

import (
	"slices"
	"sync"
	"sync/atomic"
)

// budget bounds the bytes that connections have read and the engine has
// not processed yet (Config.MaxInflightBytes and
// MaxInflightBytesPerConnection). A read pump asks before it reads a frame
// (inflight.wait) and counts the frame once read (inflight.take); the
// engine releases it when its document has processed it
// (engine.Session.HandleFrameThen). While its budget is spent a
// connection is not read: its peer's writes block on TCP backpressure.
//
// The frame's size is known only once it has been read, so the bounds are
// checked before reading: a connection reads while it holds less than its
// budget, and may go one frame over.
//
// Fairness: a connection that holds nothing in flight may always read one
// frame, even when the global budget is spent. So no client, and no set of
// clients, can keep another from being served: one whose pipeline filled
// the global budget only slows the others to one frame at a time each. The
// price is that the global bound is soft: MaxInflightBytes, plus one frame
// (up to MaxFrameBytes) for each connection reading past it.
type budget struct {
	perConn, total int64
	m              *metrics // nil: no metrics

	mu      sync.Mutex
	used    int64
	waiting []*inflight // paused until the global budget has room
}

func newBudget(perConn, total int64, m *metrics) *budget {
	return &budget{perConn: perConn, total: total, m: m}
}

// inflight is one connection's share of its server's budget.
type inflight struct {
	b      *budget
	held   int64         // guarded by b.mu
	queued bool          // in b.waiting; guarded by b.mu
	wake   chan struct{} // one slot: something was released
}

func (b *budget) open() *inflight {
	return &inflight{b: b, wake: make(chan struct{}, 1)}
}

// admit reports whether the connection may read its next frame. b.mu is
// held.
func (f *inflight) admit() bool {
	b := f.b
	return f.held == 0 || (f.held < b.perConn && b.used < b.total)
}

// wait returns once the connection may read its next frame: paused tells
// that it had to wait. ok is false when quit was closed first.
func (f *inflight) wait(quit <-chan struct{}) (paused, ok bool) {
	b := f.b
	for {
		b.mu.Lock()
		if f.admit() {
			b.mu.Unlock()
			return paused, true
		}
		if f.held < b.perConn && !f.queued {
			// Only the global budget stands in the way: be woken when
			// any connection releases bytes.
			f.queued = true
			b.waiting = append(b.waiting, f)
		}
		b.mu.Unlock()
		if !paused {
			paused = true
			b.m.count(func(m *metrics) { m.readPauses.Inc() })
		}
		select {
		case <-f.wake:
		case <-quit:
			b.mu.Lock()
			if f.queued {
				f.queued = false
				b.waiting = slices.DeleteFunc(b.waiting, func(x *inflight) bool { return x == f })
			}
			b.mu.Unlock()
			return paused, false
		}
	}
}

// take counts a frame of n bytes that was read; the returned function
// releases it (the engine calls it once, when it is done with the frame;
// later calls do nothing).
func (f *inflight) take(n int64) (release func()) {
	b := f.b
	b.mu.Lock()
	f.held += n
	b.used += n
	b.mu.Unlock()
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			f.release(n)
		}
	}
}

func (f *inflight) release(n int64) {
	b := f.b
	b.mu.Lock()
	f.held -= n
	b.used -= n
	var wake []*inflight
	if b.used < b.total && len(b.waiting) > 0 {
		wake = b.waiting
		b.waiting = nil
		for _, w := range wake {
			w.queued = false
		}
	}
	b.mu.Unlock()
	signal(f.wake)
	for _, w := range wake {
		signal(w.wake)
	}
}

// inFlight is what the connection has in flight.
func (f *inflight) inFlight() int64 {
	f.b.mu.Lock()
	defer f.b.mu.Unlock()
	return f.held
}

// inFlight is what all connections have in flight.
func (b *budget) inFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// signal fills a one-slot channel unless it is full.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
