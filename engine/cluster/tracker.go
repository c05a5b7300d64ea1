package cluster

import (
	"context"
	"sync"
)

// tracker follows the feed: messages are delivered in stream order but
// applied concurrently (each on its document's task), so the position that
// may be persisted is the sequence up to which every delivered message is
// applied. It also decides readiness: the stream as it was at Start is
// applied.
type tracker struct {
	mu          sync.Mutex
	order       []uint64 // delivered and not yet all applied, in delivery order
	done        map[uint64]bool
	applied     uint64 // every delivered message up to here is applied
	last        uint64 // last delivered sequence
	lastPending uint64 // NumPending when the last message was delivered
	target      uint64 // the stream's last sequence at Start
	started     bool   // the seed (if any) is done: readiness may be reported
	saved       uint64 // position last written to the store
	ready       chan struct{}
	readyDone   bool
	moved       chan struct{} // closed and replaced when applied advances
}

func newTracker(applied, target uint64) *tracker {
	return &tracker{applied: applied, last: applied, saved: applied, target: target, done: map[uint64]bool{}, ready: make(chan struct{}), moved: make(chan struct{}), lastPending: 1}
}

// startDone lets readiness be reported (the seed has been published).
func (t *tracker) startDone() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	t.checkReady()
}

func (t *tracker) deliver(seq, numPending uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.order = append(t.order, seq)
	t.last = seq
	t.lastPending = numPending
}

func (t *tracker) complete(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done[seq] = true
	i := 0
	for i < len(t.order) && t.done[t.order[i]] {
		delete(t.done, t.order[i])
		t.applied = t.order[i]
		i++
	}
	if i > 0 {
		t.order = t.order[i:]
		if len(t.order) == 0 {
			t.order = nil // let the backing array go
		}
		close(t.moved)
		t.moved = make(chan struct{})
	}
	t.checkReady()
}

func (t *tracker) checkReady() {
	if t.readyDone || !t.started {
		return
	}
	// Applied through the last sequence at Start; or everything delivered
	// is applied and the server said nothing more was pending (the tail
	// was removed from the stream meanwhile).
	if t.applied >= t.target || (len(t.order) == 0 && t.last > 0 && t.lastPending == 0) {
		t.readyDone = true
		close(t.ready)
	}
}

func (t *tracker) isReady() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readyDone
}

func (t *tracker) delivered() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

func (t *tracker) position() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applied
}

// toFlush returns the position and whether it moved since last written.
func (t *tracker) toFlush() (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applied, t.applied != t.saved
}

func (t *tracker) flushed(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq > t.saved {
		t.saved = seq
	}
}

// waitFor returns once every message up to seq is applied, or with ctx's
// error.
func (t *tracker) waitFor(ctx context.Context, seq uint64) error {
	for {
		t.mu.Lock()
		applied, moved := t.applied, t.moved
		t.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
