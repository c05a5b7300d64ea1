package wsrelay

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/amsync/amsync/engine"
)

// ErrSendQueueFull is returned by Send when the peer does not read fast
// enough; the connection is closed.
var ErrSendQueueFull = errors.New("wsrelay: send queue full")

var errTextFrame = errors.New("text frame: the protocol sends one binary CBOR frame per message")

// ErrConnClosed is returned by Send after the connection closed.
var ErrConnClosed = errors.New("wsrelay: connection closed")

// conn adapts one gorilla WebSocket to engine.Conn: a read pump feeding the
// session, and a bounded send queue drained by a writer. gorilla allows one
// concurrent reader and one concurrent writer; the writer is the only one
// that writes data frames (pings and the close frame go through
// WriteControl, which may be called concurrently).
//
// An idle connection costs little: the queue is a ring that grows with
// what is queued (and is dropped when a burst has drained), the writer is a
// goroutine started when there is something to write and ended when there
// is not, pings come from a timer, and gorilla's write buffer is borrowed
// from a pool only while a frame is written.
type conn struct {
	cfg    *Config  // limits and timeouts
	m      *metrics // nil for client connections
	log    *slog.Logger
	ws     *websocket.Conn
	sess   *engine.Session
	budget *inflight // nil: reads are not bounded (client connections)

	mu        sync.Mutex
	queue     frameRing
	queued    int64 // bytes in queue, bounded by Config.SendQueueBytes
	writing   bool  // a writer goroutine runs
	closing   bool  // Close was called: the writer flushes, says goodbye and ends
	closeCode int
	closeMsg  string
	ping      *time.Timer

	quit chan struct{} // closed by Close
	done chan struct{} // closed when the writer has closed the socket
}

var _ engine.Conn = (*conn)(nil)

func newConn(cfg *Config, m *metrics, ws *websocket.Conn) *conn {
	return &conn{
		cfg:  cfg,
		m:    m,
		log:  cfg.Logger,
		ws:   ws,
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// start arms the ping timer.
func (c *conn) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.ping = time.AfterFunc(c.cfg.PingInterval, c.sendPing)
	}
}

// Send queues a frame without blocking.
func (c *conn) Send(frame []byte) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrConnClosed
	}
	if c.queue.n >= c.cfg.SendQueueFrames || (c.queued+int64(len(frame)) > c.cfg.SendQueueBytes && c.queue.n > 0) {
		c.mu.Unlock()
		c.m.count(func(m *metrics) { m.slowClosed.Inc() })
		c.Close(engine.ClosePolicyViolation, "send queue full: peer reads too slowly")
		return ErrSendQueueFull
	}
	c.queue.push(frame)
	c.queued += int64(len(frame))
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.write()
	}
	return nil
}

// Close asks the writer to send what is queued, then a close frame with
// code and reason, then to end the connection.
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeCode, c.closeMsg = code, reason
	close(c.quit)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.write()
	}
}

// write drains the queue; it ends when the queue is empty, or, once Close
// was called, after the close frame (then it closes the socket).
func (c *conn) write() {
	cfg := c.cfg
	for {
		c.mu.Lock()
		frame, ok := c.queue.pop()
		if !ok && !c.closing {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.queued -= int64(len(frame))
		c.mu.Unlock()
		if !ok {
			// Closing, and what was queued before (an error message,
			// typically) is flushed: say goodbye.
			msg := websocket.FormatCloseMessage(c.closeCode, c.closeMsg)
			c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(cfg.WriteTimeout))
			c.end()
			return
		}
		c.ws.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			c.Close(engine.CloseGoingAway, "write failed")
			c.end()
			return
		}
		c.m.count(func(m *metrics) { m.framesOut.Inc(); m.bytesOut.Add(float64(len(frame))) })
	}
}

// end closes the socket (the read pump then ends) and drops what is still
// queued. Only the writer calls it, once Close was called.
func (c *conn) end() {
	c.ws.Close()
	c.mu.Lock()
	c.queue = frameRing{}
	c.queued = 0
	if c.ping != nil {
		c.ping.Stop()
	}
	c.mu.Unlock()
	close(c.done)
}

// sendPing runs on the ping timer: it pings the peer (concurrently with
// the writer: gorilla allows that for control frames) and re-arms itself.
func (c *conn) sendPing() {
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)); err != nil {
		c.Close(engine.CloseGoingAway, "ping failed")
		return
	}
	c.mu.Lock()
	if !c.closing {
		c.ping.Reset(c.cfg.PingInterval)
	}
	c.mu.Unlock()
}

