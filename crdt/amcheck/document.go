package amcheck

import (
	"bytes"
	"math"
)

// Document summarizes a validated saved document: one or more chunks, as
// automerge's save() and saveIncremental() produce them and as
// automerge-repo concatenates a snapshot with its incrementals.
type Document struct {
	// Chunks are the validated chunks in input order.
	Chunks []*Chunk
	// Changes is the total number of changes over all chunks.
	Changes int
	// Ops is the total number of ops over all chunks (the document chunks'
	// op rows plus the change chunks' ops).
	Ops int
}

// DocChunk is the header of one validated document chunk.
type DocChunk struct {
	// Actors is the sorted actor table.
	Actors [][]byte
	// Heads are the document's heads as recorded in the chunk.
	Heads []ChangeHash
	// Changes is the number of changes the chunk encodes.
	Changes int
	// Ops is the number of op rows.
	Ops int

	// actorChanges is, per actor index, the number of changes (their seqs
	// are 1..n).
	actorChanges []uint64
	// objects are the objects the chunk's ops create.
	objects objKinds
}

// ParseDocument validates b as a saved document: a sequence of one or more
// document, change or compressed change chunks. Empty input is rejected
// (automerge loads it as a new empty document, so callers that want that
// must handle it themselves).
func ParseDocument(b []byte, lim Limits) (*Document, error) {
	bud := newBudget(lim)
	if len(b) > bud.lim.MaxDocumentBytes {
		return nil, limitf(0, "document of %d bytes exceeds MaxDocumentBytes %d", len(b), bud.lim.MaxDocumentBytes)
	}
	if len(b) == 0 {
		return nil, malformedf(0, "empty document")
	}
	doc := &Document{}
	if err := parseChunks(b, 0, bud, doc); err != nil {
		return nil, err
	}
	if err := checkSeqs(doc.Chunks); err != nil {
		return nil, err
	}
	return doc, nil
}

// checkSeqs replays loading the chunks into an empty document the way the
// core does (one apply_changes over every change after the first chunk)
// and rejects a change that would be applied out of its actor's sequence.
func checkSeqs(chunks []*Chunk) error {
	stream := make(map[ChangeHash]struct{})
	for _, c := range chunks {
		if c.Change != nil {
			stream[c.Hash] = struct{}{}
		}
	}
	sim := newSeqSim(false, stream)
	for _, c := range chunks {
		if c.Document != nil {
			sim.docChunk(c.Document)
			continue
		}
		if err := sim.iterate(c.Change); err != nil {
			return err
		}
	}
	return sim.drain()
}

