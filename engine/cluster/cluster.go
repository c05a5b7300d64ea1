package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// Message headers. Nats-Msg-Id (the SHA-256 of the document id and the
// payload) lets JetStream drop a publish it already stored.
const (
	// HeaderOrigin is the storage id of the relay that published.
	HeaderOrigin = "Amsync-Origin"
	// HeaderSeed marks a document published whole when a relay joined.
	HeaderSeed = "Amsync-Seed"
)

// positionKeyName is the last component of the store key that holds the
// feed position: ["amsync-cluster", stream, "position"].
const positionKeyName = "position"

// payloadMargin is kept free under the server's max_payload for the
// subject and headers of a message.
const payloadMargin = 8 << 10

// Cluster connects one relay to the others through a JetStream stream. It
// is the relay engine's Replicator (Publish) and feeds the stream to the
// engine (Start). Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	origin string
	maxMsg int

	startMu sync.Mutex
	eng     *engine.Engine
	cancel  context.CancelFunc
	done    chan struct{}
	iterMu  sync.Mutex
	iter    jetstream.MessagesContext

	trp      atomic.Pointer[tracker] // set by Start
	inflight chan struct{}
	applying sync.WaitGroup
	created  time.Time // the stream's creation time, part of the position

	stats struct {
		published, publishErrors, publishNanos atomic.Int64
		applied, rejected, retries, skipped    atomic.Int64
	}
	closed atomic.Bool
}

// Stats are a Cluster's counters.
type Stats struct {
	// Published and PublishErrors count Publish calls; PublishTime is
	// their total duration (until the last PubAck).
	Published, PublishErrors int64
	PublishTime              time.Duration
	// Applied feed messages (including no-ops), Rejected ones (invalid:
	// skipped), Retries of failed applies, and Skipped own seeds.
	Applied, Rejected, Retries, Skipped int64
	// Position is the stream sequence up to which every message has been
	// applied here.
	Position uint64
	// Ready reports whether the relay has applied the stream as it was at
	// Start.
	Ready bool
}

var (
	_ engine.Replicator = (*Cluster)(nil)
	_ engine.Awaiter    = (*Cluster)(nil)
)

// Open validates cfg, connects to NATS and makes sure the stream exists
// (creating it with cfg.Replicas and cfg.MaxAge when it does not). Pass the
// Cluster as the engine's Config.Replicator, then call Start with the
// engine.
func Open(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger.With("component", "cluster"), inflight: make(chan struct{}, cfg.MaxInFlight)}
	origin, err := store.EnsureStorageID(ctx, cfg.Store, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster: storage id: %w", err)
	}
	c.origin = origin
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.Timeout(cfg.ConnectTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { c.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.log.Warn("NATS error", "err", err) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %v", ErrConnect, redact(cfg.URL), err)
	}
	c.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: %v", ErrConnect, err)
	}
	c.js = js
	sctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	info, err := c.ensureStream(sctx)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.created = info.Created
	c.maxMsg = int(nc.MaxPayload()) - payloadMargin
	if m := int(info.Config.MaxMsgSize); m > 0 && m-payloadMargin < c.maxMsg {
		c.maxMsg = m - payloadMargin
	}
	if c.maxMsg < 1024 {
		c.maxMsg = 1024
	}
	c.log.Info("joined cluster", "url", nc.ConnectedUrlRedacted(), "stream", cfg.Stream,
		"replicas", info.Config.Replicas, "messages", info.State.Msgs, "origin", c.origin)
	return c, nil
}

