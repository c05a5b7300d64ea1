package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/peer"
)

// Reconnect delays of the CLI's peers: short, so that a server that comes
// up during -timeout is found quickly.
const (
	cliMinBackoff = 100 * time.Millisecond
	cliMaxBackoff = 2 * time.Second
)

// docSession is one doc subcommand's peer and its deadline.
type docSession struct {
	env *cliEnv
	p   *peer.Peer
	// ctx ends at -timeout for networked commands; its cause says so.
	ctx    context.Context
	cancel context.CancelFunc
}

// openDoc validates the common doc flags and opens the peer: on the -data
// store (in memory without it), connected to -server unless -offline.
func openDoc(ctx context.Context, env *cliEnv) (*docSession, error) {
	o := &env.opts
	if o.offline {
		if o.data == "" {
			return nil, usagef("-offline needs -data: an in-memory store has no documents")
		}
	} else if err := o.requireServer(); err != nil {
		return nil, err
	}
	cfg := peer.Config{Dir: o.data, Logger: env.log, MinBackoff: cliMinBackoff, MaxBackoff: cliMaxBackoff}
	if !o.offline {
		cfg.URL = o.server
	}
	p, err := peer.Open(cfg)
	if err != nil {
		return nil, storeOpenError(o.data, err)
	}
	s := &docSession{env: env, p: p}
	if o.offline {
		s.ctx, s.cancel = context.WithCancel(ctx)
	} else {
		s.ctx, s.cancel = context.WithTimeoutCause(ctx, o.timeout,
			fmt.Errorf("%w after %v", errTimeout, o.timeout))
	}
	return s, nil
}

func (s *docSession) close() error {
	s.cancel()
	return s.p.Close()
}

// ctxErr explains why ctx ended: the -timeout cause, or an interrupt.
func (s *docSession) ctxErr(what string) error {
	if cause := context.Cause(s.ctx); errors.Is(cause, errTimeout) {
		return fmt.Errorf("%s: %w", what, cause)
	}
	return fmt.Errorf("%s: interrupted", what)
}

// online waits for the connection to the server.
func (s *docSession) online() error {
	if s.env.opts.offline {
		return nil
	}
	if err := s.p.Engine().WaitOnline(s.ctx); err != nil {
		st := s.p.Status()
		if !errors.Is(context.Cause(s.ctx), errTimeout) {
			return s.ctxErr("connecting to " + s.env.opts.server)
		}
		last := st.LastError
		if last == "" {
			last = "no answer"
		}
		return fmt.Errorf("%w: cannot reach %s within %v (%d attempts): %s",
			errUnreachable, s.env.opts.server, s.env.opts.timeout, st.Attempts, last)
	}
	return nil
}

// acknowledged waits until the server has acknowledged every local change,
// including the one just made to document id.
func (s *docSession) acknowledged(id string) error {
	if s.env.opts.offline {
		return nil
	}
	// The engine answers Change before it marks the document pending, so
	// WaitSynced right after Change can return before the change was even
	// sent. A read of the document is processed after that step has
	// finished, pending mark included.
	if id != "" {
		if err := s.p.Read(s.ctx, id, func(*crdt.Doc) error { return nil }); err != nil {
			if s.ctx.Err() != nil {
				return s.ctxErr("waiting for the server to acknowledge")
			}
			return err
		}
	}
	if err := s.p.WaitSynced(s.ctx); err != nil {
		return s.ctxErr("waiting for the server to acknowledge")
	}
	return nil
}

// find makes document id local: from the store, or fetched from the
// server. With a local store and a connection, the local copy is first
// brought level with the server's, so that reads see the server's state.
func (s *docSession) find(id string) error {
	if err := s.online(); err != nil {
		return err
	}
	if err := s.p.Find(s.ctx, id); err != nil {
		switch {
		case errors.Is(err, engine.ErrUnavailable) && s.env.opts.offline:
			return fmt.Errorf("%w: %s is not in %s", errNotFound, id, s.env.opts.data)
		case errors.Is(err, engine.ErrUnavailable):
			return fmt.Errorf("%w: %s is on neither the server nor the local store", errNotFound, id)
		case s.ctx.Err() != nil:
			return s.ctxErr("finding " + id)
		}
		return err
	}
	if s.env.opts.data != "" && !s.env.opts.offline {
		return s.sync([]string{id}, nil)
	}
	return nil
}

// sync brings the documents ids level with the server, both ways.
func (s *docSession) sync(ids []string, prog *progress) error {
	if err := syncDocs(s.ctx, s.p, s.env, ids, prog); err != nil {
		if s.ctx.Err() != nil {
			return s.ctxErr(err.Error())
		}
		return err
	}
	return nil
}

