package amcheck

import "fmt"

// Tracker mirrors how the automerge 0.5.0 core applies changes to one
// document, so that changes which are well-formed on their own but would
// crash the core given the document's state can be rejected first. It
// catches two such classes:
//
//   - seq gaps: the core checks a change's seq only against duplicates. A
//     change applied while its actor has fewer than seq-1 changes in the
//     document is accepted, and every later get_changes (which each
//     generated sync message calls) panics slicing the actor's history
//     (automerge.rs:916).
//   - key kind mismatches: an op with a string key on an existing list or
//     text object, or with an element key on an existing map, makes the
//     core panic when it inserts the op ("can only compare map keys",
//     op_set.rs:447).
//
// The state needed is the hashes of the document's changes, the number of
// changes per actor, the type of every object, and the changes the core has
// queued because their dependencies are missing.
//
// Seed it with every change already in the document (Known, with each
// change parsed by ParseChange; record the document's own new commits the
// same way), then pass the changes of each sync message
// (SyncMessage.Decoded) to Admit, or a document about to be loaded
// incrementally to AdmitDocument, before handing the bytes to the core. If
// the core then rejects the input, or after loading a document chunk (whose
// change hashes the tracker cannot see), rebuild the tracker from the
// document's changes. A Tracker is not safe for concurrent use.
type Tracker struct {
	sim seqSim
}

// NewTracker returns a tracker for an empty document.
func NewTracker() *Tracker {
	return &Tracker{sim: newSeqSim(false, nil)}
}

// Known records a change that is already in the document. Changes may be
// recorded in any order.
func (t *Tracker) Known(c *Change) {
	if _, ok := t.sim.known[c.Hash]; ok {
		return
	}
	t.sim.known[c.Hash] = struct{}{}
	if c.Seq > t.sim.count[string(c.Actor)] {
		t.sim.count[string(c.Actor)] = c.Seq
	}
	for ref, seq := range c.makes {
		t.sim.objects[ref] = seq
	}
}

// Len returns the number of changes the tracker knows to be in the
// document.
func (t *Tracker) Len() int { return len(t.sim.known) }

// Pending returns the number of changes the core holds back because their
// dependencies are missing.
func (t *Tracker) Pending() int { return len(t.sim.pending) }

// Admit simulates the core applying changes in order (as apply_changes
// does: a change whose dependencies are all present is applied at once,
// others are queued until they are) and returns an error wrapping
// ErrMalformed if some change would be applied while its actor's history
// does not end at seq-1, or reuses a seq (which the core rejects). On
// success the tracker records the outcome; on error it is unchanged.
func (t *Tracker) Admit(changes []*Change) error {
	t.sim.begin()
	if err := t.sim.apply(changes); err != nil {
		t.sim.rollback()
		return err
	}
	t.sim.commit()
	return nil
}

// AdmitDocument is Admit for the chunks of a document or incremental save
// that is about to be loaded into the tracked document (LoadIncremental),
// checked by ParseDocument. A document chunk's change hashes are not
// visible to the tracker, so after admitting one the tracker is
// approximate; rebuild it from the loaded document.
func (t *Tracker) AdmitDocument(d *Document) error {
	t.sim.begin()
	oldMode := t.sim.docMode
	oldStream := t.sim.stream
	t.sim.stream = make(map[ChangeHash]struct{})
	for _, c := range d.Chunks {
		if c.Change != nil {
			t.sim.stream[c.Hash] = struct{}{}
		}
	}
	err := func() error {
		for _, c := range d.Chunks {
			if c.Document != nil {
				t.sim.docChunk(c.Document)
				continue
			}
			if err := t.sim.iterate(c.Change); err != nil {
				return err
			}
		}
		return t.sim.drain()
	}()
	if err != nil {
		t.sim.rollback()
		t.sim.docMode, t.sim.stream = oldMode, oldStream
		return err
	}
	t.sim.commit()
	if !t.sim.docMode {
		t.sim.stream = oldStream
	}
	return nil
}

// seqSim is the simulation behind Tracker and ParseDocument.
type seqSim struct {
	known   map[ChangeHash]struct{}
	count   map[string]uint64
	objects objKinds
	pending []*Change

	// Document mode (ParseDocument after a document chunk): the hashes of
	// the chunk's changes are unknown, so a dependency is taken as present
	// unless a change in the input has that hash, and a change whose seq is
	// not beyond its actor's count may be one of the chunk's changes (which
	// the core skips) rather than a duplicate.
	docMode bool
	stream  map[ChangeHash]struct{}

	// Undo log for Admit.
	journal  bool
	added    []ChangeHash
	addedObj []objRef
	oldCount map[string]uint64
	oldQueue []*Change
	hadActor map[string]bool

	// steps bounds the queue scans, which are quadratic in the worst case
	// (as they are in the core).
	steps, maxSteps int
}

// maxQueueSteps bounds the dependency-queue scanning of one Admit or one
// ParseDocument.
const maxQueueSteps = 100_000_000

func newSeqSim(docMode bool, stream map[ChangeHash]struct{}) seqSim {
	return seqSim{
		known:    make(map[ChangeHash]struct{}),
		count:    make(map[string]uint64),
		objects:  make(objKinds),
		docMode:  docMode,
		stream:   stream,
		maxSteps: maxQueueSteps,
	}
}

