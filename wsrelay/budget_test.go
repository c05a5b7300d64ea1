package wsrelay

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/engine/wire"
)

func admits(f *inflight) bool {
	f.b.mu.Lock()
	defer f.b.mu.Unlock()
	return f.admit()
}

// testBudget is a budget whose pauses are counted.
func testBudget(perConn, total int64) *budget {
	return newBudget(perConn, total, &metrics{readPauses: prometheus.NewCounter(prometheus.CounterOpts{Name: "pauses"})})
}

func pauses(t *testing.T, b *budget) int {
	var m dto.Metric
	require.NoError(t, b.m.readPauses.Write(&m))
	return int(m.GetCounter().GetValue())
}

// waitAsync runs f.wait on a goroutine, and returns once it waits (it has
// counted its pause: the release it waits for will wake it). The channel
// yields wait's ok.
func waitAsync(t *testing.T, f *inflight, quit <-chan struct{}) <-chan bool {
	t.Helper()
	before := pauses(t, f.b)
	res := make(chan bool, 1)
	go func() {
		_, ok := f.wait(quit)
		res <- ok
	}()
	waitFor(t, 10*time.Second, func() bool { return pauses(t, f.b) > before }, "wait did not pause")
	return res
}

func receive(t *testing.T, c <-chan bool) bool {
	t.Helper()
	select {
	case ok := <-c:
		return ok
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return")
		return false
	}
}

func TestBudgetPerConnection(t *testing.T) {
	b := testBudget(100, 1000)
	a := b.open()
	require.True(t, admits(a))
	r1 := a.take(60)
	require.True(t, admits(a), "60 of 100 in flight")
	r2 := a.take(60)
	assert.False(t, admits(a), "120 of 100 in flight: the next frame waits")
	assert.Equal(t, int64(120), b.inFlight())

	res := waitAsync(t, a, nil)
	r1()
	assert.True(t, receive(t, res), "released below the budget: reading resumes")
	r1() // a second call changes nothing
	assert.Equal(t, int64(60), a.inFlight())
	r2()
	assert.Zero(t, b.inFlight())

	// A frame larger than the whole budget is read when nothing else is
	// in flight.
	big := a.take(5000)
	assert.False(t, admits(a))
	big()
	assert.True(t, admits(a))
}

func TestBudgetGlobalDoesNotStarveOthers(t *testing.T) {
	b := testBudget(100, 150)
	hog, other := b.open(), b.open()
	hog.take(90)
	hog.take(90) // the hog is paused by its own budget, and the global one is spent
	assert.False(t, admits(hog))
	assert.True(t, admits(other), "a connection with nothing in flight reads one frame")
	release := other.take(10)
	assert.False(t, admits(other), "past the global budget: one frame at a time")

	res := waitAsync(t, other, nil)
	release()
	assert.True(t, receive(t, res))
}

func TestBudgetGlobalRoomWakesWaiters(t *testing.T) {
	b := testBudget(100, 100)
	x, y := b.open(), b.open()
	rx := x.take(60)
	y.take(50) // 110 of 100: y waits for global room, not for its own frame
	assert.False(t, admits(y))
	res := waitAsync(t, y, nil)
	rx()
	assert.True(t, receive(t, res), "another connection's release makes room")
}

func TestBudgetWaitEndsOnClose(t *testing.T) {
	b := testBudget(100, 100)
	x := b.open()
	x.take(200)
	y := b.open()
	y.take(10)
	quitX, quitY := make(chan struct{}), make(chan struct{})
	resX, resY := waitAsync(t, x, quitX), waitAsync(t, y, quitY)
	close(quitX)
	close(quitY)
	assert.False(t, receive(t, resX))
	assert.False(t, receive(t, resY))
	b.mu.Lock()
	assert.Empty(t, b.waiting, "a closed connection waits for nothing")
	b.mu.Unlock()
}

// gatedRelay is a server whose engine holds the first sync message it
// sees in CheckSync until open is called: that message's document task
// stays busy, and what is queued behind it stays unprocessed.
type gatedRelay struct {
	*fixture
	gate    chan struct{}
	release sync.Once
	held    atomic.Bool // the first sync message is held
}

