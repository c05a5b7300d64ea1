package engine

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWarmPoolRunsEveryTaskAndKeepsFewGoroutines(t *testing.T) {
	p := newWarmPool()
	p.maxIdle = 4
	before := runtime.NumGoroutine()

	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := map[int]bool{}
	release := make(chan struct{})
	// A burst: 100 tasks that all block until released, so 100 goroutines.
	for i := range 100 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release
			mu.Lock()
			ran[i] = true
			mu.Unlock()
		})
	}
	close(release)
	wg.Wait()
	assert.Len(t, ran, 100)

	// Afterwards at most maxIdle goroutines wait.
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+4 })
	assert.LessOrEqual(t, p.idle.Load(), int32(4))

	// A waiting goroutine takes the next task.
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done

	p.stop()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not met in 10 s")
		runtime.Gosched()
	}
}