func (s *seqSim) begin() {
	s.journal = true
	s.steps = 0
	s.added = s.added[:0]
	s.addedObj = s.addedObj[:0]
	s.oldCount = make(map[string]uint64)
	s.hadActor = make(map[string]bool)
	s.oldQueue = append([]*Change(nil), s.pending...)
}

func (s *seqSim) commit() { s.journal = false }

func (s *seqSim) rollback() {
	for _, h := range s.added {
		delete(s.known, h)
	}
	for _, r := range s.addedObj {
		delete(s.objects, r)
	}
	for a, n := range s.oldCount {
		if s.hadActor[a] {
			s.count[a] = n
		} else {
			delete(s.count, a)
		}
	}
	s.pending = s.oldQueue
	s.journal = false
}

func (s *seqSim) setCount(actor string, n uint64) {
	if s.journal {
		if _, ok := s.oldCount[actor]; !ok {
			old, had := s.count[actor]
			s.oldCount[actor], s.hadActor[actor] = old, had
		}
	}
	s.count[actor] = n
}

func (s *seqSim) markKnown(h ChangeHash) {
	if _, ok := s.known[h]; ok {
		return
	}
	s.known[h] = struct{}{}
	if s.journal {
		s.added = append(s.added, h)
	}
}

func (s *seqSim) addObjects(m objKinds) {
	for ref, seq := range m {
		if _, ok := s.objects[ref]; ok {
			continue
		}
		s.objects[ref] = seq
		if s.journal {
			s.addedObj = append(s.addedObj, ref)
		}
	}
}

// checkUses rejects a change whose ops use an existing object with the
// wrong key kind.
func (s *seqSim) checkUses(c *Change) error {
	for ref, seq := range c.uses {
		if want, ok := s.objects[ref]; ok && want != seq {
			return fmt.Errorf("%w: change %s uses object %d@%x with the wrong key kind (the core would panic at op_set.rs:447)",
				ErrMalformed, c.Hash, ref.counter, ref.actor)
		}
	}
	return nil
}

func (s *seqSim) ready(c *Change) bool {
	for _, d := range c.Deps {
		if _, ok := s.known[d]; ok {
			continue
		}
		if s.docMode {
			if _, inStream := s.stream[d]; !inStream {
				continue
			}
		}
		return false
	}
	return true
}

// applyOne records c as applied after checking its seq.
func (s *seqSim) applyOne(c *Change) error {
	have := s.count[string(c.Actor)]
	if s.docMode && c.Seq <= have {
		// Possibly a change the document chunk already holds.
		s.markKnown(c.Hash)
		return nil
	}
	if err := s.checkUses(c); err != nil {
		return err
	}
	if c.Seq != have+1 {
		return fmt.Errorf("%w: change %s by actor %x has seq %d but would be applied as the actor's change %d (the core would panic at automerge.rs:916)",
			ErrMalformed, c.Hash, c.Actor, c.Seq, have+1)
	}
	s.setCount(string(c.Actor), c.Seq)
	s.markKnown(c.Hash)
	s.addObjects(c.makes)
	return nil
}

// docChunk records a document chunk: per actor, its changes 1..n.
func (s *seqSim) docChunk(d *DocChunk) {
	s.docMode = true
	for i, n := range d.actorChanges {
		a := string(d.Actors[i])
		if n > s.count[a] {
			s.setCount(a, n)
		}
	}
	for _, h := range d.Heads {
		s.markKnown(h)
	}
	s.addObjects(d.objects)
}

func (s *seqSim) apply(changes []*Change) error {
	for _, c := range changes {
		if err := s.iterate(c); err != nil {
			return err
		}
	}
	return s.drain()
}

// iterate is one step of apply_changes' loop over its input.
func (s *seqSim) iterate(c *Change) error {
	if _, ok := s.known[c.Hash]; ok {
		return nil
	}
	if !s.docMode && c.Seq <= s.count[string(c.Actor)] {
		// The core rejects the whole input (DuplicateSeqNumber); so do we,
		// to keep the mirror exact.
		return fmt.Errorf("%w: change %s by actor %x reuses seq %d", ErrMalformed, c.Hash, c.Actor, c.Seq)
	}
	if s.ready(c) {
		return s.applyOne(c)
	}
	s.pending = append(s.pending, c)
	return nil
}

// drain empties the queue as pop_next_causally_ready_change does: take the
// first ready change in queue order (swap-removing it), repeatedly.
func (s *seqSim) drain() error {
	for {
		i := -1
		for j, c := range s.pending {
			if s.ready(c) {
				i = j
				break
			}
		}
		s.steps += len(s.pending)
		if s.steps > s.maxSteps {
			return fmt.Errorf("%w: dependency queue of %d changes is too deep to resolve", ErrLimit, len(s.pending))
		}
		if i < 0 {
			return nil
		}
		// swap_remove; the undo log holds its own copy of the queue.
		c := s.pending[i]
		last := len(s.pending) - 1
		s.pending[i] = s.pending[last]
		s.pending = s.pending[:last]
		if _, ok := s.known[c.Hash]; ok {
			continue
		}
		if err := s.applyOne(c); err != nil {
			return err
		}
	}
}