// frameRing is a FIFO of frames that grows on demand and lets go of its
// storage when a burst has drained.
type frameRing struct {
	buf     [][]byte
	head, n int
}

// keepSlots is the ring storage kept when the queue runs empty.
const keepSlots = 16

func (r *frameRing) push(f []byte) {
	if r.n == len(r.buf) {
		grown := make([][]byte, max(4, 2*len(r.buf)))
		for i := range r.n {
			grown[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = f
	r.n++
}

func (r *frameRing) pop() ([]byte, bool) {
	if r.n == 0 {
		return nil, false
	}
	f := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > keepSlots {
			r.buf = nil
		}
	}
	return f, true
}

// watch closes the connection when its principal's credentials expire or
// when no join arrives within JoinTimeout. It returns a function that
// stops the timers.
func (c *conn) watch(p *engine.Principal) (stop func()) {
	var timers []*time.Timer
	if p != nil && !p.Expires.IsZero() {
		timers = append(timers, time.AfterFunc(time.Until(p.Expires), func() {
			c.m.count(func(m *metrics) { m.errors.WithLabelValues("token_expired").Inc() })
			c.sess.Fail(engine.ClosePolicyViolation, errTokenExpired)
		}))
	}
	if c.cfg.JoinTimeout > 0 {
		timers = append(timers, time.AfterFunc(c.cfg.JoinTimeout, func() {
			if c.sess.PeerID() == "" {
				c.m.count(func(m *metrics) { m.errors.WithLabelValues("join_timeout").Inc() })
				c.sess.Fail(engine.ClosePolicyViolation, errJoinTimeout)
			}
		}))
	}
	return func() {
		for _, t := range timers {
			t.Stop()
		}
	}
}

var (
	errTokenExpired = errors.New("token expired: reconnect with a fresh token")
	errJoinTimeout  = errors.New("no join message in time")
)

// bucket is a token bucket limiting the frames a connection sends.
type bucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

// take waits until a token is available, then spends it.
func (b *bucket) take() {
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return
	}
	wait := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	t := time.NewTimer(wait)
	<-t.C
	b.tokens = 0
	b.last = time.Now()
}

// readPump feeds frames to the session until the connection ends.
func (c *conn) readPump() {
	cfg := c.cfg
	c.ws.SetReadLimit(cfg.MaxFrameBytes)
	c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongTimeout))
	c.ws.SetPongHandler(func(string) error {
		c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongTimeout))
		return nil
	})
	var limit *bucket
	if cfg.MessageRate > 0 {
		limit = &bucket{rate: cfg.MessageRate, burst: float64(cfg.MessageBurst), tokens: float64(cfg.MessageBurst), last: time.Now()}
	}
	for {
		if limit != nil {
			limit.take()
		}
		if c.budget != nil {
			// Read no more while what was read is not processed: the
			// peer's writes block once the socket buffers are full.
			paused, ok := c.budget.wait(c.quit)
			if !ok {
				return
			}
			if paused {
				// Pongs were not read meanwhile: the peer is not late.
				c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongTimeout))
			}
		}
		typ, frame, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.m.count(func(m *metrics) { m.errors.WithLabelValues("frame_too_large").Inc() })
				c.log.Warn("frame too large", "remote", c.ws.RemoteAddr().String(), "limit", cfg.MaxFrameBytes)
				c.Close(engine.CloseTooBig, "frame too large")
			} else {
				c.Close(engine.CloseGoingAway, "")
			}
			return
		}
		c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongTimeout))
		c.m.count(func(m *metrics) { m.framesIn.Inc(); m.bytesIn.Add(float64(len(frame))) })
		if typ != websocket.BinaryMessage {
			c.m.count(func(m *metrics) { m.errors.WithLabelValues("text_frame").Inc() })
			c.sess.Fail(engine.CloseUnsupportedData, errTextFrame)
			return
		}
		var done func()
		if c.budget != nil {
			done = c.budget.take(int64(len(frame)))
		}
		if err := c.sess.HandleFrameThen(frame, done); err != nil {
			c.m.count(func(m *metrics) { m.errors.WithLabelValues("protocol").Inc() })
			return
		}
	}
}
