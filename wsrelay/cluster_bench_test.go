package wsrelay_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/cluster/natstest"
	"github.com/amsync/amsync/peer"
)

// BenchmarkCluster measures two relays sharing documents through an
// embedded NATS JetStream server (one process, loopback, Badger on disk
// with fsync, automerge in process; the NATS server, both relays and the
// Go clients share the machine's cores).
//
//   - latency: one writer on relay 1, one reader on relay 2, one document.
//     One op is one change, from the writer's Change call until the
//     reader's store holds it: writer → relay 1 (publish, PubAck, fsync)
//     → JetStream → relay 2's feed (apply, fsync) → reader. Reports p50
//     and p99 in ms.
//   - throughput/writers=N: N writers on relay 1, one document each, each
//     writing changes back to back (a client sends what accumulated while
//     its previous message was in flight, so one publish carries several
//     changes). Reports the changes relay 1 acknowledged per second (each
//     one in JetStream and on its disk), the publishes per second, and
//     the changes per second relay 2 applied from the feed.
//   - throughput/writers=N/ack-each: the same, each writer waiting for the
//     acknowledgement of every change before the next: one publish per
//     change.
func BenchmarkCluster(b *testing.B) {
	b.Run("latency", benchClusterLatency)
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("throughput/writers=%d", n), func(b *testing.B) { benchClusterThroughput(b, n, false) })
	}
	b.Run("throughput/writers=16/ack-each", func(b *testing.B) { benchClusterThroughput(b, 16, true) })
}

func benchClusterLatency(b *testing.B) {
	ns := natstest.Start(b)
	r1 := startClusterRelay(b, ns.ClientURL(), b.TempDir(), "r1")
	r2 := startClusterRelay(b, ns.ClientURL(), b.TempDir(), "r2")
	writer, reader := openPeer(b, r1.url), openPeer(b, r2.url)
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	doc, err := writer.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"n"}, int64(-1)) })
	if err != nil {
		b.Fatal(err)
	}
	if err := writer.WaitSynced(ctx); err != nil {
		b.Fatal(err)
	}
	if err := reader.Find(ctx, doc); err != nil {
		b.Fatal(err)
	}
	arrived := make(chan crdt.Heads, 64)
	cancelSub := reader.Subscribe(func(c peer.Change) {
		if c.DocID == doc && !c.Local {
			arrived <- c.Heads
		}
	})
	defer cancelSub()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		heads, err := writer.Change(ctx, doc, func(tx *crdt.Tx) error { return tx.Set([]any{"n"}, int64(i)) })
		if err != nil {
			b.Fatal(err)
		}
		for got := false; !got; {
			select {
			case h := <-arrived:
				got = h.Equal(heads)
			case <-ctx.Done():
				b.Fatal("change did not reach the other relay's client")
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
	_ = r2
}

func benchClusterThroughput(b *testing.B, writers int, ackEach bool) {
	ns := natstest.Start(b)
	r1 := startClusterRelay(b, ns.ClientURL(), b.TempDir(), "r1")
	r2 := startClusterRelay(b, ns.ClientURL(), b.TempDir(), "r2")
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	ps := make([]*peer.Peer, writers)
	docs := make([]string, writers)
	for i := range ps {
		ps[i] = openPeer(b, r1.url)
		d, err := ps[i].Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"n"}, int64(0)) })
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = d
		if err := ps[i].WaitSynced(ctx); err != nil {
			b.Fatal(err)
		}
	}
	per := max(1, b.N/writers)
	published0, applied0 := r1.r.Cluster.Stats().Published, r2.r.Cluster.Stats().Applied
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				if _, err := p.Change(ctx, docs[i], func(tx *crdt.Tx) error { return tx.Set([]any{"n"}, int64(j)) }); err != nil {
					errs <- err
					return
				}
				if ackEach {
					if err := p.WaitSynced(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := p.WaitSynced(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	acked := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	published := r1.r.Cluster.Stats().Published - published0
	// Relay 2 has everything once it applied as many messages as relay 1
	// published (and its own echo of nothing: relay 2 publishes nothing).
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for r2.r.Cluster.Stats().Applied-applied0 < published {
		select {
		case <-tick.C:
		case <-ctx.Done():
			b.Fatal("relay 2 did not apply the feed")
		}
	}
	replicated := time.Since(start)
	b.StopTimer()
	total := float64(per * writers)
	b.ReportMetric(total/acked.Seconds(), "acked-changes/s")
	b.ReportMetric(total/replicated.Seconds(), "replicated-changes/s")
	b.ReportMetric(float64(published)/acked.Seconds(), "publishes/s")
}