func newGatedRelay(t *testing.T, mut func(*Config)) *gatedRelay {
	g := &gatedRelay{gate: make(chan struct{})}
	st, err := badgerstore.Open(badgerstore.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	var first atomic.Bool
	eng, err := engine.New(engine.Config{Store: st, PeerID: "relay", CheckSync: func([]byte) error {
		if first.CompareAndSwap(false, true) {
			g.held.Store(true)
			<-g.gate
		}
		return nil
	}})
	require.NoError(t, err)
	cfg := Config{Engine: eng, PingInterval: time.Second, PongTimeout: 2 * time.Second}
	if mut != nil {
		mut(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	g.fixture = serve(t, srv, eng, st)
	t.Cleanup(g.open) // before the fixture's cleanup: the engine waits for its tasks
	return g
}

func (g *gatedRelay) open() { g.release.Do(func() { close(g.gate) }) }

func (g *gatedRelay) pauses() float64 {
	return metricValue(g.t, g.srv.metrics.reg, "amsync_read_pauses_total")
}

// metricValue is the value of the unlabelled gauge or counter name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func ephemeral(id string, count, size int) wire.Message {
	return wire.Message{Type: wire.TypeEphemeral, SenderID: id, TargetID: "relay", DocumentID: docID, SessionID: "s", Count: uint64(count), Data: make([]byte, size)}
}

func frameLen(t *testing.T, m wire.Message) int64 {
	f, err := wire.Encode(m)
	require.NoError(t, err)
	return int64(len(f))
}

// fill joins a client, has the relay hold its request for docID in
// CheckSync, then pipelines n ephemeral messages of size bytes on docID
// from a goroutine (they queue behind the request). It returns the client
// and the frames' sizes.
func (g *gatedRelay) fill(id string, n, size int) (c *wsClient, request, eph int64) {
	t := g.t
	c, _, err := g.dial("/", nil)
	require.NoError(t, err)
	c.join(id)
	req := wire.Message{Type: wire.TypeRequest, SenderID: id, TargetID: "relay", DocumentID: docID, Data: []byte(emptyRequest)}
	c.write(req)
	waitFor(t, 10*time.Second, g.held.Load, "the request did not reach CheckSync")
	go func() {
		for i := range n {
			f, _ := wire.Encode(ephemeral(id, i+1, size))
			if c.ws.WriteMessage(websocket.BinaryMessage, f) != nil {
				return // the connection was closed
			}
		}
	}()
	return c, frameLen(t, req), frameLen(t, ephemeral(id, 1, size))
}

func TestReadsPauseUntilFramesAreProcessed(t *testing.T) {
	const budget, size, n = 64 << 10, 16 << 10, 20
	g := newGatedRelay(t, func(c *Config) { c.MaxInflightBytesPerConnection = budget })
	framesBefore := g.eng.Stats().FramesIn
	_, req, eph := g.fill("pipeliner", n, size)

	// The relay reads while less than the budget is in flight, then stops.
	waitFor(t, 10*time.Second, func() bool { return g.pauses() >= 1 }, "reads never paused")
	read := 0
	for held := req; held < budget; held += eph {
		read++
	}
	assert.Equal(t, framesBefore+int64(2+read), g.eng.Stats().FramesIn, "join, the request and the ephemeral messages under the budget")
	assert.Equal(t, req+int64(read)*eph, g.srv.budget.inFlight())
	assert.Equal(t, float64(req+int64(read)*eph), metricValue(t, g.srv.metrics.reg, "amsync_inflight_bytes"))

	// Processed: reading resumes, and everything is read and released.
	g.open()
	waitFor(t, 10*time.Second, func() bool {
		return g.eng.Stats().FramesIn == framesBefore+2+n && g.srv.budget.inFlight() == 0
	}, "the pipeline was not read to the end")
}

func TestPausedConnectionClosesAndReleasesLater(t *testing.T) {
	g := newGatedRelay(t, func(c *Config) { c.MaxInflightBytesPerConnection = 64 << 10 })
	g.fill("pipeliner", 20, 16<<10)
	waitFor(t, 10*time.Second, func() bool { return g.pauses() >= 1 }, "reads never paused")

	// Closing the connection ends its paused read pump: the handler
	// returns although its frames are still queued.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, g.srv.Shutdown(ctx))
	assert.Zero(t, g.srv.Connections())
	assert.Positive(t, g.srv.budget.inFlight(), "the frames are still held by the engine")

	g.open()
	waitFor(t, 10*time.Second, func() bool { return g.srv.budget.inFlight() == 0 }, "frames of a closed connection not released once processed")
}

func TestSpentGlobalBudgetDoesNotStallOthers(t *testing.T) {
	const budget = 128 << 10
	g := newGatedRelay(t, func(c *Config) {
		c.MaxInflightBytesPerConnection, c.MaxInflightBytes = budget, budget
	})
	g.fill("hog", 40, 16<<10)
	waitFor(t, 10*time.Second, func() bool { return g.pauses() >= 1 }, "the hog was never paused")
	require.GreaterOrEqual(t, g.srv.budget.inFlight(), int64(budget), "the global budget is spent")

	// Another client is served while the hog's frames are stuck: one
	// frame at a time, each answered.
	c, _, err := g.dial("/", nil)
	require.NoError(t, err)
	c.join("other")
	const other = "2VuWtLDAKHGMJ2xNrtkQoNTBRQAB"
	for range 5 {
		c.write(wire.Message{Type: wire.TypeRequest, SenderID: "other", TargetID: "relay", DocumentID: other, Data: []byte(emptyRequest)})
		m, err := c.read()
		require.NoError(t, err)
		require.Equal(t, wire.TypeDocUnavailable, m.Type)
	}
	// Pipelined, too: each frame waits for the one before.
	for range 3 {
		c.write(wire.Message{Type: wire.TypeEphemeral, SenderID: "other", TargetID: "relay", DocumentID: other, SessionID: "o", Count: 1, Data: make([]byte, 64<<10)})
	}
	c.write(wire.Message{Type: wire.TypeRequest, SenderID: "other", TargetID: "relay", DocumentID: other, Data: []byte(emptyRequest)})
	m, err := c.read()
	require.NoError(t, err)
	require.Equal(t, wire.TypeDocUnavailable, m.Type)
	assert.True(t, g.held.Load())
	select {
	case <-g.gate:
		t.Fatal("the hog's document was released: the test proves nothing")
	default:
	}
}

func TestInflightConfig(t *testing.T) {
	st, err := badgerstore.Open(badgerstore.Config{InMemory: true})
	require.NoError(t, err)
	defer st.Close()
	eng, err := engine.New(engine.Config{Store: st})
	require.NoError(t, err)
	s, err := New(Config{Engine: eng})
	require.NoError(t, err)
	assert.Equal(t, int64(16<<20), s.cfg.MaxInflightBytesPerConnection)
	assert.Equal(t, int64(256<<20), s.cfg.MaxInflightBytes)
	_, err = New(Config{Engine: eng, MaxInflightBytesPerConnection: 1 << 30, MaxInflightBytes: 1 << 20})
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{Engine: eng, MaxInflightBytes: -1})
	require.ErrorIs(t, err, ErrConfig)
}
