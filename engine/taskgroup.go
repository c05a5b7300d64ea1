package engine

import (
	"context"
	"sync"
)

// taskGroup counts running document tasks. Unlike sync.WaitGroup, a task
// may start while Close waits (a records hook or a late frame enqueues
// after Close began): Wait returns when the count is zero at some moment,
// and a later Add starts a new count.
type taskGroup struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to zero; nil while n == 0
}

// Add counts n more tasks.
func (g *taskGroup) Add(n int) {
	g.mu.Lock()
	if g.n == 0 {
		g.zero = make(chan struct{})
	}
	g.n += n
	g.mu.Unlock()
}

// Done counts one task finished.
func (g *taskGroup) Done() {
	g.mu.Lock()
	g.n--
	if g.n == 0 {
		close(g.zero)
		g.zero = nil
	}
	g.mu.Unlock()
}

// Wait returns once no task is running, or with ctx's error.
func (g *taskGroup) Wait(ctx context.Context) error {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	zero := g.zero
	g.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
