package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/cluster/natstest"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

var quiet = slog.New(slog.DiscardHandler)

// node is one relay's engine and cluster link, on its own store.
type node struct {
	st  store.Store
	eng *engine.Engine
	cl  *Cluster
}

func startNode(t *testing.T, url string, st store.Store, mut ...func(*Config)) *node {
	t.Helper()
	cfg := Config{URL: url, Store: st, FlushInterval: 20 * time.Millisecond, PublishTimeout: 2 * time.Second, Logger: quiet}
	for _, f := range mut {
		f(&cfg)
	}
	cl, err := Open(context.Background(), cfg)
	require.NoError(t, err)
	eng, err := engine.New(engine.Config{Store: st, Replicator: cl, Logger: quiet})
	require.NoError(t, err)
	require.NoError(t, cl.Start(eng))
	n := &node{st: st, eng: eng, cl: cl}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.eng.Close(ctx))
	require.NoError(t, n.cl.Close(ctx))
}

func (n *node) waitReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, n.cl.WaitReady(ctx))
}

func (n *node) value(t *testing.T, docID string) map[string]any {
	var v map[string]any
	err := n.eng.Read(context.Background(), docID, func(d *crdt.Doc) error {
		var err error
		v, err = d.Value()
		return err
	})
	if err != nil {
		return nil
	}
	return v
}

func set(t *testing.T, n *node, docID, key string, v any) {
	_, err := n.eng.Change(context.Background(), docID, func(tx *crdt.Tx) error { return tx.Set([]any{key}, v) })
	require.NoError(t, err)
}

func newDocID(t testing.TB) string {
	id, err := wire.NewDocumentID(nil)
	require.NoError(t, err)
	return id
}

