package cluster

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/cluster/natstest"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/badgerstore"
)

// BenchmarkCatchUp measures a relay that starts with an empty Badger
// directory (fsync on) and replays a stream of one-change documents until
// it is ready. One op is one whole catch-up. Reports the documents applied
// per second, the goroutines the relay added, and the document actors and
// loaded replicas left once it is ready (both 0: nothing per document).
// Publishing runs before the timer, from 16 goroutines: publishes/s.
func BenchmarkCatchUp(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("docs=%d", n), func(b *testing.B) { benchCatchUp(b, n) })
	}
}

func benchCatchUp(b *testing.B, n int) {
	ns := natstest.Start(b)
	src, err := Open(context.Background(), Config{URL: ns.ClientURL(), Store: store.NewMemStore(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close(context.Background())
	start := time.Now()
	publishDocs(b, src, n)
	publishRate := float64(n) / time.Since(start).Seconds()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st, err := badgerstore.Open(badgerstore.Config{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		before := runtime.NumGoroutine()
		b.StartTimer()
		t0 := time.Now()
		cl, err := Open(context.Background(), Config{URL: ns.ClientURL(), Store: st, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		eng, err := engine.New(engine.Config{Store: st, Replicator: cl, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		if err := cl.Start(eng); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := cl.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		elapsed := time.Since(t0)
		b.StopTimer()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "docs/s")
		b.ReportMetric(float64(runtime.NumGoroutine()-before), "goroutines-added")
		s := eng.Stats()
		b.ReportMetric(float64(s.DocsActive), "actors-left")
		b.ReportMetric(float64(s.DocsLoaded), "loaded-left")
		eng.Close(context.Background())
		cl.Close(context.Background())
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(publishRate, "publishes/s")
}
