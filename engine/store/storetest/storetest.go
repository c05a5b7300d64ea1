package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
)

// Options configures RunOptions.
type Options struct {
	// Reopen, when set, declares the store persistent. The suite calls it
	// with a store it has just closed; Reopen must open the same storage
	// again (for example the same directory) and return the new store. The
	// suite then checks that every acknowledged write survived.
	Reopen func(t *testing.T, closed store.Store) store.Store

	// LargeValueBytes is the size of the largest value the suite stores.
	// Zero means 6 MiB.
	LargeValueBytes int
}

// Run runs the conformance suite against stores made by open. open is called
// once per subtest and must return a new, empty, open store; the suite
// closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	RunOptions(t, open, Options{})
}

// RunOptions is Run with options; pass Options.Reopen for a persistent
// store.
func RunOptions(t *testing.T, open func(t *testing.T) store.Store, opts Options) {
	if opts.LargeValueBytes == 0 {
		opts.LargeValueBytes = 6 << 20
	}
	fresh := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		require.NotNil(t, s, "open returned nil")
		t.Cleanup(func() {
			if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
				t.Errorf("close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"AbsentKey", testAbsentKey},
		{"PutOverwriteDelete", testPutOverwriteDelete},
		{"EmptyValue", testEmptyValue},
		{"AtomicBatch", testAtomicBatch},
		{"BatchOrder", testBatchOrder},
		{"InvalidBatchChangesNothing", testInvalidBatchChangesNothing},
		{"EmptyBatch", testEmptyBatch},
		{"PrefixIsComponentWise", testPrefixIsComponentWise},
		{"LoadRangeSorted", testLoadRangeSorted},
		{"Documents", testDocuments},
		{"DocumentsStops", testDocumentsStops},
		{"RemoveDocument", testRemoveDocument},
		{"InvalidKeys", testInvalidKeys},
		{"CanceledContext", testCanceledContext},
		{"Closed", testClosed},
		{"ConcurrentApply", testConcurrentApply},
		{"BinaryValues", testBinaryValues},
		{"BinaryKeys", testBinaryKeys},
		{"CopiesData", testCopiesData},
		{"LargeValues", func(t *testing.T, s store.Store) { testLargeValues(t, s, opts.LargeValueBytes) }},
		{"StorageID", testStorageID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
	if opts.Reopen != nil {
		t.Run("Reopen", func(t *testing.T) { testReopen(t, fresh(t), opts.Reopen) })
	}
}

func k(c ...string) store.Key { return store.Key(c) }

func put(key store.Key, data string) store.Op { return store.Op{Key: key, Data: []byte(data)} }

func del(key store.Key) store.Op { return store.Op{Key: key, Delete: true} }

func apply(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	require.NoError(t, s.Apply(context.Background(), ops))
}

func load(t *testing.T, s store.Store, key store.Key) []byte {
	t.Helper()
	b, err := s.Load(context.Background(), key)
	require.NoError(t, err, "load %v", key)
	return b
}

// rangeKeys returns the keys LoadRange(p) returns, as strings, and checks
// that every returned key really has prefix p.
func rangeKeys(t *testing.T, s store.Store, p store.Key) []string {
	t.Helper()
	cs, err := s.LoadRange(context.Background(), p)
	require.NoError(t, err, "load range %v", p)
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		require.True(t, c.Key.HasPrefix(p), "LoadRange(%v) returned %v", p, c.Key)
		out = append(out, c.Key.String())
	}
	return out
}

func documents(t *testing.T, s store.Store) []string {
	t.Helper()
	var docs []string
	require.NoError(t, s.Documents(context.Background(), func(id string) bool {
		docs = append(docs, id)
		return true
	}))
	return docs
}

func testAbsentKey(t *testing.T, s store.Store) {
	b, err := s.Load(context.Background(), k("doc", store.KindSnapshot, "h"))
	require.NoError(t, err)
	assert.Nil(t, b)

	cs, err := s.LoadRange(context.Background(), k("doc"))
	require.NoError(t, err)
	assert.Empty(t, cs)

	assert.Empty(t, documents(t, s))
}

func testPutOverwriteDelete(t *testing.T, s store.Store) {
	key := store.SnapshotKey("doc", "h1")
	apply(t, s, put(key, "one"))
	assert.Equal(t, []byte("one"), load(t, s, key))

	apply(t, s, put(key, "two, longer"))
	assert.Equal(t, []byte("two, longer"), load(t, s, key))
	assert.Equal(t, []string{key.String()}, rangeKeys(t, s, k("doc")), "overwrite must not duplicate")

	apply(t, s, put(key, "3"))
	assert.Equal(t, []byte("3"), load(t, s, key), "shorter overwrite")

	apply(t, s, del(key))
	assert.Nil(t, load(t, s, key))
	assert.Empty(t, rangeKeys(t, s, k("doc")))

	// Deleting an absent key is not an error.
	apply(t, s, del(key))
	apply(t, s, del(k("never", "written")))
	assert.Nil(t, load(t, s, key))
}

func testEmptyValue(t *testing.T, s store.Store) {
	a, b := k("doc", "x", "empty"), k("doc", "x", "nil")
	apply(t, s, store.Op{Key: a, Data: []byte{}}, store.Op{Key: b})
	for _, key := range []store.Key{a, b} {
		v := load(t, s, key)
		assert.NotNil(t, v, "a present key with an empty value must load as non-nil %v", key)
		assert.Empty(t, v)
	}
	cs, err := s.LoadRange(context.Background(), k("doc"))
	require.NoError(t, err)
	require.Len(t, cs, 2)
	for _, c := range cs {
		assert.Empty(t, c.Data)
	}
}

func testAtomicBatch(t *testing.T, s store.Store) {
	apply(t, s,
		put(store.SnapshotKey("d", "old"), "old snapshot"),
		put(store.IncrementalKey("d", "i1"), "inc 1"),
		put(store.IncrementalKey("d", "i2"), "inc 2"),
		put(store.SyncStateKey("d", "peer"), "sync"),
	)
	// A compaction as automerge-repo does it: one new snapshot, the old
	// chunks deleted, in one batch.
	apply(t, s,
		put(store.SnapshotKey("d", "new"), "new snapshot"),
		del(store.SnapshotKey("d", "old")),
		del(store.IncrementalKey("d", "i1")),
		del(store.IncrementalKey("d", "i2")),
	)
	assert.Equal(t, []string{"d/snapshot/new", "d/sync-state/peer"}, rangeKeys(t, s, k("d")))
	assert.Equal(t, []byte("new snapshot"), load(t, s, store.SnapshotKey("d", "new")))
	assert.Equal(t, []byte("sync"), load(t, s, store.SyncStateKey("d", "peer")))
}

func testBatchOrder(t *testing.T, s store.Store) {
	// Within a batch the last op on a key wins.
	a, b, c := k("o", "a"), k("o", "b"), k("o", "c")
	apply(t, s, put(b, "old b"))
	apply(t, s,
		put(a, "a1"), del(a), // put then delete: absent
		del(b), put(b, "b2"), // delete then put: present
		put(c, "c1"), put(c, "c2"), // put twice: last value
	)
	assert.Nil(t, load(t, s, a))
	assert.Equal(t, []byte("b2"), load(t, s, b))
	assert.Equal(t, []byte("c2"), load(t, s, c))
}

func testInvalidBatchChangesNothing(t *testing.T, s store.Store) {
	apply(t, s, put(k("x", "keep"), "v"))
	err := s.Apply(context.Background(), []store.Op{
		put(k("x", "new"), "v"),
		del(k("x", "keep")),
		put(k("x", ""), "bad"),
	})
	require.ErrorIs(t, err, store.ErrInvalidKey)
	assert.Equal(t, []string{"x/keep"}, rangeKeys(t, s, k("x")), "a rejected batch must change nothing")
}

func testEmptyBatch(t *testing.T, s store.Store) {
	require.NoError(t, s.Apply(context.Background(), nil))
	require.NoError(t, s.Apply(context.Background(), []store.Op{}))
	assert.Empty(t, documents(t, s))
}

func testPrefixIsComponentWise(t *testing.T, s store.Store) {
	keys := []store.Key{
		k("doc", store.KindSnapshot, "h"),
		k("doc2", store.KindSnapshot, "h"),
		k("do", store.KindSnapshot, "h"),
		k("a", "b"),
		k("a", "b", "c"),
		k("a", "b", "c", "d"),
		k("a", "bc"),
		k("a", "bc", "d"),
		k("ab"),
		k("a"),
	}
	var ops []store.Op
	for _, key := range keys {
		ops = append(ops, put(key, key.String()))
	}
	apply(t, s, ops...)

	assert.Equal(t, []string{"doc/snapshot/h"}, rangeKeys(t, s, k("doc")))
	assert.Equal(t, []string{"do/snapshot/h"}, rangeKeys(t, s, k("do")))
	assert.Equal(t, []string{"a/b", "a/b/c", "a/b/c/d"}, rangeKeys(t, s, k("a", "b")))
	assert.Equal(t, []string{"a/b/c", "a/b/c/d"}, rangeKeys(t, s, k("a", "b", "c")))
	assert.Equal(t, []string{"a/bc", "a/bc/d"}, rangeKeys(t, s, k("a", "bc")))
	assert.Equal(t, []string{"a", "a/b", "a/b/c", "a/b/c/d", "a/bc", "a/bc/d"}, rangeKeys(t, s, k("a")))
	assert.Equal(t, []string{"ab"}, rangeKeys(t, s, k("ab")))
	assert.Empty(t, rangeKeys(t, s, k("a", "b", "c", "d", "e")))
	assert.Empty(t, rangeKeys(t, s, k("a", "bc", "d", "e")))
	assert.Empty(t, rangeKeys(t, s, k("b")))

	// A prefix of a key is not the key: Load is exact.
	assert.Nil(t, load(t, s, k("doc")))
	assert.Nil(t, load(t, s, k("a", "b", "c", "d", "e")))
	assert.Equal(t, []byte("a/b"), load(t, s, k("a", "b")))
}

func testLoadRangeSorted(t *testing.T, s store.Store) {
	rng := rand.New(rand.NewPCG(7, 11))
	alphabet := []string{"a", "b", "ab", "\x01", "\xff", "é", "Z", "a\xff", "zz"}
	seen := map[string]store.Key{}
	for len(seen) < 300 {
		n := 1 + rng.IntN(4)
		key := store.Key{"p"}
		for range n {
			key = append(key, alphabet[rng.IntN(len(alphabet))])
		}
		seen[key.String()+fmt.Sprint(len(key))] = key
	}
	keys := make([]store.Key, 0, len(seen))
	for _, key := range seen {
		keys = append(keys, key)
	}
	// Insert in a random order, in batches of random size.
	slices.SortFunc(keys, store.Key.Compare)
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for len(keys) > 0 {
		n := min(len(keys), 1+rng.IntN(20))
		var ops []store.Op
		for _, key := range keys[:n] {
			ops = append(ops, store.Op{Key: key, Data: []byte(fmt.Sprintf("%q", []string(key)))})
		}
		apply(t, s, ops...)
		keys = keys[n:]
	}

	cs, err := s.LoadRange(context.Background(), k("p"))
	require.NoError(t, err)
	require.Len(t, cs, len(seen))
	for i, c := range cs {
		assert.Equal(t, fmt.Sprintf("%q", []string(c.Key)), string(c.Data), "value of %q", []string(c.Key))
		if i > 0 {
			require.Negative(t, cs[i-1].Key.Compare(c.Key),
				"LoadRange not sorted: %q before %q", []string(cs[i-1].Key), []string(c.Key))
		}
	}
	// Every sub-prefix range is exactly the matching sorted subsequence.
	for _, p := range []store.Key{k("p", "a"), k("p", "ab"), k("p", "a", "b"), k("p", "\xff"), k("p", "é", "a")} {
		var want []string
		for _, c := range cs {
			if c.Key.HasPrefix(p) {
				want = append(want, c.Key.String())
			}
		}
		got := rangeKeys(t, s, p)
		if len(want) == 0 {
			assert.Empty(t, got, "prefix %q", []string(p))
			continue
		}
		assert.Equal(t, want, got, "prefix %q", []string(p))
	}
}

func testDocuments(t *testing.T, s store.Store) {
	apply(t, s,
		put(store.SnapshotKey("doc-b", "h"), "s"),
		put(store.IncrementalKey("doc-b", "i"), "i"),
		put(store.SyncStateKey("doc-b", "peer"), "ss"),
		put(store.IncrementalKey("doc-a", "i"), "only incremental"),
		put(store.SyncStateKey("doc-sync-only", "peer"), "only sync state"),
		put(store.StorageIDStoreKey(), "0b7e8d5c-0000-4000-8000-000000000000"),
		put(store.SnapshotKey("doc-c", "h1"), "s1"),
		put(store.SnapshotKey("doc-c", "h2"), "s2"),
		put(k("doc-other", "misc", "x"), "neither snapshot nor incremental"),
		put(k("doc-short", store.KindSnapshot), "two components only"),
		put(store.SnapshotKey("doc", "h"), "prefix of the others"),
		put(store.IncrementalKey("doc\x01", "h"), "sorts right after doc"),
		put(store.SyncStateKey("doc\xff", "p"), "sync only, sorts last"),
	)
	assert.Equal(t, []string{"doc", "doc\x01", "doc-a", "doc-b", "doc-c", "doc-short"}, documents(t, s))

	// A document disappears when its last chunk goes, even if a sync
	// state remains.
	apply(t, s, del(store.SnapshotKey("doc-b", "h")), del(store.IncrementalKey("doc-b", "i")))
	assert.Equal(t, []string{"doc", "doc\x01", "doc-a", "doc-c", "doc-short"}, documents(t, s))
}

func testDocumentsStops(t *testing.T, s store.Store) {
	var ops []store.Op
	for i := range 10 {
		ops = append(ops, put(store.SnapshotKey(fmt.Sprintf("doc%02d", i), "h"), "x"))
	}
	apply(t, s, ops...)
	var got []string
	require.NoError(t, s.Documents(context.Background(), func(id string) bool {
		got = append(got, id)
		return len(got) < 3
	}))
	assert.Equal(t, []string{"doc00", "doc01", "doc02"}, got)

	// fn may call the store.
	var loaded int
	require.NoError(t, s.Documents(context.Background(), func(id string) bool {
		if load(t, s, store.SnapshotKey(id, "h")) != nil {
			loaded++
		}
		return true
	}))
	assert.Equal(t, 10, loaded)
}

func testRemoveDocument(t *testing.T, s store.Store) {
	apply(t, s,
		put(store.SnapshotKey("gone", "h"), "s"),
		put(store.IncrementalKey("gone", "i"), "i"),
		put(store.SyncStateKey("gone", "p"), "ss"),
		put(store.SnapshotKey("gone2", "h"), "s"),
	)
	cs, err := s.LoadRange(context.Background(), store.DocPrefix("gone"))
	require.NoError(t, err)
	require.Len(t, cs, 3)
	var ops []store.Op
	for _, c := range cs {
		ops = append(ops, del(c.Key))
	}
	apply(t, s, ops...)
	assert.Empty(t, rangeKeys(t, s, store.DocPrefix("gone")))
	assert.Equal(t, []string{"gone2"}, documents(t, s))
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	bad := []store.Key{nil, {}, {""}, {"a", ""}, {"", "a"}, {"a\x00b"}, {"a", "\x00"}, {"doc", "snapshot", "h\x00"}}
	for _, key := range bad {
		_, err := s.Load(ctx, key)
		assert.ErrorIs(t, err, store.ErrInvalidKey, "Load(%q)", []string(key))
		_, err = s.LoadRange(ctx, key)
		assert.ErrorIs(t, err, store.ErrInvalidKey, "LoadRange(%q)", []string(key))
		err = s.Apply(ctx, []store.Op{put(key, "v")})
		assert.ErrorIs(t, err, store.ErrInvalidKey, "Apply put %q", []string(key))
		err = s.Apply(ctx, []store.Op{del(key)})
		assert.ErrorIs(t, err, store.ErrInvalidKey, "Apply delete %q", []string(key))
	}
	assert.Empty(t, documents(t, s))
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := k("c", "k")
	err := s.Apply(ctx, []store.Op{put(key, "v")})
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, load(t, s, key), "an Apply refused for a canceled context must write nothing")

	apply(t, s, put(key, "v"))
	_, err = s.Load(ctx, key)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = s.LoadRange(ctx, k("c"))
	assert.ErrorIs(t, err, context.Canceled)
	err = s.Documents(ctx, func(string) bool { return true })
	assert.ErrorIs(t, err, context.Canceled)
}

func testClosed(t *testing.T, s store.Store) {
	ctx := context.Background()
	apply(t, s, put(store.SnapshotKey("d", "h"), "v"))
	require.NoError(t, s.Close())

	_, err := s.Load(ctx, store.SnapshotKey("d", "h"))
	assert.ErrorIs(t, err, store.ErrClosed)
	_, err = s.LoadRange(ctx, k("d"))
	assert.ErrorIs(t, err, store.ErrClosed)
	err = s.Apply(ctx, []store.Op{put(k("d", "x"), "v")})
	assert.ErrorIs(t, err, store.ErrClosed)
	err = s.Apply(ctx, nil)
	assert.ErrorIs(t, err, store.ErrClosed)
	called := false
	err = s.Documents(ctx, func(string) bool { called = true; return true })
	assert.ErrorIs(t, err, store.ErrClosed)
	assert.False(t, called)
	assert.ErrorIs(t, s.Close(), store.ErrClosed)
}

func testConcurrentApply(t *testing.T, s store.Store) {
	const writers, batches = 32, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches+writers)
	for w := range writers {
		wg.Go(func() {
			doc := fmt.Sprintf("doc%02d", w)
			for b := range batches {
				err := s.Apply(ctx, []store.Op{
					put(store.IncrementalKey(doc, fmt.Sprintf("%03d", b)), fmt.Sprintf("%d/%d", w, b)),
					put(store.SyncStateKey(doc, "peer"), fmt.Sprint(b)),
				})
				if err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
					return
				}
				// Read your own write, concurrently with other writers.
				v, err := s.Load(ctx, store.SyncStateKey(doc, "peer"))
				if err != nil {
					errs <- err
					return
				}
				if string(v) != fmt.Sprint(b) {
					errs <- fmt.Errorf("writer %d: read %q after writing %d", w, v, b)
					return
				}
			}
		})
	}
	// A concurrent reader that must never see a torn batch: an incremental
	// chunk without the sync state written in the same batch.
	wg.Go(func() {
		for range 20 {
			cs, err := s.LoadRange(ctx, k("doc00"))
			if err != nil {
				errs <- err
				return
			}
			if len(cs) > 0 && !cs[len(cs)-1].Key.HasPrefix(store.SyncStatePrefix("doc00")) {
				errs <- fmt.Errorf("torn batch: %d chunks without sync state", len(cs))
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	docs := documents(t, s)
	require.Len(t, docs, writers)
	for w, doc := range docs {
		require.Equal(t, fmt.Sprintf("doc%02d", w), doc)
		cs, err := s.LoadRange(ctx, store.IncrementalPrefix(doc))
		require.NoError(t, err)
		require.Len(t, cs, batches, "doc %s", doc)
		for b, c := range cs {
			assert.Equal(t, fmt.Sprintf("%d/%d", w, b), string(c.Data))
		}
	}
}

func allBytes() []byte {
	b := make([]byte, 0, 3*256)
	for i := range 256 {
		b = append(b, byte(i))
	}
	for i := range 256 {
		b = append(b, byte(255-i))
	}
	return append(b, 0, 0, 0xff, 0, 0xff, 0xff, 0)
}

func testBinaryValues(t *testing.T, s store.Store) {
	v := allBytes()
	key := store.SnapshotKey("bin", "h")
	apply(t, s, store.Op{Key: key, Data: v})
	assert.Equal(t, v, load(t, s, key))
	for i := range 256 {
		one := store.IncrementalKey("bin", fmt.Sprintf("%03d", i))
		apply(t, s, store.Op{Key: one, Data: []byte{byte(i)}})
	}
	cs, err := s.LoadRange(context.Background(), store.IncrementalPrefix("bin"))
	require.NoError(t, err)
	require.Len(t, cs, 256)
	for i, c := range cs {
		assert.Equal(t, []byte{byte(i)}, c.Data)
	}
}

func testBinaryKeys(t *testing.T, s store.Store) {
	// Every byte but NUL may appear in a component, including bytes that
	// are not UTF-8 and bytes that are used by encodings as separators.
	var ops []store.Op
	var want []store.Key
	for i := 1; i < 256; i++ {
		key := k("bk", string([]byte{byte(i)}), string([]byte{byte(i), 0xff, 1}))
		want = append(want, key)
		ops = append(ops, store.Op{Key: key, Data: []byte{byte(i)}})
	}
	apply(t, s, ops...)
	cs, err := s.LoadRange(context.Background(), k("bk"))
	require.NoError(t, err)
	require.Len(t, cs, len(want))
	for i, c := range cs {
		assert.Equal(t, want[i], c.Key)
		assert.Equal(t, []byte{byte(i + 1)}, c.Data)
		assert.Equal(t, []byte{byte(i + 1)}, load(t, s, want[i]))
	}
	for i := 1; i < 256; i++ {
		got := rangeKeys(t, s, k("bk", string([]byte{byte(i)})))
		assert.Len(t, got, 1, "prefix byte %#x", i)
	}
}

func testCopiesData(t *testing.T, s store.Store) {
	key := k("cp", "k")
	in := []byte("original")
	apply(t, s, store.Op{Key: key, Data: in})
	copy(in, "XXXXXXXX")
	out := load(t, s, key)
	assert.Equal(t, []byte("original"), out, "Apply must not keep the caller's slice")
	copy(out, "YYYYYYYY")
	assert.Equal(t, []byte("original"), load(t, s, key), "Load must return a copy")
	cs, err := s.LoadRange(context.Background(), k("cp"))
	require.NoError(t, err)
	require.Len(t, cs, 1)
	copy(cs[0].Data, "ZZZZZZZZ")
	cs[0].Key[1] = "changed"
	assert.Equal(t, []byte("original"), load(t, s, key), "LoadRange must return a copy")
}

func testLargeValues(t *testing.T, s store.Store, size int) {
	rng := rand.New(rand.NewPCG(3, 5))
	big := make([]byte, size)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	key := store.SnapshotKey("big", "h")
	apply(t, s, store.Op{Key: key, Data: big})
	got := load(t, s, key)
	require.Len(t, got, size)
	require.True(t, bytes.Equal(big, got), "large value differs")

	// A batch of several large values, one of them replacing the first.
	third := size / 3
	apply(t, s,
		store.Op{Key: store.IncrementalKey("big", "1"), Data: big[:third]},
		store.Op{Key: store.IncrementalKey("big", "2"), Data: big[third : 2*third]},
		store.Op{Key: key, Data: big[2*third:]},
	)
	cs, err := s.LoadRange(context.Background(), k("big"))
	require.NoError(t, err)
	require.Len(t, cs, 3)
	require.True(t, bytes.Equal(big[:third], cs[0].Data))
	require.True(t, bytes.Equal(big[third:2*third], cs[1].Data))
	require.True(t, bytes.Equal(big[2*third:], cs[2].Data))
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func testStorageID(t *testing.T, s store.Store) {
	ctx := context.Background()
	rng := rand.NewChaCha8([32]byte{1})
	id, err := store.EnsureStorageID(ctx, s, rng)
	require.NoError(t, err)
	assert.Regexp(t, uuidV4, id)
	assert.Equal(t, []byte(id), load(t, s, store.StorageIDStoreKey()))

	again, err := store.EnsureStorageID(ctx, s, rand.NewChaCha8([32]byte{2}))
	require.NoError(t, err)
	assert.Equal(t, id, again, "an existing storage id must be kept")
	assert.Empty(t, documents(t, s), "the storage id is not a document")
}

func testReopen(t *testing.T, s store.Store, reopen func(*testing.T, store.Store) store.Store) {
	ctx := context.Background()
	id, err := store.EnsureStorageID(ctx, s, nil)
	require.NoError(t, err)
	big := bytes.Repeat(allBytes(), 3000) // ~2.3 MB
	apply(t, s,
		put(store.SnapshotKey("r1", "old"), "old"),
		put(store.IncrementalKey("r1", "i"), "inc"),
		store.Op{Key: store.SnapshotKey("r2", "h"), Data: big},
		put(store.SyncStateKey("r3", "p"), "sync only"),
	)
	apply(t, s, put(store.SnapshotKey("r1", "new"), "new"), del(store.SnapshotKey("r1", "old")))
	for i := range 100 {
		apply(t, s, put(store.IncrementalKey("many", fmt.Sprintf("%03d", i)), fmt.Sprint(i)))
	}
	require.NoError(t, s.Close())

	s2 := reopen(t, s)
	require.NotNil(t, s2)
	t.Cleanup(func() {
		if err := s2.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("close reopened store: %v", err)
		}
	})
	again, err := store.EnsureStorageID(ctx, s2, nil)
	require.NoError(t, err)
	assert.Equal(t, id, again, "the storage id must survive a reopen")
	assert.Equal(t, []string{"many", "r1", "r2"}, documents(t, s2))
	assert.Equal(t, []string{"r1/incremental/i", "r1/snapshot/new"}, rangeKeys(t, s2, k("r1")))
	assert.Equal(t, []byte("new"), load(t, s2, store.SnapshotKey("r1", "new")))
	assert.True(t, bytes.Equal(big, load(t, s2, store.SnapshotKey("r2", "h"))), "large value after reopen")
	assert.Equal(t, []byte("sync only"), load(t, s2, store.SyncStateKey("r3", "p")))
	cs, err := s2.LoadRange(ctx, k("many"))
	require.NoError(t, err)
	require.Len(t, cs, 100)
	for i, c := range cs {
		assert.Equal(t, fmt.Sprint(i), string(c.Data))
	}

	// The reopened store takes writes.
	apply(t, s2, put(store.SnapshotKey("r4", "h"), "after reopen"))
	assert.Equal(t, []byte("after reopen"), load(t, s2, store.SnapshotKey("r4", "h")))
}
