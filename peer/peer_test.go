package peer

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/wsrelay"
)

// relay is a real relay on a loopback port that can be stopped and
// started again on the same port and directory.
type relay struct {
	t    *testing.T
	dir  string
	addr string
	st   *badgerstore.Store
	eng  *engine.Engine
	srv  *wsrelay.Server
	http *http.Server
}

func startRelay(t *testing.T, dir, addr string) *relay {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	st, err := badgerstore.Open(badgerstore.Config{Dir: dir})
	require.NoError(t, err)
	eng, err := engine.New(engine.Config{Store: st, PeerID: "relay"})
	require.NoError(t, err)
	srv, err := wsrelay.New(wsrelay.Config{Engine: eng})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	r := &relay{t: t, dir: dir, addr: ln.Addr().String(), st: st, eng: eng, srv: srv, http: &http.Server{Handler: srv}}
	go r.http.Serve(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *relay) url() string { return "ws://" + r.addr }

func (r *relay) stop() {
	if r.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.http.Close()
	r.srv.Shutdown(ctx)
	r.eng.Close(ctx)
	r.st.Close()
	r.http = nil
}

func newPeer(t *testing.T, url string, seed uint64) *Peer {
	p, err := Open(Config{URL: url, Dir: t.TempDir(), Seed: seed, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func value(t *testing.T, p *Peer, id string) map[string]any {
	var v map[string]any
	require.NoError(t, p.Read(ctxT(t), id, func(d *crdt.Doc) error {
		var err error
		v, err = d.Value()
		return err
	}))
	return v
}

func setField(t *testing.T, p *Peer, id, k string, v any) {
	_, err := p.Change(ctxT(t), id, func(tx *crdt.Tx) error { return tx.Set([]any{k}, v) })
	require.NoError(t, err)
}

// waitFor polls cond until it holds or the deadline passes.
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

func TestOfflineThenSync(t *testing.T) {
	// The relay is down when the peer starts: the peer works offline.
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	a := newPeer(t, "ws://"+addr, 1)
	id, err := a.Create(ctxT(t), func(tx *crdt.Tx) error { return tx.Set([]any{"title"}, "written offline") })
	require.NoError(t, err)
	assert.Equal(t, []string{id}, a.Pending())
	assert.False(t, a.Status().Online)
	waitFor(t, 5*time.Second, func() bool { return a.Status().Attempts >= 2 }, "the peer keeps redialling")

	startRelay(t, dir, addr)
	require.NoError(t, a.WaitSynced(ctxT(t)))
	assert.Empty(t, a.Pending())

	b := newPeer(t, "ws://"+addr, 2)
	require.NoError(t, b.Find(ctxT(t), id))
	assert.Equal(t, map[string]any{"title": "written offline"}, value(t, b, id))
}

func TestLiveChangesReachSubscribers(t *testing.T) {
	r := startRelay(t, t.TempDir(), "")
	a, b := newPeer(t, r.url(), 3), newPeer(t, r.url(), 4)
	id, err := a.Create(ctxT(t), func(tx *crdt.Tx) error { return tx.Set([]any{"n"}, int64(0)) })
	require.NoError(t, err)
	require.NoError(t, a.WaitSynced(ctxT(t)))
	require.NoError(t, b.Find(ctxT(t), id))

	var mu sync.Mutex
	var seen []Change
	b.Subscribe(func(c Change) {
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
	})
	setField(t, a, id, "n", int64(1))
	waitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0
	}, "b heard of a's change")
	mu.Lock()
	assert.Equal(t, id, seen[0].DocID)
	assert.False(t, seen[0].Local)
	mu.Unlock()
	assert.Equal(t, map[string]any{"n": int64(1)}, value(t, b, id))
}

func TestConcurrentOfflineEditsMergeAfterRelayRestart(t *testing.T) {
	dir := t.TempDir()
	r := startRelay(t, dir, "")
	addr := r.addr
	a, b := newPeer(t, r.url(), 5), newPeer(t, r.url(), 6)
	id, err := a.Create(ctxT(t), func(tx *crdt.Tx) error { return tx.Set([]any{"base"}, "x") })
	require.NoError(t, err)
	require.NoError(t, a.WaitSynced(ctxT(t)))
	require.NoError(t, b.Find(ctxT(t), id))

	r.stop()
	waitFor(t, 10*time.Second, func() bool { return !a.Status().Online && !b.Status().Online }, "peers notice the relay is gone")
	setField(t, a, id, "fromA", "1")
	setField(t, b, id, "fromB", "2")
	setField(t, a, id, "same", "a")
	setField(t, b, id, "same", "b")
	assert.Equal(t, []string{id}, a.Pending())

	startRelay(t, dir, addr)
	require.NoError(t, a.WaitSynced(ctxT(t)))
	require.NoError(t, b.WaitSynced(ctxT(t)))
	waitFor(t, 10*time.Second, func() bool {
		return len(value(t, a, id)) == 4 && len(value(t, b, id)) == 4
	}, "both see every key")
	va, vb := value(t, a, id), value(t, b, id)
	assert.Equal(t, va, vb)
	assert.Equal(t, "x", va["base"])
	assert.Equal(t, "1", va["fromA"])
	assert.Equal(t, "2", va["fromB"])
	assert.Contains(t, []any{"a", "b"}, va["same"])
}

func TestBackoffBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := 100*time.Millisecond, 2*time.Second
	for n := 1; n < 20; n++ {
		for range 50 {
			d := backoff(rng, n, lo, hi)
			require.GreaterOrEqual(t, d, lo)
			require.LessOrEqual(t, d, hi)
			ceil := lo << (n - 1)
			if ceil > 0 && ceil < hi {
				require.LessOrEqual(t, d, ceil)
			}
		}
	}
}