// value reads document id as plain values, with its heads.
func (s *docSession) value(id string) (map[string]any, crdt.Heads, error) {
	var v map[string]any
	var heads crdt.Heads
	err := s.p.Read(s.ctx, id, func(d *crdt.Doc) error {
		var err error
		v, err = d.Value()
		heads = d.Heads()
		return err
	})
	if err != nil && s.ctx.Err() != nil {
		return nil, nil, s.ctxErr("reading " + id)
	}
	return v, heads, err
}

func docCreate(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 1 {
		return usagef("want one JSON object, got %d arguments", len(args))
	}
	root, err := parseJSONValue(args[0])
	if err != nil {
		return usagef("JSON: %v", err)
	}
	m, ok := root.(map[string]any)
	if !ok {
		return usagef("the document root must be a JSON object")
	}
	if len(m) == 0 {
		return usagef("{} makes no change, and a document without changes cannot be synced: give it a field")
	}
	s, err := openDoc(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.online(); err != nil {
		return err
	}
	id, err := s.p.Create(s.ctx, func(tx *crdt.Tx) error { return tx.Set(nil, m) })
	if err != nil {
		return err
	}
	if err := s.acknowledged(id); err != nil {
		if env.opts.data != "" {
			return fmt.Errorf("%w (automerge:%s is in %s; \"relay doc sync\" pushes it later)", err, id, env.opts.data)
		}
		return err
	}
	_, err = fmt.Fprintln(env.stdout, "automerge:"+id)
	return err
}

func docGet(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 1 {
		return usagef("want one document URL, got %d arguments", len(args))
	}
	id, err := parseDocArg(args[0])
	if err != nil {
		return err
	}
	s, err := openDoc(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.find(id); err != nil {
		return err
	}
	v, _, err := s.value(id)
	if err != nil {
		return err
	}
	return writeJSON(env.stdout, v)
}

func docSet(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) < 2 {
		return usagef("want a document URL and at least one PATH=JSON")
	}
	id, err := parseDocArg(args[0])
	if err != nil {
		return err
	}
	var sets []assignment
	for _, a := range args[1:] {
		x, err := parseAssignment(a)
		if err != nil {
			return usageError{err}
		}
		sets = append(sets, x)
	}
	s, err := openDoc(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.find(id); err != nil {
		return err
	}
	if _, err := s.p.Change(s.ctx, id, func(tx *crdt.Tx) error {
		for _, a := range sets {
			if err := a.apply(tx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		if s.ctx.Err() != nil {
			return s.ctxErr("changing " + id)
		}
		return err
	}
	return s.acknowledged(id)
}

func docWatch(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 1 {
		return usagef("want one document URL, got %d arguments", len(args))
	}
	id, err := parseDocArg(args[0])
	if err != nil {
		return err
	}
	s, err := openDoc(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	wake := make(chan struct{}, 1)
	unsub := s.p.Subscribe(func(c peer.Change) {
		if c.DocID == id {
			notify(wake)
		}
	})
	defer unsub()
	if err := s.find(id); err != nil {
		return err
	}
	// -timeout bounds finding the document; watching goes on until ctx
	// ends (an interrupt, which is success).
	s.ctx = ctx
	var printed crdt.Heads
	for {
		v, heads, err := s.value(id)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if printed == nil || !heads.Equal(printed) {
			if err := writeJSON(env.stdout, v); err != nil {
				return err
			}
			printed = heads
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil
		}
	}
}

func docSync(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 0 {
		return usagef("unexpected argument %q", args[0])
	}
	if env.opts.data == "" {
		return usagef("-data is required: the store to sync")
	}
	s, err := openDoc(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	var ids []string
	if err := s.p.Store().Documents(s.ctx, func(id string) bool {
		ids = append(ids, id)
		return true
	}); err != nil {
		return err
	}
	if err := s.online(); err != nil {
		return err
	}
	if err := s.acknowledged(""); err != nil {
		return err
	}
	prog := newProgress(env.stderr, "syncing", len(ids))
	err = s.sync(ids, prog)
	prog.done()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.stdout, "synced %d documents\n", len(ids))
	return err
}

// syncDocs waits until, for every document in ids, the server holds all
// of p's changes and p holds all of the server's. The server's state is
// read by a second, in-memory peer (the probe): the engine tracks
// acknowledgements only for local changes, and a pull has no
// acknowledgement at all.
func syncDocs(ctx context.Context, p *peer.Peer, env *cliEnv, ids []string, prog *progress) error {
	if len(ids) == 0 {
		return nil
	}
	probe, err := peer.Open(peer.Config{URL: env.opts.server, Logger: env.log, MinBackoff: cliMinBackoff, MaxBackoff: cliMaxBackoff})
	if err != nil {
		return err
	}
	defer probe.Close()
	wake := make(chan struct{}, 1)
	defer p.Subscribe(func(peer.Change) { notify(wake) })()
	defer probe.Subscribe(func(peer.Change) { notify(wake) })()
	// Changes are announced by subscriptions; the ticker covers a server
	// that tells the probe about a document only when asked again.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	wait := func() error {
		select {
		case <-wake:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	for i, id := range ids {
		for {
			err := probe.Find(ctx, id)
			if err == nil {
				break
			}
			if !errors.Is(err, engine.ErrUnavailable) {
				return fmt.Errorf("fetching %s from the server: %w", id, err)
			}
			if err := wait(); err != nil {
				return fmt.Errorf("the server does not have %s", id)
			}
		}
		for {
			remote, _, err := look(ctx, probe, id, nil)
			if err != nil {
				return err
			}
			local, hasRemote, err := look(ctx, p, id, remote)
			if err != nil {
				return err
			}
			_, hasLocal, err := look(ctx, probe, id, local)
			if err != nil {
				return err
			}
			if hasRemote && hasLocal {
				break
			}
			if err := wait(); err != nil {
				return fmt.Errorf("%s is not in sync with the server", id)
			}
		}
		if prog != nil {
			prog.step(i + 1)
		}
	}
	return nil
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// look returns the heads of p's copy of id, and whether it holds every
// change in want.
func look(ctx context.Context, p *peer.Peer, id string, want crdt.Heads) (crdt.Heads, bool, error) {
	var heads crdt.Heads
	has := true
	err := p.Read(ctx, id, func(d *crdt.Doc) error {
		heads = d.Heads()
		for _, h := range want {
			has = has && d.HasChange(h)
		}
		return nil
	})
	return heads, has, err
}

// parseJSONValue decodes one JSON value into what crdt.Tx.Set takes:
// objects become maps, arrays lists, strings collaborative text (what an
// automerge-repo JavaScript client reads as a plain string), integers
// int64 (uint64 above its range), other numbers float64.
func parseJSONValue(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return crdtValue(v)
}

func crdtValue(v any) (any, error) {
	switch x := v.(type) {
	case string:
		return crdt.Text(x), nil
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n, nil
		}
		if n, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", x, err)
		}
		return f, nil
	case map[string]any:
		for k, e := range x {
			c, err := crdtValue(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case []any:
		for i, e := range x {
			c, err := crdtValue(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	}
	return v, nil // bool, nil
}

// assignment is one PATH=JSON argument of doc set.
type assignment struct {
	path  []string
	value any
}

// parseAssignment parses PATH=JSON. PATH is a dotted list of non-empty
// segments; whether a segment is a map key or a list index is decided
// against the document when the assignment is applied.
func parseAssignment(s string) (assignment, error) {
	path, val, ok := strings.Cut(s, "=")
	if !ok {
		return assignment{}, fmt.Errorf("%q: want PATH=JSON", s)
	}
	segs := strings.Split(path, ".")
	for _, seg := range segs {
		if seg == "" {
			return assignment{}, fmt.Errorf("%q: empty path segment", s)
		}
	}
	v, err := parseJSONValue(val)
	if err != nil {
		return assignment{}, fmt.Errorf("%q: value is not JSON (%v); strings need quotes: %s='\"...\"'", s, err, path)
	}
	return assignment{path: segs, value: v}, nil
}

// apply sets the value: a segment under a list must be an index (at most
// the list's length; the length appends); under a map, or under a missing
// key (which is created as a map), it is a key.
func (a assignment) apply(tx *crdt.Tx) error {
	path := make([]any, 0, len(a.path))
	for i, seg := range a.path {
		var parent any = map[string]any{} // the root is a map
		if i > 0 {
			var err error
			if parent, err = tx.Get(path); err != nil {
				return err
			}
		}
		last := i == len(a.path)-1
		switch x := parent.(type) {
		case nil, map[string]any:
			path = append(path, seg)
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || strconv.Itoa(n) != seg {
				return fmt.Errorf("%s: %q is not a list index", strings.Join(a.path[:i], "."), seg)
			}
			if n > len(x) || n == len(x) && !last {
				return fmt.Errorf("%s: index %d out of range (length %d)", strings.Join(a.path[:i], "."), n, len(x))
			}
			path = append(path, n)
		default:
			return fmt.Errorf("%s is a %T, not a map or list", strings.Join(a.path[:i], "."), parent)
		}
	}
	return tx.Set(path, a.value)
}
