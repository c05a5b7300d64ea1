package badgerstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/amsync/amsync/engine/store"
)

// BenchmarkApply measures durable Apply throughput with 1, 8 and 64
// concurrent writers, each saving ~1 KB snapshots of its own document (a
// put of the new snapshot and a delete of the previous one, as
// automerge-repo's compaction does).
//
//   - group: Store.Apply, whose committer coalesces concurrent calls into
//     one synced transaction.
//   - direct: one db.Update per call, relying on Badger's own write
//     pipeline. It batches the value-log write (and its msync) of
//     concurrent transactions, but syncs the memtable's write-ahead log
//     once per transaction (db.go writeToLSM), so it still pays about one
//     msync per Apply (strace: ~1.3 msync/op at 8 and 64 writers, against
//     2 per commit for group).
//
// commits/op is synced Badger transactions per Apply: every commit syncs
// the write-ahead log once, so it is the fsyncs per Apply. ops/s is Apply
// calls per second.
func BenchmarkApply(b *testing.B) {
	for _, mode := range []string{"group", "direct"} {
		for _, writers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				benchApply(b, mode == "direct", writers)
			})
		}
	}
}

func benchApply(b *testing.B, direct bool, writers int) {
	s := openAt(b, b.TempDir())
	defer func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	}()
	rng := rand.New(rand.NewPCG(1, uint64(writers)))
	snapshot := make([]byte, 1024)
	for i := range snapshot {
		snapshot[i] = byte(rng.Uint32())
	}
	var directTxns atomic.Uint64
	apply := func(ctx context.Context, ops []store.Op) error {
		if !direct {
			return s.Apply(ctx, ops)
		}
		r, err := s.newRequest(ops)
		if err != nil {
			return err
		}
		directTxns.Add(1)
		return s.db.Update(func(txn *badger.Txn) error {
			_, err := fill(txn, []*request{r})
			return err
		})
	}

	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.SetBytes(int64(len(snapshot)))
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			doc := fmt.Sprintf("doc%03d", w)
			prev := ""
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				h := fmt.Sprintf("%016x", i)
				ops := []store.Op{{Key: store.SnapshotKey(doc, h), Data: snapshot}}
				if prev != "" {
					ops = append(ops, store.Op{Key: store.SnapshotKey(doc, prev), Delete: true})
				}
				if err := apply(ctx, ops); err != nil {
					errs <- err
					return
				}
				prev = h
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	commits := s.Stats().Commits
	if direct {
		commits = directTxns.Load()
	}
	b.ReportMetric(float64(commits)/float64(b.N), "commits/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
