package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/storetest"
)

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openAt(t testing.TB, dir string, mods ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Dir: dir, Logger: testLogger()}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := Open(cfg)
	require.NoError(t, err)
	return s
}

func openMem(t testing.TB, mods ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{InMemory: true, Logger: testLogger()}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := Open(cfg)
	require.NoError(t, err)
	return s
}

func closeOnCleanup(t testing.TB, s *Store) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
}

func TestConformanceDisk(t *testing.T) {
	storetest.RunOptions(t,
		func(t *testing.T) store.Store { return openAt(t, t.TempDir()) },
		storetest.Options{Reopen: func(t *testing.T, closed store.Store) store.Store {
			return openAt(t, closed.(*Store).Dir())
		}},
	)
}

func TestConformanceInMemory(t *testing.T) {
	// Badger in memory keeps values in the LSM tree, below 1 MiB.
	storetest.RunOptions(t, func(t *testing.T) store.Store { return openMem(t) },
		storetest.Options{LargeValueBytes: 1<<20 - 1})
}

func TestConfigValidate(t *testing.T) {
	bad := map[string]Config{
		"no dir":              {},
		"dir and in memory":   {Dir: "x", InMemory: true},
		"negative":            {Dir: "x", MemTableSize: -1},
		"one compactor":       {Dir: "x", NumCompactors: 1},
		"gc ratio":            {Dir: "x", GCDiscardRatio: 1},
		"threshold too big":   {Dir: "x", MemTableSize: 1 << 20, ValueThreshold: 512 << 10},
		"threshold over 1MiB": {Dir: "x", MemTableSize: 64 << 20, ValueThreshold: 2 << 20},
		"vlog file too small": {Dir: "x", ValueLogFileSize: 1000},
		"vlog file too big":   {Dir: "x", ValueLogFileSize: 2 << 30},
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := Open(cfg)
			assert.ErrorIs(t, err, ErrInvalidConfig)
		})
	}

	cfg := Config{Dir: "somewhere"}
	require.NoError(t, cfg.validate())
	assert.Equal(t, int64(DefaultMemTableSize), cfg.MemTableSize)
	assert.Equal(t, int64(DefaultBlockCacheSize), cfg.BlockCacheSize)
	assert.Equal(t, int64(DefaultIndexCacheSize), cfg.IndexCacheSize)
	assert.NotNil(t, cfg.Logger)
	opt := cfg.badgerOptions()
	assert.True(t, opt.SyncWrites, "durability depends on SyncWrites")
	assert.Equal(t, "somewhere", opt.Dir)
	assert.Equal(t, int64(DefaultMemTableSize), opt.MemTableSize)
	assert.Equal(t, DefaultNumMemtables, opt.NumMemtables)
	assert.Equal(t, int64(DefaultBlockCacheSize), opt.BlockCacheSize)
	assert.Equal(t, int64(DefaultIndexCacheSize), opt.IndexCacheSize)
	assert.Equal(t, int64(DefaultValueThreshold), opt.ValueThreshold)
	assert.False(t, opt.DetectConflicts)

	mem := Config{InMemory: true}
	require.NoError(t, mem.validate())
	assert.Equal(t, int64(1<<20), mem.ValueThreshold)
	assert.False(t, mem.badgerOptions().SyncWrites)
}

func TestOpenTwiceFails(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	closeOnCleanup(t, s)
	_, err := Open(Config{Dir: dir, Logger: testLogger()})
	assert.Error(t, err, "a directory is locked by the store that has it open")
}

func put(key store.Key, data []byte) store.Op { return store.Op{Key: key, Data: data} }

// newReq builds a request as Apply does, for tests that drive commit.
func newReq(t *testing.T, s *Store, ops ...store.Op) *request {
	t.Helper()
	r, err := s.newRequest(ops)
	require.NoError(t, err)
	return r
}

func TestCommitCoalescesQueuedRequests(t *testing.T) {
	s := openMem(t)
	closeOnCleanup(t, s)
	var reqs []*request
	for i := range 50 {
		reqs = append(reqs, newReq(t, s,
			put(store.SnapshotKey(fmt.Sprintf("doc%02d", i), "h"), bytes.Repeat([]byte{byte(i)}, 1000)),
			store.Op{Key: store.SnapshotKey(fmt.Sprintf("doc%02d", i), "old"), Delete: true},
		))
	}
	// The committer is idle (no Apply runs), so committing here is what
	// it would do with 50 queued requests.
	s.commit(reqs)
	for _, r := range reqs {
		require.NoError(t, <-r.done)
	}
	assert.Equal(t, Stats{Applies: 50, Ops: 100, Commits: 1}, s.Stats())
	n := 0
	require.NoError(t, s.Documents(context.Background(), func(string) bool { n++; return true }))
	assert.Equal(t, 50, n)
}

