package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
)

// world is a deterministic set of engines joined by queued in-memory links.
type world struct {
	t       *testing.T
	engines []*harness
	links   []*link
}

type link struct {
	from, to *harness
	sess     *Session // the receiving side's session
	queue    [][]byte
	closed   bool
	peer     *link
}

func (l *link) Send(frame []byte) error {
	if l.closed {
		return ErrSessionClosed
	}
	l.queue = append(l.queue, frame)
	return nil
}

func (l *link) Close(int, string) {
	if l.closed {
		return
	}
	l.closed = true
	l.peer.closed = true
	l.peer.sess.Closed()
	l.sess.Closed()
}

// dial connects client to server: the client's engine Connects, the
// server's Opens.
func (w *world) dial(client, server *harness) (*link, *link) {
	up := &link{from: client, to: server}   // frames client -> server
	down := &link{from: server, to: client} // frames server -> client
	up.peer, down.peer = down, up
	// Sessions send on the link towards their remote.
	up.sess = server.eng.Open(down)
	down.sess = client.eng.Connect(up)
	w.links = append(w.links, up, down)
	return up, down
}

// run delivers frames and runs tasks until nothing moves.
func (w *world) run() {
	for i := 0; i < 1000; i++ {
		moved := false
		for _, h := range w.engines {
			if h.queued() > 0 {
				h.drain()
				moved = true
			}
		}
		for _, l := range w.links {
			for len(l.queue) > 0 && !l.closed {
				f := l.queue[0]
				l.queue = l.queue[1:]
				l.sess.HandleFrame(f)
				moved = true
			}
		}
		if !moved {
			return
		}
	}
	w.t.Fatal("world did not settle")
}

func newWorld(t *testing.T, n int, mut func(i int, c *Config)) *world {
	w := &world{t: t}
	for i := range n {
		h := &harness{t: t, now: time.Unix(1700000000, 0), log: &[]string{}}
		h.st = &recordingStore{Store: store.NewMemStore(), h: h}
		cfg := Config{
			Store:  h.st,
			PeerID: []string{"server", "c1", "c2", "c3"}[i],
			Rand:   newRand(uint64(i + 10)),
			Now:    func() time.Time { return h.now },
			Go: func(f func()) {
				h.mu.Lock()
				h.tasks = append(h.tasks, f)
				h.mu.Unlock()
			},
		}
		if mut != nil {
			mut(i, &cfg)
		}
		eng, err := New(cfg)
		require.NoError(t, err)
		h.eng = eng
		w.engines = append(w.engines, h)
	}
	return w
}

// call runs an embedding API call that blocks until the engine's tasks run.
func (w *world) call(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			return err
		default:
		}
		require.True(w.t, time.Now().Before(deadline), "call did not return")
		w.run()
	}
}

func readValue(t *testing.T, w *world, h *harness, id string) map[string]any {
	var v map[string]any
	require.NoError(t, w.call(func() error {
		return h.eng.Read(context.Background(), id, func(d *crdt.Doc) error {
			var err error
			v, err = d.Value()
			return err
		})
	}))
	return v
}

func TestClientEngineSyncsThroughServerEngine(t *testing.T) {
	w := newWorld(t, 3, func(i int, c *Config) { c.TrackPending = i > 0 })
	srv, c1, c2 := w.engines[0], w.engines[1], w.engines[2]
	ctx := context.Background()

	// c1 creates a document while offline: it is pending.
	var id string
	require.NoError(t, w.call(func() (err error) {
		id, err = c1.eng.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"title"}, "offline") })
		return err
	}))
	assert.Equal(t, []string{id}, c1.eng.Pending())
	assert.False(t, c1.eng.Online())

	// Online: the document is announced, pushed, acknowledged.
	w.dial(c1, srv)
	w.run()
	assert.True(t, c1.eng.Online())
	assert.Empty(t, c1.eng.Pending(), "the server acknowledged")
	require.NoError(t, w.call(func() error { return c1.eng.WaitSynced(ctx) }))
	assert.Equal(t, map[string]any{"title": "offline"}, readValue(t, w, srv, id))

	// c2 finds it through the server.
	w.dial(c2, srv)
	w.run()
	require.NoError(t, w.call(func() error { return c2.eng.Find(ctx, id) }))
	assert.Equal(t, map[string]any{"title": "offline"}, readValue(t, w, c2, id))

	// A change on c2 reaches c1 live.
	require.NoError(t, w.call(func() error {
		_, err := c2.eng.Change(ctx, id, func(tx *crdt.Tx) error { return tx.Set([]any{"done"}, true) })
		return err
	}))
	w.run()
	assert.Equal(t, map[string]any{"title": "offline", "done": true}, readValue(t, w, c1, id))
	assert.Empty(t, c2.eng.Pending())

	// An unknown document is unavailable at once.
	unknown := newDocID(t, 99)
	err := w.call(func() error { return c2.eng.Find(ctx, unknown) })
	require.ErrorIs(t, err, ErrUnavailable)
}

func TestPendingSurvivesRestart(t *testing.T) {
	w := newWorld(t, 2, func(i int, c *Config) { c.TrackPending = i > 0 })
	c1 := w.engines[1]
	ctx := context.Background()
	var id string
	require.NoError(t, w.call(func() (err error) {
		id, err = c1.eng.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"x"}, int64(1)) })
		return err
	}))
	// Restart the client on the same store: still pending.
	eng, err := New(Config{Store: c1.st, PeerID: "c1", TrackPending: true, Rand: newRand(77), Go: c1.eng.cfg.Go, Now: c1.eng.cfg.Now})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, eng.Pending())
	c1.eng = eng
	w.dial(c1, w.engines[0])
	w.run()
	assert.Empty(t, eng.Pending())
	chunks, err := c1.st.LoadRange(ctx, store.Key{pendingPrefix})
	require.NoError(t, err)
	assert.Empty(t, chunks, "the mark is removed once acknowledged")
}