func redact(url string) string {
	// Credentials in a URL (nats://user:pass@host) stay out of errors.
	var out []string
	for _, u := range strings.Split(url, ",") {
		if i := strings.Index(u, "@"); i >= 0 {
			if j := strings.Index(u, "://"); j >= 0 && j < i {
				u = u[:j+3] + "***" + u[i:]
			}
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// ensureStream returns the stream's info, creating the stream when it
// does not exist. An existing stream's settings are the operator's: they
// are not changed.
func (c *Cluster) ensureStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	subject := c.cfg.SubjectPrefix + ">"
	for attempt := 0; ; attempt++ {
		s, err := c.js.Stream(ctx, c.cfg.Stream)
		if err == nil {
			c.stream = s
			info, err := s.Info(ctx)
			if err != nil {
				return nil, fmt.Errorf("%w: stream %s info: %v", ErrConnect, c.cfg.Stream, err)
			}
			covered := false
			for _, sub := range info.Config.Subjects {
				if sub == subject || sub == ">" {
					covered = true
				}
			}
			if !covered {
				return nil, fmt.Errorf("%w: stream %s holds subjects %v, not %s", ErrConnect, c.cfg.Stream, info.Config.Subjects, subject)
			}
			return info, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) || attempt > 0 {
			return nil, fmt.Errorf("%w: stream %s: %v", ErrConnect, c.cfg.Stream, err)
		}
		_, err = c.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        c.cfg.Stream,
			Description: "amsync document changes",
			Subjects:    []string{subject},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    c.cfg.Replicas,
			MaxAge:      c.cfg.MaxAge,
			Duplicates:  2 * time.Minute,
			AllowDirect: true,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("%w: create stream %s: %v", ErrConnect, c.cfg.Stream, err)
		}
		if err == nil {
			c.log.Info("created stream", "stream", c.cfg.Stream, "subjects", subject, "replicas", c.cfg.Replicas, "max_age", c.cfg.MaxAge)
		}
	}
}

// Origin is the storage id this relay publishes under.
func (c *Cluster) Origin() string { return c.origin }

// Publish stores changes of document docID in the stream and returns once
// JetStream acknowledged every part of them (engine.Replicator). Changes
// larger than a NATS message are split between automerge chunks, in order.
func (c *Cluster) Publish(ctx context.Context, docID string, changes []byte) error {
	return c.publish(ctx, docID, changes, false)
}

func (c *Cluster) publish(ctx context.Context, docID string, changes []byte, seed bool) error {
	if c.closed.Load() {
		return ErrClosed
	}
	start := time.Now()
	parts, err := splitChunks(changes, c.maxMsg)
	if err != nil {
		c.stats.publishErrors.Add(1)
		return err
	}
	subject := c.cfg.SubjectPrefix + docID
	for _, p := range parts {
		msg := nats.NewMsg(subject)
		msg.Data = p
		msg.Header.Set(jetstream.MsgIDHeader, msgID(docID, p))
		msg.Header.Set(HeaderOrigin, c.origin)
		if seed {
			msg.Header.Set(HeaderSeed, "1")
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
		_, err := c.js.PublishMsg(pctx, msg, jetstream.WithExpectStream(c.cfg.Stream))
		cancel()
		if err != nil {
			c.stats.publishErrors.Add(1)
			return fmt.Errorf("%w: %s: %v", ErrPublish, subject, err)
		}
	}
	c.stats.published.Add(1)
	c.stats.publishNanos.Add(int64(time.Since(start)))
	return nil
}

// msgID is the message's de-duplication id: the same bytes published
// twice for a document (a retry after a lost PubAck, two relays relaying
// the same client change) are stored once.
func msgID(docID string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(docID))
	h.Write([]byte{0})
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// Start feeds the stream to eng from this relay's feed position, after
// publishing this relay's own documents when it first joins. It returns at
// once; Ready and WaitReady tell when the relay has caught up.
func (c *Cluster) Start(eng *engine.Engine) error {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	if c.eng != nil {
		return fmt.Errorf("%w: Start called twice", ErrConfig)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pos, found, err := c.loadPosition(ctx)
	if err != nil {
		cancel()
		return err
	}
	s, err := c.js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		cancel()
		return fmt.Errorf("%w: stream %s: %v", ErrConnect, c.cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("%w: stream %s info: %v", ErrConnect, c.cfg.Stream, err)
	}
	c.created = info.Created
	if found && !pos.created.Equal(info.Created) {
		c.log.Warn("the stream was created anew since this relay last read it; replaying it whole",
			"stream", c.cfg.Stream, "position", pos.seq)
		pos.seq = 0
	}
	st := info.State
	if st.Msgs > 0 && st.FirstSeq > pos.seq+1 && pos.seq > 0 {
		c.log.Warn("the stream no longer holds messages this relay has not applied; documents changed only by them may be behind here (rebuild this relay's data directory from another relay's backup)",
			"position", pos.seq, "first_seq", st.FirstSeq)
	}
	c.eng, c.cancel, c.done = eng, cancel, make(chan struct{})
	tr := newTracker(pos.seq, st.LastSeq)
	if st.Msgs == 0 {
		tr.target = 0
	}
	c.trp.Store(tr)
	seed := !found && !c.cfg.SkipSeed
	c.log.Info("feed starting", "position", pos.seq, "stream_last_seq", st.LastSeq, "seed", seed)
	go c.run(ctx, seed)
	return nil
}

func (c *Cluster) run(ctx context.Context, seed bool) {
	defer close(c.done)
	if seed {
		for attempt := 1; ; attempt++ {
			err := c.seed(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.log.Error("publish this relay's documents", "attempt", attempt, "err", err)
			if !wait(ctx, backoff(attempt)) {
				return
			}
		}
	}
	// The position exists from now on: a restart does not seed again.
	if err := c.flush(ctx, true); err != nil {
		c.log.Error("write feed position", "err", err)
	}
	c.trp.Load().startDone()
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		t := time.NewTicker(c.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.flush(ctx, false); err != nil && ctx.Err() == nil {
					c.log.Warn("write feed position", "err", err)
				}
			}
		}
	}()
	c.consume(ctx)
	<-flushDone
}

// seed publishes every document of this relay's store whole.
func (c *Cluster) seed(ctx context.Context) error {
	var ids []string
	if err := c.cfg.Store.Documents(ctx, func(id string) bool {
		ids = append(ids, id)
		return true
	}); err != nil {
		return fmt.Errorf("cluster: list documents: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	c.log.Info("publishing this relay's documents to the cluster", "documents", len(ids))
	for _, id := range ids {
		var data []byte
		err := c.eng.Read(ctx, id, func(d *crdt.Doc) error {
			data = d.Save()
			if len(data) > c.maxMsg {
				// Too large for one message: the changes, split.
				var err error
				data, err = d.ChangesSince(nil)
				return err
			}
			return nil
		})
		if errors.Is(err, engine.ErrUnavailable) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cluster: read %s: %w", id, err)
		}
		if err := c.publish(ctx, id, data, true); err != nil {
			return err
		}
	}
	return nil
}

// consume reads the stream through one ordered consumer, recreated from
// the last delivered message after any failure.
func (c *Cluster) consume(ctx context.Context) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		next := c.trp.Load().delivered() + 1
		cons, err := c.js.OrderedConsumer(ctx, c.cfg.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{c.cfg.SubjectPrefix + ">"},
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    next,
		})
		var it jetstream.MessagesContext
		if err == nil {
			it, err = cons.Messages(jetstream.PullMaxMessages(512))
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("create feed consumer", "from_seq", next, "attempt", attempt, "err", err)
			if !wait(ctx, backoff(attempt)) {
				return
			}
			continue
		}
		c.iterMu.Lock()
		c.iter = it
		c.iterMu.Unlock()
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				it.Stop()
				if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) && c.closed.Load() {
					return
				}
				c.log.Warn("feed interrupted; resuming", "err", err)
				break
			}
			attempt = 0
			if !c.handle(ctx, msg) {
				it.Stop()
				return
			}
		}
		if !wait(ctx, backoff(attempt)) {
			return
		}
	}
}