func TestCommitSplitsGroupsThatDoNotFit(t *testing.T) {
	// 1 MiB memtables: one transaction holds about 150 KiB.
	small := func(c *Config) { c.MemTableSize = 1 << 20; c.ValueThreshold = 100 << 10 }
	s := openAt(t, t.TempDir(), small)
	closeOnCleanup(t, s)
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 60<<10) } // below the threshold: in the LSM
	var reqs []*request
	for i := range 10 {
		reqs = append(reqs, newReq(t, s, put(store.IncrementalKey("d", fmt.Sprint(i)), val(i))))
	}
	// Request 10 cannot fit in any transaction.
	tooBig := newReq(t, s,
		put(store.IncrementalKey("big", "1"), val(1)),
		put(store.IncrementalKey("big", "2"), val(2)),
		put(store.IncrementalKey("big", "3"), val(3)),
	)
	reqs = append(reqs[:5:5], append([]*request{tooBig}, reqs[5:]...)...)
	s.commit(reqs)
	for _, r := range reqs {
		err := <-r.done
		if r == tooBig {
			assert.ErrorIs(t, err, ErrBatchTooLarge)
			continue
		}
		assert.NoError(t, err)
	}
	st := s.Stats()
	assert.Equal(t, uint64(10), st.Applies)
	assert.Equal(t, uint64(1), st.Failures)
	assert.Greater(t, st.Commits, uint64(1), "the group must have been split")
	assert.Less(t, st.Commits, uint64(10), "but not into single requests")

	ctx := context.Background()
	cs, err := s.LoadRange(ctx, store.IncrementalPrefix("d"))
	require.NoError(t, err)
	require.Len(t, cs, 10)
	big, err := s.LoadRange(ctx, store.DocPrefix("big"))
	require.NoError(t, err)
	assert.Empty(t, big, "a rejected batch writes nothing")

	// Through Apply, the same batch fails the same way, and the store
	// still takes writes afterwards.
	err = s.Apply(ctx, []store.Op{
		put(store.IncrementalKey("big", "1"), val(1)),
		put(store.IncrementalKey("big", "2"), val(2)),
		put(store.IncrementalKey("big", "3"), val(3)),
	})
	assert.ErrorIs(t, err, ErrBatchTooLarge)
	require.NoError(t, s.Apply(ctx, []store.Op{put(store.IncrementalKey("big", "1"), val(1))}))
}

func TestApplyValidation(t *testing.T) {
	s := openMem(t)
	closeOnCleanup(t, s)
	ctx := context.Background()
	err := s.Apply(ctx, []store.Op{put(store.Key{strings.Repeat("k", maxKeyBytes)}, nil)})
	assert.ErrorIs(t, err, store.ErrInvalidKey)
	err = s.Apply(ctx, []store.Op{put(store.Key{"k"}, make([]byte, 1<<20))})
	assert.ErrorIs(t, err, ErrValueTooLarge)
	require.NoError(t, s.Apply(ctx, []store.Op{put(store.Key{"k"}, make([]byte, 1<<20-1))}))

	disk := openAt(t, t.TempDir(), func(c *Config) { c.ValueLogFileSize = 1 << 20 })
	closeOnCleanup(t, disk)
	err = disk.Apply(ctx, []store.Op{put(store.Key{"k"}, make([]byte, 1<<20+1))})
	assert.ErrorIs(t, err, ErrValueTooLarge)
	// A key Badger reserves for itself is an ordinary key here.
	require.NoError(t, s.Apply(ctx, []store.Op{put(store.Key{"!badger!head"}, []byte("v"))}))
	v, err := s.Load(ctx, store.Key{"!badger!head"})
	require.NoError(t, err)
	assert.Equal(t, []byte("v"), v)
}

func TestFailedWriteStopsWrites(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	require.NoError(t, s.Apply(ctx, []store.Op{put(store.Key{"before"}, []byte("v"))}))
	// Make the next Badger write fail, as an I/O error would.
	require.NoError(t, s.db.Close())
	err := s.Apply(ctx, []store.Op{put(store.Key{"a"}, []byte("v"))})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrFailed, "the first failure reports the write's own error")
	err = s.Apply(ctx, []store.Op{put(store.Key{"b"}, []byte("v"))})
	assert.ErrorIs(t, err, ErrFailed)
	assert.Equal(t, uint64(1), s.Stats().Failures, "only the write that reached Badger")
	require.NoError(t, s.Close())
}