func TestChangesReachEveryRelay(t *testing.T) {
	ns := natstest.Start(t)
	a := startNode(t, ns.ClientURL(), store.NewMemStore())
	b := startNode(t, ns.ClientURL(), store.NewMemStore())
	a.waitReady(t)
	b.waitReady(t)

	doc := newDocID(t)
	set(t, a, doc, "from", "a")
	require.Eventually(t, func() bool { return b.value(t, doc)["from"] == "a" }, 10*time.Second, 5*time.Millisecond)
	set(t, b, doc, "reply", "b")
	require.Eventually(t, func() bool { return a.value(t, doc)["reply"] == "b" }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, map[string]any{"from": "a", "reply": "b"}, a.value(t, doc))
	assert.Equal(t, a.value(t, doc), b.value(t, doc))

	// What a relay published comes back to it through the feed, and costs
	// nothing there.
	require.Eventually(t, func() bool { return a.eng.Stats().RemoteSkipped >= 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, int64(1), a.cl.Stats().Published)
	assert.Equal(t, int64(1), b.cl.Stats().Published)
}

func TestEmptyRelayCatchesUpBeforeReadyAndRestartResumes(t *testing.T) {
	ns := natstest.Start(t)
	a := startNode(t, ns.ClientURL(), store.NewMemStore())
	a.waitReady(t)
	docs := make([]string, 20)
	for i := range docs {
		docs[i] = newDocID(t)
		for j := range 3 {
			set(t, a, docs[i], fmt.Sprintf("k%d", j), int64(i))
		}
	}

	st := store.NewMemStore()
	c := startNode(t, ns.ClientURL(), st)
	c.waitReady(t)
	// Ready means caught up: every document is here, with no waiting.
	for i, id := range docs {
		assert.Equal(t, map[string]any{"k0": int64(i), "k1": int64(i), "k2": int64(i)}, c.value(t, id), id)
	}
	stats := c.cl.Stats()
	assert.Equal(t, int64(60), stats.Applied)
	assert.Equal(t, uint64(60), stats.Position)
	// Documents nobody has open here were stored without being loaded.
	assert.Equal(t, int64(60), c.eng.Stats().RemoteStored)

	// A restart on the same store resumes from its position.
	c.stop(t)
	set(t, a, docs[0], "late", "yes")
	c2 := startNode(t, ns.ClientURL(), st)
	c2.waitReady(t)
	assert.Equal(t, "yes", c2.value(t, docs[0])["late"])
	assert.Equal(t, int64(1), c2.cl.Stats().Applied, "only what it missed")
}

func TestJoiningRelayPublishesItsDocumentsOnce(t *testing.T) {
	ns := natstest.Start(t)
	// A relay that ran alone has documents.
	st := store.NewMemStore()
	solo, err := engine.New(engine.Config{Store: st})
	require.NoError(t, err)
	doc := newDocID(t)
	_, err = solo.Change(context.Background(), doc, func(tx *crdt.Tx) error { return tx.Set([]any{"old"}, "data") })
	require.NoError(t, err)
	require.NoError(t, solo.Close(context.Background()))

	a := startNode(t, ns.ClientURL(), st)
	a.waitReady(t)
	assert.Equal(t, int64(1), a.cl.Stats().Published)
	// Its own seed comes back and is skipped.
	require.Eventually(t, func() bool { return a.cl.Stats().Skipped == 1 }, 10*time.Second, 5*time.Millisecond)

	b := startNode(t, ns.ClientURL(), store.NewMemStore())
	b.waitReady(t)
	assert.Equal(t, map[string]any{"old": "data"}, b.value(t, doc))

	// Restarted, it does not publish them again.
	a.stop(t)
	a2 := startNode(t, ns.ClientURL(), st)
	a2.waitReady(t)
	assert.Zero(t, a2.cl.Stats().Published)
}

func TestNothingAcknowledgedWithoutJetStream(t *testing.T) {
	ns := natstest.Start(t)
	st := store.NewMemStore()
	a := startNode(t, ns.ClientURL(), st, func(c *Config) { c.PublishTimeout = 300 * time.Millisecond })
	a.waitReady(t)
	doc := newDocID(t)
	set(t, a, doc, "k", "kept")

	ns.Shutdown()
	ns.WaitForShutdown()
	_, err := a.eng.Change(context.Background(), doc, func(tx *crdt.Tx) error { return tx.Set([]any{"k"}, "lost") })
	require.ErrorIs(t, err, engine.ErrNotPublished)
	assert.Equal(t, map[string]any{"k": "kept"}, a.value(t, doc), "the unpublished change is not kept")
	assert.GreaterOrEqual(t, a.cl.Stats().PublishErrors, int64(1))
}

func TestSplitChunks(t *testing.T) {
	d, err := crdt.New("aa")
	require.NoError(t, err)
	var sizes []int
	for i := range 5 {
		before := d.Heads()
		_, err := d.Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error {
			return tx.Set([]any{fmt.Sprintf("k%d", i)}, string(bytes.Repeat([]byte{'x'}, 100*(i+1))))
		})
		require.NoError(t, err)
		inc, err := d.ChangesSince(before)
		require.NoError(t, err)
		sizes = append(sizes, len(inc))
	}
	all, err := d.ChangesSince(nil)
	require.NoError(t, err)

	whole, err := splitChunks(all, len(all))
	require.NoError(t, err)
	require.Len(t, whole, 1)

	parts, err := splitChunks(all, sizes[4]+sizes[3])
	require.NoError(t, err)
	require.Greater(t, len(parts), 1)
	var joined []byte
	for _, p := range parts {
		assert.LessOrEqual(t, len(p), sizes[4]+sizes[3])
		joined = append(joined, p...)
	}
	assert.Equal(t, all, joined)
	// Parts apply in order, each on its own.
	e, err := crdt.New("bb")
	require.NoError(t, err)
	for _, p := range parts {
		require.NoError(t, e.ApplyChanges(p))
	}
	assert.Equal(t, d.Heads(), e.Heads())

	_, err = splitChunks(all, sizes[4]-1)
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = splitChunks(append([]byte("junk"), all...), sizes[4]+sizes[3])
	require.ErrorIs(t, err, ErrPublish)
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no url":      {Store: store.NewMemStore()},
		"no store":    {URL: "nats://127.0.0.1:1"},
		"bad stream":  {URL: "nats://127.0.0.1:1", Store: store.NewMemStore(), Stream: "a.b"},
		"bad prefix":  {URL: "nats://127.0.0.1:1", Store: store.NewMemStore(), SubjectPrefix: "docs"},
		"replicas":    {URL: "nats://127.0.0.1:1", Store: store.NewMemStore(), Replicas: 7},
		"cert no key": {URL: "nats://127.0.0.1:1", Store: store.NewMemStore(), TLSCert: "c.pem"},
	} {
		_, err := Open(context.Background(), cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
	assert.Equal(t, "nats://***@h:1,nats://h2:2", redact("nats://u:p@h:1,nats://h2:2"))
}

// publishDocs publishes n new one-change documents through c, from a few
// goroutines, and returns their ids.
func publishDocs(t testing.TB, c *Cluster, n int) []string {
	ids := make([]string, n)
	data := make([][]byte, n)
	for i := range n {
		ids[i] = newDocID(t)
		d, err := crdt.New("aa")
		require.NoError(t, err)
		_, err = d.Change(time.Unix(0, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"i"}, int64(i)) })
		require.NoError(t, err)
		data[i] = d.Save()
	}
	const workers = 16
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < n; i += workers {
				if err := c.Publish(context.Background(), ids[i], data[i]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	return ids
}

// Catching up on many documents costs one consumer for the relay and no
// goroutine, actor or loaded replica per document.
func TestCatchUpCostsNothingPerDocument(t *testing.T) {
	ns := natstest.Start(t)
	src := startNode(t, ns.ClientURL(), store.NewMemStore())
	src.waitReady(t)
	ids := publishDocs(t, src.cl, 2000)

	before := runtime.NumGoroutine()
	c := startNode(t, ns.ClientURL(), store.NewMemStore())
	c.waitReady(t)
	require.Eventually(t, func() bool { return c.eng.Stats().DocsActive == 0 }, 10*time.Second, 5*time.Millisecond,
		"document actors end once their input is stored")
	st := c.eng.Stats()
	assert.Zero(t, st.DocsLoaded)
	assert.Zero(t, st.DocLoads)
	assert.Equal(t, int64(2000), st.RemoteStored)
	assert.Less(t, runtime.NumGoroutine(), before+60, "no goroutine per document")

	info, err := src.cl.stream.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 2, info.State.Consumers, "one consumer per relay, whatever the number of documents")
	assert.Equal(t, map[string]any{"i": int64(1234)}, c.value(t, ids[1234]))
}
