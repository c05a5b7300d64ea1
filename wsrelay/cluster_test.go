package wsrelay_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/cluster"
	"github.com/amsync/amsync/engine/cluster/natstest"
	"github.com/amsync/amsync/peer"
	"github.com/amsync/amsync/wsrelay"
)

// clusterRelay is one relay of a test cluster, served on loopback.
type clusterRelay struct {
	r   *wsrelay.Relay
	ts  *httptest.Server
	ln  *trackingListener
	url string
}

// trackingListener remembers every connection it accepted, so that a
// test can cut them all (httptest forgets hijacked WebSocket connections).
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) cut() {
	l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// startClusterRelay opens a relay on its own Badger directory, joined to
// the stream of the NATS server at natsURL, and waits until it is ready.
func startClusterRelay(t testing.TB, natsURL, dir, name string) *clusterRelay {
	t.Helper()
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{
		Dir:       dir,
		Logger:    quiet,
		Isolation: wsrelay.IsolationNone,
		Engine:    engine.Config{PeerID: "storage-server-" + name},
		Cluster:   &cluster.Config{URL: natsURL, Name: name, FlushInterval: 50 * time.Millisecond, PublishTimeout: 2 * time.Second},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, r.WaitReady(ctx))
	ts := httptest.NewUnstartedServer(r.Handler())
	ln := &trackingListener{Listener: ts.Listener}
	ts.Listener = ln
	ts.Start()
	cr := &clusterRelay{r: r, ts: ts, ln: ln, url: "ws" + strings.TrimPrefix(ts.URL, "http")}
	t.Cleanup(func() { cr.shutdown(t) })
	return cr
}

func (cr *clusterRelay) shutdown(t testing.TB) {
	if cr.ts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cr.ts.CloseClientConnections()
	cr.ts.Close()
	cr.ts = nil
	assert.NoError(t, cr.r.Shutdown(ctx))
}

// kill drops the relay at once: its listener and every TCP connection
// close with no goodbye, as when the process dies. (The rest is torn down
// when the test ends; nothing is read from it again.)
func (cr *clusterRelay) kill() { cr.ln.cut() }

func openPeer(t testing.TB, urls ...string) *peer.Peer {
	t.Helper()
	p, err := peer.Open(peer.Config{URL: urls[0], URLs: urls[1:], Logger: quiet,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func valueOf(t testing.TB, p *peer.Peer, doc string) map[string]any {
	var v map[string]any
	err := p.Read(context.Background(), doc, func(d *crdt.Doc) error {
		var err error
		v, err = d.Value()
		return err
	})
	if err != nil {
		return nil
	}
	return v
}

func headsOf(t testing.TB, p *peer.Peer, doc string) crdt.Heads {
	var h crdt.Heads
	_ = p.Read(context.Background(), doc, func(d *crdt.Doc) error { h = d.Heads(); return nil })
	return h
}

func TestClusterClientsOnDifferentRelaysConverge(t *testing.T) {
	ns := natstest.Start(t)
	relays := make([]*clusterRelay, 3)
	peers := make([]*peer.Peer, 3)
	for i := range relays {
		relays[i] = startClusterRelay(t, ns.ClientURL(), t.TempDir(), fmt.Sprintf("r%d", i))
		peers[i] = openPeer(t, relays[i].url)
	}
	doc, err := peers[0].Create(ctxT(t, 10*time.Second), func(tx *crdt.Tx) error { return tx.Set([]any{"title"}, "shared") })
	require.NoError(t, err)
	require.NoError(t, peers[0].WaitSynced(ctxT(t, 10*time.Second)))
	// The document was created on relay 0; the others serve it.
	for _, p := range peers[1:] {
		require.NoError(t, p.Find(ctxT(t, 10*time.Second), doc))
		assert.Equal(t, "shared", valueOf(t, p, doc)["title"])
	}
	// Everyone edits at once, each through its own relay.
	for i, p := range peers {
		for j := range 5 {
			_, err := p.Change(ctxT(t, 10*time.Second), doc, func(tx *crdt.Tx) error {
				return tx.Set([]any{fmt.Sprintf("p%d-%d", i, j)}, int64(j))
			})
			require.NoError(t, err)
		}
	}
	for _, p := range peers {
		require.NoError(t, p.WaitSynced(ctxT(t, 10*time.Second)))
	}
	require.Eventually(t, func() bool {
		h := headsOf(t, peers[0], doc)
		return len(valueOf(t, peers[0], doc)) == 16 && h.Equal(headsOf(t, peers[1], doc)) && h.Equal(headsOf(t, peers[2], doc))
	}, 20*time.Second, 10*time.Millisecond)
	assert.Equal(t, valueOf(t, peers[0], doc), valueOf(t, peers[2], doc))

	resp, err := http.Get(relays[1].ts.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// A relay dies mid-write: every change a client heard acknowledged is on
// the other relays and on a relay that starts empty afterwards; the
// client itself fails over to another relay and goes on.
func TestClusterRelayKilledMidWriteLosesNothingAcknowledged(t *testing.T) {
	ns := natstest.Start(t)
	r1 := startClusterRelay(t, ns.ClientURL(), t.TempDir(), "r1")
	r2 := startClusterRelay(t, ns.ClientURL(), t.TempDir(), "r2")
	writer := openPeer(t, r1.url, r2.url)
	doc, err := writer.Create(ctxT(t, 10*time.Second), func(tx *crdt.Tx) error { return tx.Set([]any{"k0"}, int64(0)) })
	require.NoError(t, err)

	// Write k1, k2, …; after each WaitSynced, every key written so far is
	// acknowledged.
	var acked atomic.Int64 // keys k0..k(acked-1) are acknowledged
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := writer.Change(ctx, doc, func(tx *crdt.Tx) error { return tx.Set([]any{fmt.Sprintf("k%d", i)}, i) })
			if err == nil {
				err = writer.WaitSynced(ctx)
			}
			cancel()
			if err != nil {
				writerDone <- err
				return
			}
			acked.Store(i + 1)
		}
	}()
	require.Eventually(t, func() bool { return acked.Load() >= 10 }, 20*time.Second, time.Millisecond)
	r1.kill()
	atKill := acked.Load()
	// The writer fails over to r2 and keeps being acknowledged.
	require.Eventually(t, func() bool { return acked.Load() >= atKill+10 }, 30*time.Second, time.Millisecond)
	close(stop)
	require.NoError(t, <-writerDone)
	final := acked.Load()
	assert.Positive(t, r2.r.Cluster.Stats().Published, "r2 acknowledged the writer's later changes")

	check := func(name string, p *peer.Peer) {
		require.NoError(t, p.Find(ctxT(t, 10*time.Second), doc), name)
		require.Eventually(t, func() bool { return len(valueOf(t, p, doc)) >= int(final) }, 10*time.Second, 5*time.Millisecond, name)
		v := valueOf(t, p, doc)
		for i := range final {
			assert.Equal(t, i, v[fmt.Sprintf("k%d", i)], "%s: acknowledged key k%d", name, i)
		}
	}
	check("reader on r2", openPeer(t, r2.url))
	r3 := startClusterRelay(t, ns.ClientURL(), t.TempDir(), "r3")
	check("reader on a new, empty r3", openPeer(t, r3.url))
}

func TestClusterNewEmptyRelayServesEveryDocument(t *testing.T) {
	ns := natstest.Start(t)
	relays := []*clusterRelay{
		startClusterRelay(t, ns.ClientURL(), t.TempDir(), "r1"),
		startClusterRelay(t, ns.ClientURL(), t.TempDir(), "r2"),
	}
	want := map[string]map[string]any{}
	for i := range 30 {
		p := openPeer(t, relays[i%2].url)
		doc, err := p.Create(ctxT(t, 10*time.Second), func(tx *crdt.Tx) error { return tx.Set([]any{"n"}, int64(i)) })
		require.NoError(t, err)
		_, err = p.Change(ctxT(t, 10*time.Second), doc, func(tx *crdt.Tx) error { return tx.Set([]any{"by"}, fmt.Sprintf("r%d", i%2+1)) })
		require.NoError(t, err)
		require.NoError(t, p.WaitSynced(ctxT(t, 10*time.Second)))
		want[doc] = map[string]any{"n": int64(i), "by": fmt.Sprintf("r%d", i%2+1)}
		require.NoError(t, p.Close())
	}
	// Started after every write was acknowledged, from an empty directory:
	// ready means caught up, so each document is served at once.
	r3 := startClusterRelay(t, ns.ClientURL(), t.TempDir(), "r3")
	reader := openPeer(t, r3.url)
	for doc, v := range want {
		require.NoError(t, reader.Find(ctxT(t, 10*time.Second), doc), doc)
		assert.Equal(t, v, valueOf(t, reader, doc), doc)
	}
	var n int
	require.NoError(t, r3.r.Store.Documents(context.Background(), func(string) bool { n++; return true }))
	assert.Equal(t, len(want), n, "its own store holds every document")
}