// Apply calls racing with Close either fail with ErrClosed or are durable.
func TestCloseCommitsQueuedApplies(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	ctx := context.Background()
	const writers = 16
	acked := make([][]int, writers)
	var wg, warm sync.WaitGroup
	warm.Add(writers)
	for w := range writers {
		wg.Go(func() {
			warmed := false
			defer func() {
				if !warmed {
					warm.Done()
				}
			}()
			for i := 0; ; i++ {
				err := s.Apply(ctx, []store.Op{put(store.IncrementalKey(fmt.Sprintf("w%02d", w), fmt.Sprintf("%05d", i)), []byte("x"))})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				acked[w] = append(acked[w], i)
				if i == 3 {
					warmed = true
					warm.Done()
				}
			}
		})
	}
	// Close once every writer has had writes acknowledged, while they all
	// keep writing.
	warm.Wait()
	require.NoError(t, s.Close())
	wg.Wait()

	s2 := openAt(t, dir)
	closeOnCleanup(t, s2)
	for w := range writers {
		cs, err := s2.LoadRange(ctx, store.IncrementalPrefix(fmt.Sprintf("w%02d", w)))
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(cs), len(acked[w]), "writer %d lost acknowledged writes", w)
		for i := range acked[w] {
			assert.Equal(t, fmt.Sprintf("%05d", i), cs[i].Key[2])
		}
	}
}

func TestRunGCReclaimsAndKeepsLiveData(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) {
		c.ValueThreshold = 1 << 10 // the 4 KiB values go to the value log
		c.ValueLogFileSize = 1 << 20
	}
	s := openAt(t, dir, small)
	ctx := context.Background()
	val := func(round, i int) []byte { return bytes.Repeat([]byte{byte(round), byte(i)}, 2<<10) }
	// Overwrite the same 100 keys 10 times: most of the value log is
	// garbage. Badger learns which entries are garbage from compactions,
	// so give it something to compact: a Close flushes the memtable into a
	// level-0 table, and more than NumLevelZeroTables (5) of them make
	// Flatten compact level 0 into the next level.
	for round := range 10 {
		var ops []store.Op
		for i := range 100 {
			ops = append(ops, put(store.SnapshotKey(fmt.Sprintf("d%03d", i), "h"), val(round, i)))
			if len(ops) == 20 {
				require.NoError(t, s.Apply(ctx, ops))
				ops = nil
			}
		}
		require.NoError(t, s.Close())
		s = openAt(t, dir, small)
	}
	closeOnCleanup(t, s)
	require.NoError(t, s.db.Flatten(1))

	before, err := s.Size()
	require.NoError(t, err)
	assert.Positive(t, before.ValueLog)
	assert.Positive(t, before.LSM)
	assert.Equal(t, before.LSM+before.ValueLog+before.WAL+before.Other, before.Total())

	n, err := s.RunGC(ctx)
	require.NoError(t, err)
	after, err := s.Size()
	require.NoError(t, err)
	t.Logf("value log GC rewrote %d files; value log %d -> %d bytes", n, before.ValueLog, after.ValueLog)
	assert.Positive(t, n)
	assert.Less(t, after.ValueLog, before.ValueLog)
	for i := range 100 {
		v, err := s.Load(ctx, store.SnapshotKey(fmt.Sprintf("d%03d", i), "h"))
		require.NoError(t, err)
		require.Equal(t, val(9, i), v)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.RunGC(canceled)
	assert.ErrorIs(t, err, context.Canceled)

	mem := openMem(t)
	closeOnCleanup(t, mem)
	n, err = mem.RunGC(ctx)
	assert.NoError(t, err)
	assert.Zero(t, n)
	z, err := mem.Size()
	assert.NoError(t, err)
	assert.Zero(t, z.Total())

	require.NoError(t, s.Close())
	_, err = s.RunGC(ctx)
	assert.ErrorIs(t, err, store.ErrClosed)
}

func TestBadgerLogsThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	l := slogAdapter{l: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	l.Infof("compaction %d\n", 1)
	l.Debugf("detail")
	l.Warningf("slow %s\n", "disk")
	l.Errorf("broken %d", 2)
	out := buf.String()
	assert.NotContains(t, out, "compaction")
	assert.NotContains(t, out, "detail")
	assert.Contains(t, out, `level=WARN msg="slow disk"`)
	assert.Contains(t, out, `level=ERROR msg="broken 2"`)
}
