package wsrelay

import (
	"encoding/binary"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine"
)

func TestFrameRing(t *testing.T) {
	var r frameRing
	next, want := 0, 0
	push := func(k int) {
		for range k {
			r.push([]byte{byte(next)})
			next++
		}
	}
	pop := func(k int) {
		for range k {
			f, ok := r.pop()
			require.True(t, ok)
			require.Equal(t, []byte{byte(want)}, f, "first in, first out")
			want++
		}
	}
	push(3)
	pop(2)
	push(7) // wraps, then grows
	pop(5)
	push(40)
	assert.Equal(t, 43, r.n)
	pop(43)
	_, ok := r.pop()
	assert.False(t, ok)
	assert.Nil(t, r.buf, "a drained burst's storage is let go")

	push(3)
	pop(3)
	assert.NotNil(t, r.buf, "a small ring is kept for the next frames")
	assert.LessOrEqual(t, len(r.buf), keepSlots)
}

// queueOnly is a conn whose writer is held: what is sent stays queued.
func queueOnly(frames int, bytes int64) *conn {
	c := newConn(&Config{SendQueueFrames: frames, SendQueueBytes: bytes}, nil, nil)
	c.writing = true
	return c
}

func TestSendQueueBounds(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		c := queueOnly(100, 1000)
		require.NoError(t, c.Send(make([]byte, 1500)), "a frame past the byte bound is queued when the queue is empty")
		err := c.Send(make([]byte, 1))
		require.ErrorIs(t, err, ErrSendQueueFull)
		assert.Equal(t, engine.ClosePolicyViolation, c.closeCode)
		assert.Equal(t, "send queue full: peer reads too slowly", c.closeMsg)
		require.ErrorIs(t, c.Send([]byte{1}), ErrConnClosed)
		assert.Equal(t, 1, c.queue.n)
		assert.Equal(t, int64(1500), c.queued)
	})
	t.Run("frames", func(t *testing.T) {
		c := queueOnly(3, 1000)
		for range 3 {
			require.NoError(t, c.Send([]byte{1}))
		}
		require.ErrorIs(t, c.Send([]byte{1}), ErrSendQueueFull)
		assert.Equal(t, engine.ClosePolicyViolation, c.closeCode)
	})
	t.Run("grows on demand", func(t *testing.T) {
		c := queueOnly(4096, 64<<20)
		assert.Nil(t, c.queue.buf, "nothing allocated for an idle connection")
		for range 4096 {
			require.NoError(t, c.Send([]byte{1}))
		}
		assert.Equal(t, 4096, c.queue.n)
		require.ErrorIs(t, c.Send([]byte{1}), ErrSendQueueFull)
	})
}

// connPair serves one conn with cfg on a loopback WebSocket and returns it
// with the client's socket. Send does not block and the client reads only
// when the test says: frames sent in a loop pile up in the queue.
func connPair(t *testing.T, cfg *Config) (*conn, *websocket.Conn) {
	cfg.Logger = slog.New(slog.DiscardHandler)
	served := make(chan *conn, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{WriteBufferSize: 16 << 10, WriteBufferPool: &sync.Pool{}}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := newConn(cfg, nil, ws)
		c.start()
		served <- c
		<-c.done
	}))
	t.Cleanup(ts.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	select {
	case c := <-served:
		return c, ws
	case <-time.After(10 * time.Second):
		t.Fatal("no connection")
		return nil, nil
	}
}

// numbered is a frame of size bytes starting with i.
func numbered(i, size int) []byte {
	f := make([]byte, size)
	binary.BigEndian.PutUint32(f, uint32(i))
	return f
}

// readAll reads frames until the close frame; it returns their numbers
// and the close.
func readAll(t *testing.T, ws *websocket.Conn) ([]int, *websocket.CloseError) {
	var got []int
	for {
		ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, f, err := ws.ReadMessage()
		if err != nil {
			ce, ok := err.(*websocket.CloseError)
			require.True(t, ok, "ended with %v, not a close frame", err)
			return got, ce
		}
		got = append(got, int(binary.BigEndian.Uint32(f)))
	}
}

func TestQueuedFramesGoOutBeforeTheCloseFrame(t *testing.T) {
	c, ws := connPair(t, &Config{SendQueueFrames: 4096, SendQueueBytes: 1 << 30, WriteTimeout: 30 * time.Second, PingInterval: time.Minute})
	const n = 64
	for i := range n {
		require.NoError(t, c.Send(numbered(i, 256<<10)))
	}
	c.Close(engine.ClosePolicyViolation, "bye")
	require.ErrorIs(t, c.Send(numbered(n, 16)), ErrConnClosed)
	got, ce := readAll(t, ws)
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, got, "every queued frame, in order, then the close")
	assert.Equal(t, engine.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "bye", ce.Text)
	<-c.done
}

func TestSlowReaderClosedAfterWhatWasQueued(t *testing.T) {
	c, ws := connPair(t, &Config{SendQueueFrames: 8, SendQueueBytes: 1 << 30, WriteTimeout: 30 * time.Second, PingInterval: time.Minute})
	accepted := 0
	for ; accepted < 10000; accepted++ {
		if err := c.Send(numbered(accepted, 64<<10)); err != nil {
			require.ErrorIs(t, err, ErrSendQueueFull)
			break
		}
	}
	require.Less(t, accepted, 10000, "the queue never filled")
	got, ce := readAll(t, ws)
	assert.Len(t, got, accepted, "every frame accepted before the queue filled is delivered")
	assert.Equal(t, engine.ClosePolicyViolation, ce.Code)
	assert.Equal(t, "send queue full: peer reads too slowly", ce.Text)
}

func TestIdleConnectionHoldsNoQueueOrWriter(t *testing.T) {
	c, ws := connPair(t, &Config{SendQueueFrames: 4096, SendQueueBytes: 64 << 20, WriteTimeout: 10 * time.Second, PingInterval: time.Minute})
	for i := range 100 {
		require.NoError(t, c.Send(numbered(i, 16)))
	}
	for i := range 100 {
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, f, err := ws.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, i, int(binary.BigEndian.Uint32(f)))
	}
	// The writer ends once the queue is drained, and the queue keeps at
	// most a few slots (a burst's storage is let go: TestFrameRing).
	waitFor(t, 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !c.writing
	}, "the writer did not end")
	c.mu.Lock()
	assert.LessOrEqual(t, len(c.queue.buf), keepSlots)
	assert.Zero(t, c.queue.n)
	assert.Zero(t, c.queued)
	c.mu.Unlock()
}
