package simulations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// The ledger is what clients were told: every change an embedding API
// call reported durable (Change returned nil), and every acknowledgement
// by a relay (the document left the client's Pending set: a dialled relay
// announced heads equal to the client's, which it does only once they are
// on its disk). Neither may ever be lost.
type ledger struct {
	seq     int
	changes []*changeRec
	acks    []*ackRec
	docs    map[string]bool
}

type changeRec struct {
	node  string
	doc   string
	heads crdt.Heads
	seq   int
	// acked: a relay acknowledged the document after this change.
	acked bool
	// exempt: the node's disk was wiped before any relay acknowledged
	// the change, so losing it is allowed.
	exempt bool
}

type ackRec struct {
	client, relay string
	doc           string
	heads         crdt.Heads
	seq           int
}

func (l *ledger) init() { l.docs = map[string]bool{} }

func (l *ledger) addChange(n *Node, ch changeRec) *changeRec {
	l.seq++
	ch.node, ch.seq = n.Name, l.seq
	l.changes = append(l.changes, &ch)
	l.docs[ch.doc] = true
	return &ch
}

// wiped exempts the changes of n that no relay acknowledged.
func (l *ledger) wiped(n *Node) {
	for _, c := range l.changes {
		if c.node == n.Name && !c.acked {
			c.exempt = true
		}
	}
}

// acknowledged records that client n's relay acknowledged document id:
// the heads n holds now are on that relay's disk, now and forever.
func (w *World) acknowledged(n *Node, id string) {
	if n.out == nil || n.out.closed {
		w.fail(fmt.Errorf("%w: %s's pending mark of %s cleared with no dialled connection", ErrInvariant, n.Name, short(id)))
		return
	}
	relay := n.out.peer.n
	heads, ok := n.heads[id]
	if !ok {
		d, err := loadDoc(n.disk, id)
		if err != nil {
			w.fail(fmt.Errorf("%w: %s: load %s: %v", ErrInvariant, n.Name, short(id), err))
			return
		}
		heads = d.Heads()
	}
	w.stats.Acks++
	w.ledger.seq++
	w.ledger.acks = append(w.ledger.acks, &ackRec{client: n.Name, relay: relay.Name, doc: id, heads: heads, seq: w.ledger.seq})
	w.ledger.docs[id] = true
	for _, c := range w.ledger.changes {
		if c.node == n.Name && c.doc == id && !c.exempt {
			c.acked = true
		}
	}
	w.tr.logf("%s ack %s by %s heads=%s", n.Name, short(id), relay.Name, headsString(heads))
	w.checkOnDisk(relay, id, heads, "an acknowledgement of "+n.Name)
}

// checkOnDisk fails the run unless n's disk holds every change in heads.
func (w *World) checkOnDisk(n *Node, id string, heads crdt.Heads, what string) {
	if len(heads) == 0 {
		return
	}
	d, err := loadDoc(n.disk, id)
	if err != nil {
		w.fail(fmt.Errorf("%w: %s: load %s from disk: %v", ErrInvariant, n.Name, short(id), err))
		return
	}
	for _, h := range heads {
		if !d.HasChange(h) {
			w.fail(fmt.Errorf("%w: after %s, %s's disk lacks change %s of %s", ErrLost, what, n.Name, h.String()[:8], short(id)))
			return
		}
	}
}

// loadDoc reads a document from a disk the way the engine does. A closed
// disk (a crashed node's) is read through a clone.
func loadDoc(disk *store.MemStore, id string) (*crdt.Doc, error) {
	chunks, err := disk.LoadRange(context.Background(), store.Key{id})
	if errors.Is(err, store.ErrClosed) {
		chunks, err = disk.Clone().LoadRange(context.Background(), store.Key{id})
	}
	if err != nil {
		return nil, err
	}
	r, err := engine.LoadReplica(id, "ff", chunks)
	if err != nil {
		return nil, err
	}
	return r.Doc(), nil
}