// handle hands one feed message to the engine; false stops the feed.
func (c *Cluster) handle(ctx context.Context, msg jetstream.Msg) bool {
	meta, err := msg.Metadata()
	if err != nil {
		c.log.Warn("feed message without metadata", "err", err)
		return true
	}
	seq := meta.Sequence.Stream
	select {
	case c.inflight <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	c.trp.Load().deliver(seq, meta.NumPending)
	docID, ok := strings.CutPrefix(msg.Subject(), c.cfg.SubjectPrefix)
	if !ok {
		c.finish(seq)
		return true
	}
	h := msg.Headers()
	if h.Get(HeaderSeed) != "" && h.Get(HeaderOrigin) == c.origin {
		// This relay's own documents, published whole when it joined.
		c.stats.skipped.Add(1)
		c.finish(seq)
		return true
	}
	c.applying.Add(1)
	c.apply(ctx, seq, docID, msg.Data(), 0)
	return true
}

// apply runs one feed message through the engine, retrying it after a
// transient failure (a failed write) until it lands or the feed stops.
func (c *Cluster) apply(ctx context.Context, seq uint64, docID string, data []byte, attempt int) {
	c.eng.ApplyRemote(docID, data, func(err error) {
		switch {
		case err == nil:
			c.stats.applied.Add(1)
			c.finish(seq)
			c.applying.Done()
		case errors.Is(err, engine.ErrRejected):
			c.stats.rejected.Add(1)
			c.log.Warn("skipped an invalid feed message", "seq", seq, "doc", docID, "err", err)
			c.finish(seq)
			c.applying.Done()
		case errors.Is(err, engine.ErrClosed):
			// Shutting down: the position stays before seq, so the next
			// start applies it.
			<-c.inflight
			c.applying.Done()
		default:
			c.stats.retries.Add(1)
			c.log.Warn("apply feed message; retrying", "seq", seq, "doc", docID, "attempt", attempt+1, "err", err)
			go func() {
				if !wait(ctx, backoff(attempt+1)) {
					<-c.inflight
					c.applying.Done()
					return
				}
				c.apply(ctx, seq, docID, data, attempt+1)
			}()
		}
	})
}

func (c *Cluster) finish(seq uint64) {
	c.trp.Load().complete(seq)
	<-c.inflight
}

// Await returns once every message the stream holds for docID (when it is
// called) has been applied here (engine.Awaiter): the engine calls it
// before it answers that a document it has no changes of is unavailable,
// so that a document created on another relay a moment ago is served. It
// costs one JetStream request (the subject's last message) and, when the
// document is there, the wait for the feed to reach it.
func (c *Cluster) Await(ctx context.Context, docID string) (bool, error) {
	if c.closed.Load() {
		return false, ErrClosed
	}
	msg, err := c.stream.GetLastMsgForSubject(ctx, c.cfg.SubjectPrefix+docID)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster: look %s up: %w", docID, err)
	}
	tr := c.trp.Load()
	if tr == nil {
		return true, fmt.Errorf("%w: not started", ErrConfig)
	}
	return true, tr.waitFor(ctx, msg.Sequence)
}

