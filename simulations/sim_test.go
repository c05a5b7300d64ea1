package simulations_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/simulations"
)

// TestSeeds runs a range of seeds, each with its own fault profile, and
// fails with the replay command of every seed that breaks an invariant.
// go test ./simulations -run TestSeeds -sim.seeds=2000 -sim.start=5000
// runs another range.
func TestSeeds(t *testing.T) {
	n := *flagSeeds
	if n == 0 {
		n = 100
		if testing.Short() {
			n = 40
		}
	}
	results := runSeeds(*flagStart, n)
	sum := simulations.NewSummary()
	known := map[string]int{}
	for _, r := range results {
		sum.Add(r)
		if r.Err == nil {
			continue
		}
		if b, ok := simulations.Known(r.Err); ok {
			// Reported, not fixed yet: see known_bugs_test.go.
			known[b.Err.Error()]++
			continue
		}
		t.Errorf("seed %d: %v\nlast steps:\n    %s\nreplay: %s", r.Seed, r.Err, strings.Join(r.LastTrace, "\n    "), simulations.ReplayCommand(r.Seed))
	}
	for class, k := range known {
		t.Logf("%d seeds failed with a known engine bug: %s", k, class)
	}
	t.Log(sum.Line())
}

func runSeeds(first uint64, n int) []simulations.Result {
	results := make([]simulations.Result, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(runtime.GOMAXPROCS(0), 4)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = simulations.Run(simulations.Options{Seed: first + uint64(i)})
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// The same seed gives the same run, step for step: the trace is byte for
// byte the same, and so are its hash and every counter.
func TestSameSeedSameTrace(t *testing.T) {
	for _, seed := range []uint64{1, 7, 42} {
		var a, b bytes.Buffer
		ra := simulations.Run(simulations.Options{Seed: seed, Trace: &a})
		rb := simulations.Run(simulations.Options{Seed: seed, Trace: &b})
		require.Equal(t, a.String(), b.String(), "seed %d", seed)
		assert.Equal(t, ra.TraceHash, rb.TraceHash)
		assert.Equal(t, ra.Stats, rb.Stats)
		assert.Greater(t, ra.Stats.Steps, 100)
		assert.Equal(t, fmt.Sprint(ra.Err), fmt.Sprint(rb.Err))
	}
	r1 := simulations.Run(simulations.Options{Seed: 1})
	r2 := simulations.Run(simulations.Options{Seed: 2})
	assert.NotEqual(t, r1.TraceHash, r2.TraceHash, "different seeds, different runs")
}

// Every seed draws its own profile: across a range, each kind of fault is
// on in some seeds and off in others, at harshness from none to full.
func TestSwarmProfilesVary(t *testing.T) {
	kinds := map[string][2]int{}
	count := func(name string, on bool) {
		k := kinds[name]
		if on {
			k[0]++
		} else {
			k[1]++
		}
		kinds[name] = k
	}
	for seed := uint64(1); seed <= 200; seed++ {
		p := simulations.DrawParamsForSeed(seed)
		count("loss", p.Faults.Lose > 0)
		count("duplication", p.Faults.Duplicate > 0)
		count("reordering", p.Faults.Reorder > 0)
		count("crash before write", p.Faults.CrashBeforeWrite > 0)
		count("crash after write", p.Faults.CrashAfterWrite > 0)
		count("write error", p.Faults.WriteError > 0)
		count("cuts", p.CutEvery > 0)
		count("partitions", p.PartitionEvery > 0)
		count("client crashes", p.ClientCrashEvery > 0)
		count("relay crashes", p.RelayCrashEvery > 0)
		count("offline periods", p.OfflineEvery > 0)
		count("disk wipes", p.Wipe > 0)
		count("clock skew", p.Skew > 0)
		count("several relays", p.Relays > 1)
		count("evictions", p.MaxLoadedDocs > 0 || p.IdleTimeout > 0)
	}
	for name, k := range kinds {
		assert.Positive(t, k[0], "%s is never on", name)
		assert.Positive(t, k[1], "%s is always on", name)
	}
}

// BenchmarkSeed runs whole seeds and reports what one costs.
func BenchmarkSeed(b *testing.B) {
	var steps, frames, changes int
	for i := range b.N {
		r := simulations.Run(simulations.Options{Seed: uint64(i%50 + 1)})
		steps += r.Stats.Steps
		frames += r.Stats.Frames
		changes += r.Stats.Changes
	}
	b.ReportMetric(float64(steps)/float64(b.N), "steps/seed")
	b.ReportMetric(float64(frames)/float64(b.N), "frames/seed")
	b.ReportMetric(float64(changes)/float64(b.N), "changes/seed")
	b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "steps/s")
}

// Every fault at once, at full harshness, in every seed.
func TestHarshestProfile(t *testing.T) {
	n := 12
	if testing.Short() {
		n = 3
	}
	var crashes, faults int
	for seed := uint64(1); seed <= uint64(n); seed++ {
		p := simulations.DrawParamsForSeed(seed)
		p.Harshness = 1
		p.Relays = 3
		p.AdvanceP = 0.3
		p.Faults = simulations.Faults{Lose: 0.03, Duplicate: 0.02, Reorder: 0.02, CrashBeforeWrite: 0.02, CrashAfterWrite: 0.02, WriteError: 0.02}
		p.CutEvery, p.PartitionEvery, p.ClientCrashEvery, p.RelayCrashEvery, p.OfflineEvery = 2*time.Second, 4*time.Second, 4*time.Second, 8*time.Second, 4*time.Second
		p.Wipe, p.SwitchRelay, p.Skew, p.MaxLoadedDocs, p.IdleTimeout = 0.3, 0.3, 10*time.Minute, 2, time.Second
		r := simulations.Run(simulations.Options{Seed: seed, Params: &p})
		require.NoError(t, r.Err, "seed %d with the harshest profile\nlast steps:\n    %s", seed, strings.Join(r.LastTrace, "\n    "))
		crashes += r.Stats.Crashes
		faults += r.Stats.FrameFaults + r.Stats.DiskFaults
	}
	assert.Positive(t, crashes)
	assert.Positive(t, faults)
}

// A run that stops at a loss seen during the run counts as a loss in the
// summary line, even though the final ledger check never ran.
func TestSummaryCountsALossSeenDuringTheRun(t *testing.T) {
	s := simulations.NewSummary()
	s.Add(simulations.Result{Seed: 1, Err: fmt.Errorf("%w: after an acknowledgement", simulations.ErrLost)})
	s.Add(simulations.Result{Seed: 2, Lost: 3, Err: fmt.Errorf("%w: gone", simulations.ErrLost)})
	s.Add(simulations.Result{Seed: 3, Converged: true})
	assert.Equal(t, "seeds=3 failed=2 converged=1 lost=4 max_steps_to_converge=0", s.Line())
}