// Documents returns every document id the World knows of: those changes
// were made to, and those on any node's disk, sorted.
func (w *World) Documents() []string {
	ids := map[string]bool{}
	for id := range w.ledger.docs {
		ids[id] = true
	}
	for _, n := range w.nodes {
		_ = n.disk.Clone().Documents(context.Background(), func(id string) bool {
			ids[id] = true
			return true
		})
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// CheckAcknowledged requires every client to hold no pending document:
// once everything is healed and quiet, its relay must have acknowledged
// every local change (else Engine.WaitSynced would never return).
// When the client's relay does hold all of them, the error wraps
// ErrAckNeverSent.
func (w *World) CheckAcknowledged() error {
	for _, n := range w.Clients() {
		p := n.Pending()
		if len(p) == 0 {
			continue
		}
		ids := make([]string, len(p))
		held := n.out != nil && !n.out.closed
		for i, id := range p {
			ids[i] = short(id)
			if held {
				ok, err := w.relayHolds(n, n.out.peer.n, id)
				held = ok && err == nil
			}
		}
		if held {
			return fmt.Errorf("%w: %s still holds changes to %v as pending once all was quiet, all of which %s has (WaitSynced would never return)", ErrAckNeverSent, n.Name, ids, n.out.peer.n.Name)
		}
		return fmt.Errorf("%w: %s still holds unacknowledged changes to %v once all was quiet (WaitSynced would never return)", ErrStuck, n.Name, ids)
	}
	return nil
}

// relayHolds reports whether relay's disk holds every change of client's
// document id.
func (w *World) relayHolds(client, relay *Node, id string) (bool, error) {
	d, err := loadDoc(client.disk, id)
	if err != nil {
		return false, err
	}
	return relay.DiskHas(id, d.Heads())
}

// DocState is one document as every replica holds it after convergence.
type DocState struct {
	Heads crdt.Heads
	Value map[string]any
	JSON  string
	doc   *crdt.Doc
}

// Size is the document's saved size in bytes.
func (s DocState) Size() int {
	if s.doc == nil {
		return 0
	}
	return len(s.doc.Save())
}

// Has reports whether the converged document holds change h.
func (s DocState) Has(h crdt.Hash) bool { return s.doc != nil && s.doc.HasChange(h) }

// CheckConverged reads every document in ids on every node, through the
// engine (Read) and from its disk, and requires identical heads and JSON
// everywhere: a document is either on every node or on none. It returns
// the converged states of the documents that exist.
func (w *World) CheckConverged(ids []string) (map[string]DocState, error) {
	states := map[string]DocState{}
	for _, id := range ids {
		var first *view
		firstNode := ""
		for _, n := range w.nodes {
			if !n.up {
				return nil, fmt.Errorf("%w: %s is down at the end", ErrInvariant, n.Name)
			}
			var live *view
			err := w.do(n, "read "+short(id), false, func(ctx context.Context, h *Handle) error {
				return h.Docs.Read(ctx, id, func(d *crdt.Doc) error {
					v, err := d.Value()
					if err != nil {
						return err
					}
					b, err := json.Marshal(v)
					if err != nil {
						return err
					}
					live = &view{heads: d.Heads(), json: string(b), value: v}
					return nil
				})
			})
			if err != nil && !errors.Is(err, engine.ErrUnavailable) {
				return nil, fmt.Errorf("%s: read %s: %w", n.Name, short(id), err)
			}
			if err := w.sameOnDisk(n, id, live); err != nil {
				return nil, err
			}
			switch {
			case first == nil && firstNode == "":
				first, firstNode = live, n.Name
			case (first == nil) != (live == nil):
				has, lacks := firstNode, n.Name
				if first == nil {
					has, lacks = n.Name, firstNode
				}
				err := ErrInvariant
				if at, ok := w.asked[nodeDoc{lacks, id}]; ok && w.sent[nodeDoc{lacks, id}] < at {
					err = ErrNeverRequested
				}
				return nil, fmt.Errorf("%w: document %s is on %s but not on %s", err, short(id), has, lacks)
			case first != nil && !first.heads.Equal(live.heads):
				err := ErrInvariant
				if w.stalled(firstNode, n.Name, id) {
					err = ErrSyncStalled
				}
				return nil, fmt.Errorf("%w: document %s: %s has heads %s, %s has %s", err, short(id), firstNode, headsString(first.heads), n.Name, headsString(live.heads))
			case first != nil && first.json != live.json:
				return nil, fmt.Errorf("%w: document %s: same heads, different JSON on %s and %s:\n%s\n%s", ErrInvariant, short(id), firstNode, n.Name, first.json, live.json)
			}
		}
		if first != nil {
			d, err := loadDoc(w.nodes[0].disk, id)
			if err != nil {
				return nil, err
			}
			states[id] = DocState{Heads: first.heads, Value: first.value, JSON: first.json, doc: d}
		}
	}
	return states, nil
}

// stalled reports whether, of two nodes holding different heads of
// document id, one lacks changes the other has and fell silent: the last
// frame about the document reached it after the last one it sent.
func (w *World) stalled(a, b, id string) bool {
	da, err := loadDoc(w.Node(a).disk, id)
	if err != nil {
		return false
	}
	db, err := loadDoc(w.Node(b).disk, id)
	if err != nil {
		return false
	}
	silent := func(n string) bool { return w.received[nodeDoc{n, id}] > w.sent[nodeDoc{n, id}] }
	lacks := func(x, y *crdt.Doc) bool { // x lacks some head of y
		for _, h := range y.Heads() {
			if !x.HasChange(h) {
				return true
			}
		}
		return false
	}
	return (lacks(da, db) && silent(a)) || (lacks(db, da) && silent(b))
}

// view is one replica's copy of a document.
type view struct {
	heads crdt.Heads
	json  string
	value map[string]any
}

// sameOnDisk requires the node's disk to hold what its engine serves
// (nil: nothing).
func (w *World) sameOnDisk(n *Node, id string, live *view) error {
	d, err := loadDoc(n.disk, id)
	if err != nil {
		return fmt.Errorf("%w: %s: load %s from disk: %v", ErrInvariant, n.Name, short(id), err)
	}
	if live == nil {
		if !d.Empty() {
			return fmt.Errorf("%w: %s serves nothing for %s but its disk has heads %s", ErrInvariant, n.Name, short(id), headsString(d.Heads()))
		}
		return nil
	}
	if !d.Heads().Equal(live.heads) {
		return fmt.Errorf("%w: %s serves %s at heads %s but its disk has %s", ErrInvariant, n.Name, short(id), headsString(live.heads), headsString(d.Heads()))
	}
	return nil
}

// CheckLedger requires every change a client was told is durable, and
// every relay acknowledgement, to be in the converged documents. It
// returns the number of changes lost.
func (w *World) CheckLedger(final map[string]DocState) (lost int, err error) {
	for _, c := range w.ledger.changes {
		if c.exempt || len(c.heads) == 0 {
			continue
		}
		st, ok := final[c.doc]
		for _, h := range c.heads {
			if !ok || !st.Has(h) {
				lost++
				if err == nil {
					err = fmt.Errorf("%w: %s's change to %s (heads %s, ledger #%d) is in no replica", ErrLost, c.node, short(c.doc), headsString(c.heads), c.seq)
				}
				break
			}
		}
	}
	for _, a := range w.ledger.acks {
		st, ok := final[a.doc]
		for _, h := range a.heads {
			if !ok || !st.Has(h) {
				lost++
				if err == nil {
					err = fmt.Errorf("%w: %s acknowledged %s's heads %s of %s, which are gone", ErrLost, a.relay, a.client, headsString(a.heads), short(a.doc))
				}
				break
			}
		}
	}
	return lost, err
}
