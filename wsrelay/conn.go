package wsrelay

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
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
// session, and a write pump draining a bounded queue. gorilla allows one
// concurrent reader and one concurrent writer; the write pump is the only
// writer of data frames.
type conn struct {
	cfg  *Config  // limits and timeouts
	m    *metrics // nil for client connections
	log  *slog.Logger
	ws   *websocket.Conn
	sess *engine.Session

	queue chan []byte
	// queued bytes, bounded by Config.SendQueueBytes
	queuedBytes atomic.Int64

	closeOnce sync.Once
	quit      chan struct{} // closed by Close: the write pump flushes and ends
	closeCode int
	closeMsg  string
	done      chan struct{} // closed when the write pump has ended
}

var _ engine.Conn = (*conn)(nil)

func newConn(cfg *Config, m *metrics, ws *websocket.Conn) *conn {
	return &conn{
		cfg:   cfg,
		m:     m,
		log:   cfg.Logger,
		ws:    ws,
		queue: make(chan []byte, cfg.SendQueueFrames),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Send queues a frame without blocking.
func (c *conn) Send(frame []byte) error {
	select {
	case <-c.quit:
		return ErrConnClosed
	default:
	}
	if c.queuedBytes.Add(int64(len(frame))) > c.cfg.SendQueueBytes && len(c.queue) > 0 {
		c.queuedBytes.Add(-int64(len(frame)))
		c.m.count(func(m *metrics) { m.slowClosed.Inc() })
		c.Close(engine.ClosePolicyViolation, "send queue full: peer reads too slowly")
		return ErrSendQueueFull
	}
	select {
	case c.queue <- frame:
		return nil
	default:
		c.queuedBytes.Add(-int64(len(frame)))
		c.m.count(func(m *metrics) { m.slowClosed.Inc() })
		c.Close(engine.ClosePolicyViolation, "send queue full: peer reads too slowly")
		return ErrSendQueueFull
	}
}

// Close asks the write pump to send what is queued, then a close frame
// with code and reason, then to end the connection.
func (c *conn) Close(code int, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeMsg = code, reason
		close(c.quit)
	})
}

func (c *conn) writePump() {
	defer close(c.done)
	cfg := c.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	defer c.ws.Close()
	write := func(frame []byte) bool {
		c.queuedBytes.Add(-int64(len(frame)))
		c.ws.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			c.Close(engine.CloseGoingAway, "write failed")
			return false
		}
		c.m.count(func(m *metrics) { m.framesOut.Inc(); m.bytesOut.Add(float64(len(frame))) })
		return true
	}
	for {
		select {
		case frame := <-c.queue:
			if !write(frame) {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteTimeout)); err != nil {
				c.Close(engine.CloseGoingAway, "ping failed")
				return
			}
		case <-c.quit:
			// Flush what was queued before the close (an error message,
			// typically), then say goodbye.
			for {
				select {
				case frame := <-c.queue:
					if !write(frame) {
						return
					}
					continue
				default:
				}
				break
			}
			msg := websocket.FormatCloseMessage(c.closeCode, c.closeMsg)
			c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(cfg.WriteTimeout))
			return
		}
	}
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
		if err := c.sess.HandleFrame(frame); err != nil {
			c.m.count(func(m *metrics) { m.errors.WithLabelValues("protocol").Inc() })
			return
		}
	}
}
