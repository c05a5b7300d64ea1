package records_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/engine/store"
)

func newEngine(t testing.TB) *engine.Engine {
	eng, err := engine.New(engine.Config{Store: store.NewMemStore(), PeerID: "server"})
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close(context.Background()) })
	return eng
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		require.True(t, time.Now().Before(deadline), msg)
		<-tick.C
	}
}

func TestCRUD(t *testing.T) {
	ctx := ctxT(t)
	s := records.New(newEngine(t))
	todos := s.Collection("todos")
	id, err := todos.Put(ctx, map[string]any{"title": "milk", "done": false})
	require.NoError(t, err)
	rec, err := todos.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"title": "milk", "done": false}, rec.Fields)

	require.NoError(t, todos.Set(ctx, id, map[string]any{"done": true}))
	require.NoError(t, todos.Update(ctx, id, func(tx *crdt.Tx) error { return tx.Set([]any{"tags"}, []any{"shop"}) }))
	rec, err = todos.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"title": "milk", "done": true, "tags": []any{"shop"}}, rec.Fields)

	id2, err := todos.Put(ctx, map[string]any{"title": "eggs"})
	require.NoError(t, err)
	list, err := todos.List(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 2)

	require.NoError(t, todos.Delete(ctx, id))
	_, err = todos.Get(ctx, id)
	require.ErrorIs(t, err, records.ErrNotFound)
	list, err = todos.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, id2, list[0].ID)

	// Another collection does not see these records.
	_, err = s.Collection("notes").Get(ctx, id2)
	require.ErrorIs(t, err, records.ErrNotFound)
	// Reserved and invalid names are refused.
	_, err = todos.Put(ctx, map[string]any{"_secret": 1})
	require.ErrorIs(t, err, records.ErrInvalid)
	_, err = todos.Get(ctx, "not-an-id")
	require.ErrorIs(t, err, records.ErrInvalid)
}

func TestIndexIDIsDerivedFromTheName(t *testing.T) {
	s := records.New(newEngine(t))
	assert.Equal(t, s.Collection("todos").IndexID(), records.New(newEngine(t)).Collection("todos").IndexID())
	assert.NotEqual(t, s.Collection("todos").IndexID(), s.Collection("notes").IndexID())
	assert.Equal(t, records.DerivedID("index", "todos"), s.Collection("todos").IndexID())
}

func TestWatch(t *testing.T) {
	ctx := ctxT(t)
	s := records.New(newEngine(t))
	todos := s.Collection("todos")
	var mu sync.Mutex
	var evs []records.Event
	stop := todos.Watch(func(e records.Event) {
		mu.Lock()
		evs = append(evs, e)
		mu.Unlock()
	})
	defer stop()
	count := func(id string, k records.EventKind) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range evs {
			if e.ID == id && e.Kind == k {
				n++
			}
		}
		return n
	}
	id, err := todos.Put(ctx, map[string]any{"title": "milk"})
	require.NoError(t, err)
	waitFor(t, 10*time.Second, func() bool { return count(id, records.Added)+count(id, records.Changed) > 0 }, "watch saw the new record")
	before := count(id, records.Changed)
	require.NoError(t, todos.Set(ctx, id, map[string]any{"done": true}))
	waitFor(t, 10*time.Second, func() bool { return count(id, records.Changed) > before }, "watch saw the update")
	require.NoError(t, todos.Delete(ctx, id))
	waitFor(t, 10*time.Second, func() bool { return count(id, records.Deleted) == 1 }, "watch saw the deletion")
	mu.Lock()
	for _, e := range evs {
		assert.True(t, e.Local)
		assert.Equal(t, "todos", e.Collection)
	}
	mu.Unlock()
}

func TestSequenceNeverRepeats(t *testing.T) {
	ctx := ctxT(t)
	s := records.New(newEngine(t))
	var wg sync.WaitGroup
	got := make(chan int64, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.Next(ctx, "todos")
			require.NoError(t, err)
			got <- n
		}()
	}
	wg.Wait()
	close(got)
	seen := map[int64]bool{}
	for n := range got {
		assert.False(t, seen[n], "duplicate %d", n)
		seen[n] = true
	}
	for i := int64(1); i <= 50; i++ {
		assert.True(t, seen[i], "missing %d", i)
	}
}

func Example() {
	ctx := context.Background()
	eng, _ := engine.New(engine.Config{Store: store.NewMemStore()})
	defer eng.Close(ctx)
	todos := records.New(eng).Collection("todos")
	id, _ := todos.Put(ctx, map[string]any{"title": "milk", "done": false})
	todos.Set(ctx, id, map[string]any{"done": true})
	rec, _ := todos.Get(ctx, id)
	fmt.Println(rec.Fields["title"], rec.Fields["done"])
	// Output: milk true
}
