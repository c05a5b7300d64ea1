package wsrelay

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/amsync/amsync/engine"
)

// ClientConfig configures Dial. Zero fields take the server defaults
// (Config) for frame size, queues and timeouts.
type ClientConfig struct {
	// Header is sent with the upgrade request (a bearer token, say).
	Header http.Header
	// HandshakeTimeout bounds the TCP, TLS and upgrade handshake. Default
	// 10 s.
	HandshakeTimeout  time.Duration
	MaxFrameBytes     int64
	SendQueueFrames   int
	SendQueueBytes    int64
	PingInterval      time.Duration
	PongTimeout       time.Duration
	WriteTimeout      time.Duration
	EnableCompression bool
	Logger            *slog.Logger
}

// ClientConn is a connection this process dialled to a relay, served by
// a dialled engine session (engine.Engine.Connect).
type ClientConn struct {
	c    *conn
	done chan struct{}
}

// Dial opens a WebSocket to url and connects eng to it: eng sends join,
// and once the relay answers, syncs its documents there. The connection
// runs until Close, the remote closes it, or it fails; Done is closed then.
func Dial(ctx context.Context, url string, eng *engine.Engine, cc ClientConfig) (*ClientConn, error) {
	cfg := Config{
		Engine: eng, Logger: cc.Logger, MaxFrameBytes: cc.MaxFrameBytes,
		SendQueueFrames: cc.SendQueueFrames, SendQueueBytes: cc.SendQueueBytes,
		PingInterval: cc.PingInterval, PongTimeout: cc.PongTimeout, WriteTimeout: cc.WriteTimeout,
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.MessageRate = 0 // the relay is trusted to send at its own pace
	hs := cc.HandshakeTimeout
	if hs == 0 {
		hs = 10 * time.Second
	}
	d := websocket.Dialer{
		Proxy:             http.ProxyFromEnvironment,
		HandshakeTimeout:  hs,
		ReadBufferSize:    16 << 10,
		WriteBufferSize:   16 << 10,
		EnableCompression: cc.EnableCompression,
	}
	ws, resp, err := d.DialContext(ctx, url, cc.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("wsrelay: dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("wsrelay: dial %s: %w", url, err)
	}
	c := newConn(&cfg, nil, ws)
	cl := &ClientConn{c: c, done: make(chan struct{})}
	c.sess = eng.Connect(c)
	c.start()
	go func() {
		defer close(cl.done)
		c.readPump()
		c.Close(engine.CloseGoingAway, "")
		c.sess.Closed()
		select {
		case <-c.done:
		case <-time.After(cfg.WriteTimeout + time.Second):
			ws.Close()
		}
	}()
	return cl, nil
}

// Session is the engine session of this connection.
func (cl *ClientConn) Session() *engine.Session { return cl.c.sess }

// Done is closed when the connection has ended.
func (cl *ClientConn) Done() <-chan struct{} { return cl.done }

// Close ends the connection with a normal close and waits until it has.
func (cl *ClientConn) Close() {
	cl.c.Close(engine.CloseNormal, "client closing")
	<-cl.done
}
