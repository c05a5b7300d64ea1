package wsrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/amsync/amsync/engine"
)

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("wsrelay: invalid config")

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// Engine serves the sessions. Required.
	Engine *engine.Engine
	// Registry receives the server's metrics; default a new registry.
	Registry *prometheus.Registry
	// Logger; default slog.Default().
	Logger *slog.Logger
	// MaxFrameBytes is the largest frame accepted; a larger one closes the
	// connection with 1009. Default 64 MiB (whole-document sync messages
	// can be many MB).
	MaxFrameBytes int64
	// SendQueueFrames and SendQueueBytes bound what may wait for a slow
	// reader; past either the connection is closed. Defaults 4096 frames
	// and 64 MiB.
	SendQueueFrames int
	SendQueueBytes  int64
	// PingInterval is how often the server pings; a peer that has not
	// answered within PingInterval+PongTimeout is dropped. Defaults 5 s
	// and 10 s.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// WriteTimeout bounds one frame write. Default 10 s.
	WriteTimeout time.Duration
	// AllowedOrigins restricts browser origins (scheme://host[:port]); empty
	// allows every origin, as the Node sync server does. "*" also allows all.
	AllowedOrigins []string
	// EnableCompression negotiates permessage-deflate with peers that offer
	// it. Default off.
	EnableCompression bool

	// Authenticate, when set, runs before the upgrade: an error answers
	// HTTP 401 and no WebSocket is opened. The principal's Access decides
	// per document; when its Expires passes, the connection is closed. See
	// JWT for the built-in verifier.
	Authenticate func(r *http.Request) (*engine.Principal, error)
	// MaxConnections caps open connections (503 beyond); 0 means 100000.
	MaxConnections int
	// MaxConnectionsPerPrincipal caps one principal's connections (429
	// beyond); 0 means 1000. Anonymous connections are not counted.
	MaxConnectionsPerPrincipal int
	// MessageRate and MessageBurst bound the frames one connection may
	// send: a token bucket of MessageBurst frames refilled at MessageRate
	// per second. A connection over its rate is not read until it has
	// tokens again (backpressure; its TCP window fills). Defaults 10000/s
	// and 50000 (a client syncing 10,000 documents at connect sends about
	// 40,000 frames).
	MessageRate  float64
	MessageBurst int
	// JoinTimeout closes a connection that has not sent join in time.
	// Default 10 s.
	JoinTimeout time.Duration
	// MaxInflightBytesPerConnection and MaxInflightBytes bound the bytes
	// of frames read from connections that the engine has not processed
	// yet (their document's task has not stepped, persisted and answered
	// them): one connection's, and all connections' together. A
	// connection over either is not read until its frames are processed
	// (backpressure, as with MessageRate). A connection with nothing in
	// flight may always read one frame, however large, so that a frame of
	// up to MaxFrameBytes gets through and no connection is starved by
	// others; each bound may thus be passed by one frame per connection.
	// Defaults 16 MiB and 256 MiB.
	MaxInflightBytesPerConnection int64
	MaxInflightBytes              int64
}

func (c *Config) validate() error {
	if c.Engine == nil {
		return fmt.Errorf("%w: Engine is required", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = 64 << 20
	}
	if c.SendQueueFrames == 0 {
		c.SendQueueFrames = 4096
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = 64 << 20
	}
	if c.PingInterval == 0 {
		c.PingInterval = 5 * time.Second
	}
	if c.PongTimeout == 0 {
		c.PongTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 100000
	}
	if c.MaxConnectionsPerPrincipal == 0 {
		c.MaxConnectionsPerPrincipal = 1000
	}
	if c.MessageRate == 0 {
		c.MessageRate = 10000
	}
	if c.MessageBurst == 0 {
		c.MessageBurst = 50000
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = 10 * time.Second
	}
	if c.MaxInflightBytesPerConnection == 0 {
		c.MaxInflightBytesPerConnection = 16 << 20
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = 256 << 20
	}
	switch {
	case c.MaxFrameBytes < 1024:
		return fmt.Errorf("%w: MaxFrameBytes %d < 1024", ErrConfig, c.MaxFrameBytes)
	case c.SendQueueFrames < 1:
		return fmt.Errorf("%w: SendQueueFrames %d < 1", ErrConfig, c.SendQueueFrames)
	case c.SendQueueBytes < c.MaxFrameBytes:
		return fmt.Errorf("%w: SendQueueBytes %d < MaxFrameBytes %d", ErrConfig, c.SendQueueBytes, c.MaxFrameBytes)
	case c.PingInterval < 0 || c.PongTimeout < 0 || c.WriteTimeout < 0 || c.JoinTimeout < 0:
		return fmt.Errorf("%w: negative timeout", ErrConfig)
	case c.MaxConnections < 0 || c.MaxConnectionsPerPrincipal < 0:
		return fmt.Errorf("%w: negative connection cap", ErrConfig)
	case c.MessageRate < 0 || c.MessageBurst < 1:
		return fmt.Errorf("%w: message rate %v/s burst %d", ErrConfig, c.MessageRate, c.MessageBurst)
	case c.MaxInflightBytesPerConnection < 0 || c.MaxInflightBytes < 0:
		return fmt.Errorf("%w: negative in-flight budget", ErrConfig)
	case c.MaxInflightBytesPerConnection > c.MaxInflightBytes:
		return fmt.Errorf("%w: MaxInflightBytesPerConnection %d > MaxInflightBytes %d", ErrConfig, c.MaxInflightBytesPerConnection, c.MaxInflightBytes)
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("%w: allowed origin %q is not scheme://host[:port]", ErrConfig, o)
		}
	}
	return nil
}

