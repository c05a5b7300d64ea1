package peer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/wsrelay"
)

// Sentinel errors.
var (
	ErrConfig = errors.New("peer: invalid config")
	ErrClosed = errors.New("peer: closed")
)

// Config configures a Peer.
type Config struct {
	// URL of the relay, ws:// or wss://. Empty (and no URLs): the peer
	// never connects (offline use of a local store).
	URL string
	// URLs are further relays of the same cluster (see package
	// engine/cluster), dialled in turn after URL: each failed dial or lost
	// connection moves to the next one. Any relay of a cluster serves
	// every document, so the peer resumes where it was on whichever
	// answers.
	URLs []string
	// Dir is the local store's Badger directory; empty keeps the store in
	// memory (lost at Close).
	Dir string
	// Store, when set, is used instead of Dir (the peer does not close it).
	Store store.Store
	// PeerID on the wire. Default "peer-" and 12 random hex digits.
	PeerID string
	// Header is sent with every upgrade request (authentication).
	Header http.Header
	// MinBackoff and MaxBackoff bound the exponential reconnect delay; each
	// delay is drawn uniformly in [MinBackoff, current cap] (full jitter).
	// Defaults 250 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Seed seeds the jitter; 0 draws one from crypto/rand.
	Seed uint64
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Core runs the automerge side; default engine.InProcess (the peer
	// trusts its relay).
	Core engine.Core
}

func (c *Config) validate() error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("%w: backoff [%v, %v]", ErrConfig, c.MinBackoff, c.MaxBackoff)
	}
	if c.PeerID == "" {
		var b [6]byte
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			return err
		}
		c.PeerID = "peer-" + hex.EncodeToString(b[:])
	}
	if c.Seed == 0 {
		var b [8]byte
		io.ReadFull(rand.Reader, b[:])
		for _, x := range b {
			c.Seed = c.Seed<<8 | uint64(x)
		}
	}
	return nil
}