// parseChunks validates the chunk sequence b and adds it to doc.
func parseChunks(b []byte, base int, bud *budget, doc *Document) error {
	off := 0
	for off < len(b) {
		c, n, err := parseChunk(b[off:], base+off, bud)
		if err != nil {
			return err
		}
		doc.Chunks = append(doc.Chunks, c)
		if c.Document != nil {
			doc.Changes += c.Document.Changes
			doc.Ops += c.Document.Ops
		} else {
			doc.Changes++
			doc.Ops += c.Change.Ops
			if err := bud.addChanges(1, base+off); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// Document change column ids.
const (
	docColActor = 0 // actor (Actor) and seq (Delta) share id 0
	docColMaxOp = 1
	docColTime  = 2
	docColMsg   = 3
	docColDeps  = 4
	docColExtra = 5
)

// parseDocBody validates the data of a document chunk.
func parseDocBody(data []byte, base int, bud *budget) (*DocChunk, error) {
	r := newReader(data, base)
	d := &DocChunk{}
	nActors, err := r.count("document actors", 2)
	if err != nil {
		return nil, err
	}
	for i := 0; i < nActors; i++ {
		pos := r.pos()
		a, err := parseActor(r, "document actor")
		if err != nil {
			return nil, err
		}
		// automerge sorts the actor table; op order depends on it.
		if i > 0 && bytes.Compare(d.Actors[i-1], a) >= 0 {
			return nil, malformedf(pos, "document actors not sorted and unique")
		}
		d.Actors = append(d.Actors, a)
	}
	if d.Heads, err = r.hashes("document heads"); err != nil {
		return nil, err
	}
	chPos := r.pos()
	chSpecs, chLens, err := readColumnMeta(r, "document change")
	if err != nil {
		return nil, err
	}
	opPos := r.pos()
	opSpecs, opLens, err := readColumnMeta(r, "document op")
	if err != nil {
		return nil, err
	}
	chTotal, err := sumLens(chLens, r.remaining(), chPos, "document change")
	if err != nil {
		return nil, err
	}
	chDataPos := r.pos()
	chData, _ := r.take(uint64(chTotal), "document change data")
	opTotal, err := sumLens(opLens, r.remaining(), opPos, "document op")
	if err != nil {
		return nil, err
	}
	opDataPos := r.pos()
	opData, _ := r.take(uint64(opTotal), "document op data")
	// Optional suffix: one head index per head (older encoders omit it).
	if !r.empty() {
		for range d.Heads {
			if _, err := r.uleb("document head index"); err != nil {
				return nil, err
			}
		}
		if !r.empty() {
			return nil, r.errf("%d bytes left over in document chunk", r.remaining())
		}
	}

	chCols, err := sliceColumns(chSpecs, chLens, chData, chDataPos, "document change")
	if err != nil {
		return nil, err
	}
	opCols, err := sliceColumns(opSpecs, opLens, opData, opDataPos, "document op")
	if err != nil {
		return nil, err
	}
	if err := inflateColumns(chCols, bud, "document change"); err != nil {
		return nil, err
	}
	if err := inflateColumns(opCols, bud, "document op"); err != nil {
		return nil, err
	}
	chLayout, err := parseLayout(chCols, "document change")
	if err != nil {
		return nil, err
	}
	opLayout, err := parseLayout(opCols, "document op")
	if err != nil {
		return nil, err
	}

	numActors := uint64(len(d.Actors))
	d.actorChanges = make([]uint64, numActors)
	if d.Changes, err = checkDocChanges(chLayout, d.actorChanges, bud, chDataPos); err != nil {
		return nil, err
	}

	idCol := simple(opLayout, opColID, colDelta)
	n, err := countValues(idCol, kindInt, "id counter", uint64(bud.lim.MaxOps))
	if err != nil {
		return nil, err
	}
	if n > uint64(bud.lim.MaxOps) {
		return nil, limitf(opDataPos, "document chunk has more than MaxOps %d ops", bud.lim.MaxOps)
	}
	d.Ops = int(n)
	if err := bud.addOps(d.Ops, opDataPos); err != nil {
		return nil, err
	}
	ops, err := newOpColumns(opLayout, true, numActors, bud, opDataPos)
	if err != nil {
		return nil, err
	}
	if err := ops.checkOps(d.Ops, 0); err != nil {
		return nil, err
	}
	d.objects = exportKinds(ops.objects, d.Actors)
	return d, nil
}

// checkDocChanges validates the change metadata columns of a document
// chunk and returns the number of changes.
// actorChanges (one entry per actor) receives each actor's number of
// changes.
func checkDocChanges(layout []layoutColumn, actorChanges []uint64, bud *budget, base int) (int, error) {
	numActors := uint64(len(actorChanges))
	actorCol := simple(layout, docColActor, colActor)
	n, err := countValues(actorCol, kindUint, "change actor", uint64(bud.lim.MaxOps))
	if err != nil {
		return 0, err
	}
	if n > uint64(bud.lim.MaxOps) {
		return 0, limitf(base, "document chunk has more than MaxOps %d changes", bud.lim.MaxOps)
	}
	if err := bud.addChanges(int(n), base); err != nil {
		return 0, err
	}

	actor := newRLE("change actor", actorCol, kindUint)
	seq := newDelta("change seq", simple(layout, docColActor, colDelta))
	maxOp := newDelta("change max op", simple(layout, docColMaxOp, colDelta))
	tm := newDelta("change time", simple(layout, docColTime, colDelta))
	msg := newRLE("change message", simple(layout, docColMsg, colString), kindString)
	extra := newValue("change extra", findColumn(layout, docColExtra, colValueMeta))

	var depNumCol, depIdxCol *rawColumn
	if g := findColumn(layout, docColDeps, colGroup); g != nil {
		depNumCol = &g.col
		switch {
		case len(g.members) == 0:
		case len(g.members) == 1 && g.members[0].spec.typ() == colDelta:
			depIdxCol = &g.members[0].col
		default:
			return 0, malformedf(g.col.base, "change deps group must hold one delta column")
		}
	}
	depNum := newRLE("change deps count", depNumCol, kindUint)
	depIdx := newDelta("change deps index", depIdxCol)

	type actorState struct{ seq, maxOp int64 }
	last := make(map[uint64]actorState)
	for i := uint64(0); i < n; i++ {
		null, err := actor.next()
		if err != nil {
			return 0, err
		}
		if null {
			return 0, actor.r.errf("change %d has a null actor", i)
		}
		a := actor.u
		if a >= numActors {
			return 0, malformedf(base, "change %d actor index %d out of range (%d actors)", i, a, numActors)
		}
		s, sNull, err := seq.next()
		if err != nil {
			return 0, err
		}
		mo, mNull, err := maxOp.next()
		if err != nil {
			return 0, err
		}
		_, tNull, err := tm.next()
		if err != nil {
			return 0, err
		}
		if sNull || mNull || tNull {
			return 0, malformedf(base, "change %d has a null seq, max op or time", i)
		}
		if mo < 0 || mo > math.MaxUint32 {
			return 0, malformedf(base, "change %d max op %d out of range", i, mo)
		}
		prev, seen := last[a]
		switch {
		case !seen && s != 1:
			return 0, malformedf(base, "change %d: first change of actor %d has seq %d", i, a, s)
		case seen && s != prev.seq+1:
			return 0, malformedf(base, "change %d: seq %d does not follow %d for actor %d", i, s, prev.seq, a)
		case seen && mo < prev.maxOp:
			return 0, malformedf(base, "change %d: max op %d below the actor's previous %d", i, mo, prev.maxOp)
		}
		last[a] = actorState{seq: s, maxOp: mo}
		actorChanges[a] = uint64(s)
		if _, err := msg.next(); err != nil {
			return 0, err
		}
		dnNull, err := depNum.next()
		if err != nil {
			return 0, err
		}
		if dnNull {
			return 0, depNum.r.errf("change %d has a null deps count", i)
		}
		if err := bud.addGroupEntries(depNum.u, base); err != nil {
			return 0, err
		}
		for j := uint64(0); j < depNum.u; j++ {
			di, diNull, err := depIdx.next()
			if err != nil {
				return 0, err
			}
			if diNull || di < 0 || uint64(di) >= i {
				return 0, malformedf(base, "change %d dep index %d is not an earlier change", i, di)
			}
		}
		more, err := extra.meta.more()
		if err != nil {
			return 0, err
		}
		if !more {
			continue
		}
		vt, err := extra.next()
		if err != nil {
			return 0, err
		}
		if vt != valBytes {
			return 0, malformedf(base, "change %d extra data has value type %d, want bytes", i, vt)
		}
	}
	return int(n), nil
}