// Server is an http.Handler that upgrades every request on any path to a
// WebSocket speaking the automerge-repo protocol, and serves it through the
// engine.
type Server struct {
	cfg      Config
	log      *slog.Logger
	upgrader websocket.Upgrader
	metrics  *metrics
	budget   *budget

	mu          sync.Mutex
	conns       map[*conn]struct{}
	byPrincipal map[string]int
	draining    bool
	wg          sync.WaitGroup
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, conns: map[*conn]struct{}{}, byPrincipal: map[string]int{}}
	s.metrics = newMetrics(s)
	s.budget = newBudget(cfg.MaxInflightBytesPerConnection, cfg.MaxInflightBytes, s.metrics)
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Read through the 4 KiB buffer of the HTTP request that is
		// upgraded (ReadBufferSize 0 reuses it), and write through 16 KiB
		// buffers lent by a pool only while a frame is written: an idle
		// connection holds no write buffer.
		ReadBufferSize:    0,
		WriteBufferSize:   16 << 10,
		WriteBufferPool:   &sync.Pool{},
		CheckOrigin:       s.checkOrigin,
		EnableCompression: cfg.EnableCompression,
	}
	return s, nil
}

func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.cfg.AllowedOrigins) == 0 || slices.Contains(s.cfg.AllowedOrigins, "*") {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	s.metrics.errors.WithLabelValues("origin_rejected").Inc()
	s.log.Warn("origin rejected", "origin", origin, "remote", r.RemoteAddr)
	return false
}

// ServeHTTP authenticates the request, upgrades it and serves the
// connection until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var principal *engine.Principal
	if s.cfg.Authenticate != nil {
		p, err := s.cfg.Authenticate(r)
		if err != nil {
			s.metrics.errors.WithLabelValues("unauthorized").Inc()
			s.log.Info("upgrade refused", "remote", r.RemoteAddr, "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="amsync"`)
			http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		principal = p
	}
	pid := ""
	if principal != nil {
		pid = principal.ID
	}
	s.mu.Lock()
	switch {
	case s.draining:
		s.mu.Unlock()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	case len(s.conns) >= s.cfg.MaxConnections:
		s.mu.Unlock()
		s.metrics.errors.WithLabelValues("connection_limit").Inc()
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	case pid != "" && s.byPrincipal[pid] >= s.cfg.MaxConnectionsPerPrincipal:
		s.mu.Unlock()
		s.metrics.errors.WithLabelValues("principal_limit").Inc()
		http.Error(w, "too many connections for this principal", http.StatusTooManyRequests)
		return
	}
	s.wg.Add(1)
	if pid != "" {
		s.byPrincipal[pid]++ // reserved now, so that a burst cannot overshoot
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if pid != "" {
			if s.byPrincipal[pid]--; s.byPrincipal[pid] <= 0 {
				delete(s.byPrincipal, pid)
			}
		}
		s.mu.Unlock()
		s.wg.Done()
	}()
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has already written an HTTP error.
		s.metrics.errors.WithLabelValues("upgrade").Inc()
		return
	}
	c := newConn(&s.cfg, s.metrics, ws)
	c.budget = s.budget.open()
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(engine.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
		ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.metrics.connections.Inc()
	s.metrics.accepted.Inc()

	c.sess = s.cfg.Engine.OpenAs(c, principal)
	stopTimers := c.watch(principal)
	c.start()
	c.readPump()
	stopTimers()
	c.Close(engine.CloseGoingAway, "")
	c.sess.Closed()
	select {
	case <-c.done:
	case <-time.After(s.cfg.WriteTimeout + time.Second):
		ws.Close()
	}

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Dec()
}

// Connections returns the number of open WebSocket connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown refuses new connections, closes the open ones with 1001, and
// waits until their handlers return or ctx ends. The engine is not closed:
// its owner closes it (and then the store) afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(engine.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wsrelay: shutdown: %w", ctx.Err())
	}
}