// Ready reports whether the relay has applied the stream as it was when
// Start ran (and, on first join, published its own documents).
func (c *Cluster) Ready() bool {
	tr := c.trp.Load()
	return tr != nil && tr.isReady()
}

// WaitReady returns once Ready, or with ctx's error.
func (c *Cluster) WaitReady(ctx context.Context) error {
	tr := c.trp.Load()
	if tr == nil {
		return fmt.Errorf("%w: not started", ErrConfig)
	}
	select {
	case <-tr.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the cluster's counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		Published: c.stats.published.Load(), PublishErrors: c.stats.publishErrors.Load(),
		PublishTime: time.Duration(c.stats.publishNanos.Load()),
		Applied:     c.stats.applied.Load(), Rejected: c.stats.rejected.Load(),
		Retries: c.stats.retries.Load(), Skipped: c.stats.skipped.Load(),
	}
	if tr := c.trp.Load(); tr != nil {
		s.Position = tr.position()
		s.Ready = tr.isReady()
	}
	return s
}

// Close stops the feed, waits (within ctx) for the messages being applied,
// writes the feed position and closes the NATS connection. Close the
// engine first: its documents may still publish while it closes.
func (c *Cluster) Close(ctx context.Context) error {
	if c.closed.Swap(true) {
		return nil
	}
	c.startMu.Lock()
	cancel, done := c.cancel, c.done
	c.startMu.Unlock()
	var errs []error
	if cancel != nil {
		c.iterMu.Lock()
		if c.iter != nil {
			c.iter.Stop()
		}
		c.iterMu.Unlock()
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("cluster: close: feed: %w", ctx.Err()))
		}
		applied := make(chan struct{})
		go func() { c.applying.Wait(); close(applied) }()
		select {
		case <-applied:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("cluster: close: applying: %w", ctx.Err()))
		}
		if err := c.flush(context.Background(), false); err != nil {
			errs = append(errs, err)
		}
	}
	c.nc.Close()
	return errors.Join(errs...)
}

// position is what the store keeps: the stream's identity and the
// sequence applied up to.
type position struct {
	created time.Time
	seq     uint64
}

func (c *Cluster) positionKey() store.Key {
	return store.Key{"amsync-cluster", c.cfg.Stream, positionKeyName}
}

func (c *Cluster) loadPosition(ctx context.Context) (position, bool, error) {
	b, err := c.cfg.Store.Load(ctx, c.positionKey())
	if err != nil {
		return position{}, false, fmt.Errorf("cluster: load feed position: %w", err)
	}
	if b == nil {
		return position{}, false, nil
	}
	if len(b) != 16 {
		c.log.Warn("unreadable feed position; replaying the stream", "bytes", len(b))
		return position{}, true, nil
	}
	return position{
		created: time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))).UTC(),
		seq:     binary.BigEndian.Uint64(b[8:]),
	}, true, nil
}

// flush writes the feed position when it moved (or always with force).
func (c *Cluster) flush(ctx context.Context, force bool) error {
	seq, changed := c.trp.Load().toFlush()
	if !changed && !force {
		return nil
	}
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[:8], uint64(c.created.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], seq)
	if err := c.cfg.Store.Apply(ctx, []store.Op{{Key: c.positionKey(), Data: b}}); err != nil {
		return fmt.Errorf("cluster: write feed position: %w", err)
	}
	c.trp.Load().flushed(seq)
	return nil
}

// backoff is the delay before retry n (1-based): 100 ms doubling to 5 s.
func backoff(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// wait waits d or until ctx ends; false when ctx ended.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