// relays is URL followed by URLs, without empties.
func (c *Config) relays() []string {
	var out []string
	for _, u := range append([]string{c.URL}, c.URLs...) {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Peer is a Go client of a relay: a local store that works offline, and a
// connection that syncs it whenever the relay is reachable.
type Peer struct {
	cfg     Config
	eng     *engine.Engine
	st      store.Store
	ownsSt  bool
	cancel  context.CancelFunc
	stopped chan struct{}

	mu     sync.Mutex
	subs   map[int]func(Change)
	nextID int
	conn   *wsrelay.ClientConn
	closed bool

	statusMu sync.Mutex
	status   Status
	wake     chan struct{}
}

// Change is one document change a subscriber hears of.
type Change struct {
	DocID string
	Heads crdt.Heads
	Local bool // made through this peer's API (not received)
}

// Status is the peer's connection state.
type Status struct {
	Online    bool
	Attempts  int       // failed dials since the last success
	LastError string    // of the last failed dial
	NextDial  time.Time // when offline and waiting
}

// Open opens the local store and, when URL is set, starts connecting.
func Open(cfg Config) (*Peer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Peer{cfg: cfg, subs: map[int]func(Change){}, stopped: make(chan struct{}), wake: make(chan struct{})}
	switch {
	case cfg.Store != nil:
		p.st = cfg.Store
	case cfg.Dir != "":
		st, err := badgerstore.Open(badgerstore.Config{Dir: cfg.Dir, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		p.st, p.ownsSt = st, true
	default:
		p.st, p.ownsSt = store.NewMemStore(), true
	}
	eng, err := engine.New(engine.Config{
		Store:        p.st,
		PeerID:       cfg.PeerID,
		Logger:       cfg.Logger,
		Core:         cfg.Core,
		TrackPending: true,
	})
	if err != nil {
		if p.ownsSt {
			p.st.Close()
		}
		return nil, err
	}
	p.eng = eng
	eng.Subscribe(p.onChange)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if len(cfg.relays()) > 0 {
		go p.run(ctx)
	} else {
		close(p.stopped)
	}
	return p, nil
}

// Engine is the peer's engine, for document-level access.
func (p *Peer) Engine() *engine.Engine { return p.eng }

// Store is the peer's local store.
func (p *Peer) Store() store.Store { return p.st }

// run keeps a connection to the relay, redialling with exponential
// backoff and full jitter after every failure or disconnect.
func (p *Peer) run(ctx context.Context) {
	defer close(p.stopped)
	rng := mrand.New(mrand.NewPCG(p.cfg.Seed, p.cfg.Seed^0x5bd1e995))
	attempt := 0
	relays := p.cfg.relays()
	for i := 0; ; i = (i + 1) % len(relays) {
		url := relays[i]
		conn, err := wsrelay.Dial(ctx, url, p.eng, wsrelay.ClientConfig{Header: p.cfg.Header, Logger: p.cfg.Logger})
		if err == nil {
			attempt = 0
			p.setConn(conn)
			p.setStatus(func(s *Status) { s.Attempts, s.LastError, s.NextDial = 0, "", time.Time{} })
			select {
			case <-conn.Done():
				p.setConn(nil)
				p.cfg.Logger.Info("disconnected from relay", "url", url)
			case <-ctx.Done():
				conn.Close()
				p.setConn(nil)
				return
			}
		} else if ctx.Err() != nil {
			return
		} else {
			p.cfg.Logger.Debug("dial relay", "url", url, "err", err)
		}
		attempt++
		delay := backoff(rng, attempt, p.cfg.MinBackoff, p.cfg.MaxBackoff)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		p.setStatus(func(s *Status) { s.Attempts, s.LastError, s.NextDial = attempt, errText, time.Now().Add(delay) })
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// backoff is the delay before dial attempt n (1-based): uniform in
// [lo, min(hi, lo·2^(n-1))].
func backoff(rng *mrand.Rand, n int, lo, hi time.Duration) time.Duration {
	ceil := float64(lo) * math.Pow(2, float64(n-1))
	if ceil > float64(hi) {
		ceil = float64(hi)
	}
	if ceil <= float64(lo) {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(ceil)-int64(lo)+1))
}

func (p *Peer) setConn(c *wsrelay.ClientConn) {
	p.mu.Lock()
	p.conn = c
	p.mu.Unlock()
	p.setStatus(func(s *Status) {})
}

func (p *Peer) setStatus(f func(*Status)) {
	p.statusMu.Lock()
	f(&p.status)
	p.status.Online = p.eng.Online()
	close(p.wake)
	p.wake = make(chan struct{})
	p.statusMu.Unlock()
}

// Status returns the connection state.
func (p *Peer) Status() Status {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	s := p.status
	s.Online = p.eng.Online()
	return s
}

// Pending returns the documents holding local changes the relay has not
// acknowledged yet (kept across restarts).
func (p *Peer) Pending() []string { return p.eng.Pending() }

// WaitSynced returns once the peer is online and the relay has
// acknowledged every local change, or when ctx ends.
func (p *Peer) WaitSynced(ctx context.Context) error { return p.eng.WaitSynced(ctx) }

// Disconnect drops the current connection (it is redialled after the
// backoff), for tests and for users who want to go offline briefly.
func (p *Peer) Disconnect() {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Subscribe calls fn for every change to any document, local or remote,
// once it is durable in the local store. fn runs on the document's task:
// it must return quickly. The returned function unsubscribes.
func (p *Peer) Subscribe(fn func(Change)) (cancel func()) {
	p.mu.Lock()
	id := p.nextID
	p.nextID++
	p.subs[id] = fn
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.subs, id)
		p.mu.Unlock()
	}
}

func (p *Peer) onChange(docID string, heads crdt.Heads, local bool) {
	p.mu.Lock()
	subs := make([]func(Change), 0, len(p.subs))
	for _, f := range p.subs {
		subs = append(subs, f)
	}
	p.mu.Unlock()
	for _, f := range subs {
		f(Change{DocID: docID, Heads: heads, Local: local})
	}
}

// Create makes a new document with init as its first change and returns
// its id. It works offline.
func (p *Peer) Create(ctx context.Context, init func(tx *crdt.Tx) error) (string, error) {
	return p.eng.Create(ctx, init)
}

// Change applies fn to document id as one change, durably, and syncs it
// when online. It works offline.
func (p *Peer) Change(ctx context.Context, id string, fn func(tx *crdt.Tx) error) (crdt.Heads, error) {
	return p.eng.Change(ctx, id, fn)
}

// Read calls fn with the local state of document id.
func (p *Peer) Read(ctx context.Context, id string, fn func(doc *crdt.Doc) error) error {
	return p.eng.Read(ctx, id, fn)
}

// Find makes sure document id is in the local store, fetching it from the
// relay when needed: engine.ErrUnavailable when neither has it. A document
// that is not local waits for the connection (until ctx ends) before the
// relay is asked.
func (p *Peer) Find(ctx context.Context, id string) error {
	err := p.eng.Find(ctx, id)
	if !errors.Is(err, engine.ErrUnavailable) || len(p.cfg.relays()) == 0 || p.eng.Online() {
		return err
	}
	if err := p.eng.WaitOnline(ctx); err != nil {
		return fmt.Errorf("peer: %s is not local and the relay is unreachable: %w", id, err)
	}
	return p.eng.Find(ctx, id)
}

// Records returns the records API over this peer's documents.
func (p *Peer) Records() *records.Store { return records.New(peerDocs{p}) }

// peerDocs adapts a Peer to records.Docs (Find waits for the relay).
type peerDocs struct{ p *Peer }

func (d peerDocs) Create(ctx context.Context, init func(tx *crdt.Tx) error) (string, error) {
	return d.p.Create(ctx, init)
}
func (d peerDocs) Change(ctx context.Context, id string, fn func(tx *crdt.Tx) error) (crdt.Heads, error) {
	return d.p.Change(ctx, id, fn)
}
func (d peerDocs) Read(ctx context.Context, id string, fn func(doc *crdt.Doc) error) error {
	return d.p.Read(ctx, id, fn)
}
func (d peerDocs) Find(ctx context.Context, id string) error { return d.p.Find(ctx, id) }
func (d peerDocs) Subscribe(fn func(string, crdt.Heads, bool)) func() {
	return d.p.eng.Subscribe(fn)
}

// Close stops syncing and closes the local store (when the peer opened
// it). Changes already made are durable.
func (p *Peer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	<-p.stopped
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.eng.Close(ctx)
	if p.ownsSt {
		if cerr := p.st.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
