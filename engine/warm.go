package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// warmPool is the default Config.Go: it runs document tasks on goroutines
// that, when their task ends, wait for the next one instead of exiting.
//
// A document task is short (one batch of a document's events), and a new
// goroutine starts on a 2 KiB stack that every task then grows, by copying,
// to the depth of a step (the worker call, the store, amcheck's parser).
// In the benchmark set that copying was 12 % of the relay process's CPU.
// A goroutine kept from an earlier task already has the stack. At most
// maxIdle goroutines wait; beyond, a finished one exits, so a burst of
// thousands of documents leaves no thousands of goroutines behind.
type warmPool struct {
	tasks   chan func() // unbuffered: a send succeeds only to a waiting goroutine
	idle    atomic.Int32
	maxIdle int32
	quit    chan struct{}
	once    sync.Once
}

func newWarmPool() *warmPool {
	return &warmPool{
		tasks:   make(chan func()),
		maxIdle: int32(16 * runtime.GOMAXPROCS(0)),
		quit:    make(chan struct{}),
	}
}

// Go runs f on a waiting goroutine, or on a new one when none waits.
func (p *warmPool) Go(f func()) {
	select {
	case p.tasks <- f:
	default:
		go p.loop(f)
	}
}

func (p *warmPool) loop(f func()) {
	for {
		f()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		select {
		case f = <-p.tasks:
			p.idle.Add(-1)
		case <-p.quit:
			p.idle.Add(-1)
			return
		}
	}
}

// stop ends the waiting goroutines (a task already handed over runs to
// its end).
func (p *warmPool) stop() { p.once.Do(func() { close(p.quit) }) }
