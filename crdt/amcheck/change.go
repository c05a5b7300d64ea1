package amcheck

import (
	"math"
	"unicode/utf8"
)

// Change is the header of one validated change.
type Change struct {
	// Hash is the change hash (of the uncompressed change chunk).
	Hash ChangeHash
	// Compressed is true if the change came in a compressed chunk.
	Compressed bool
	// Deps are the hashes of the changes this change depends on.
	Deps []ChangeHash
	// Actor is the author's actor id.
	Actor []byte
	// Seq is the change's sequence number for its actor, from 1.
	Seq uint64
	// StartOp is the counter of the change's first op.
	StartOp uint64
	// Time is the change's timestamp in milliseconds since the Unix epoch.
	Time int64
	// Message is the commit message.
	Message string
	// OtherActors are the other actor ids the ops refer to.
	OtherActors [][]byte
	// Ops is the number of ops.
	Ops int

	// makes are the objects the change creates; uses are the objects it
	// refers to without creating them, with the key kind its ops use.
	makes, uses objKinds
}

// ParseChange validates b as exactly one change chunk (type 1, or type 2
// compressed) and returns its header.
func ParseChange(b []byte, lim Limits) (*Change, error) {
	bud := newBudget(lim)
	if len(b) > bud.lim.MaxDocumentBytes {
		return nil, limitf(0, "input of %d bytes exceeds MaxDocumentBytes %d", len(b), bud.lim.MaxDocumentBytes)
	}
	return parseChangeChunk(b, 0, bud, true)
}

// parseChangeChunk validates b as exactly one change chunk. allowCompressed
// says whether a compressed chunk is acceptable.
func parseChangeChunk(b []byte, base int, bud *budget, allowCompressed bool) (*Change, error) {
	if len(b) >= 9 && [4]byte(b[:4]) == magic {
		switch ChunkType(b[8]) {
		case ChunkChange:
		case ChunkCompressed:
			if !allowCompressed {
				return nil, malformedf(base+8, "compressed change chunk where the core expects an uncompressed one")
			}
		default:
			return nil, malformedf(base+8, "%s chunk where a change chunk is expected", ChunkType(b[8]))
		}
	}
	c, n, err := parseChunk(b, base, bud)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, malformedf(base+n, "%d bytes after the change chunk", len(b)-n)
	}
	return c.Change, nil
}

// parseActor reads a length-prefixed actor id.
func parseActor(r *reader, what string) ([]byte, error) {
	start := r.pos()
	a, err := r.lenBytes(what)
	if err != nil {
		return nil, err
	}
	if len(a) == 0 {
		return nil, malformedf(start, "%s is empty", what)
	}
	return a, nil
}

// parseChangeBody validates the data of a change chunk (after the header).
func parseChangeBody(data []byte, base int, bud *budget) (*Change, error) {
	r := newReader(data, base)
	ch := &Change{}
	var err error
	if ch.Deps, err = r.hashes("change deps"); err != nil {
		return nil, err
	}
	if ch.Actor, err = parseActor(r, "change actor"); err != nil {
		return nil, err
	}
	seqPos := r.pos()
	if ch.Seq, err = r.uleb("change seq"); err != nil {
		return nil, err
	}
	if ch.Seq == 0 {
		return nil, malformedf(seqPos, "change seq is 0")
	}
	// A later change of an actor always depends, at least transitively, on
	// the actor's previous change.
	if ch.Seq > 1 && len(ch.Deps) == 0 {
		return nil, malformedf(seqPos, "change seq %d without dependencies", ch.Seq)
	}
	startPos := r.pos()
	if ch.StartOp, err = r.uleb("change start op"); err != nil {
		return nil, err
	}
	if ch.StartOp == 0 || ch.StartOp > math.MaxUint32 {
		return nil, malformedf(startPos, "change start op %d out of range", ch.StartOp)
	}
	if ch.Time, err = r.sleb("change time"); err != nil {
		return nil, err
	}
	msgPos := r.pos()
	msg, err := r.lenBytes("change message")
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(msg) {
		return nil, malformedf(msgPos, "change message is not UTF-8")
	}
	ch.Message = string(msg)
	nOther, err := r.count("change other actors", 2)
	if err != nil {
		return nil, err
	}
	for i := 0; i < nOther; i++ {
		a, err := parseActor(r, "change other actor")
		if err != nil {
			return nil, err
		}
		ch.OtherActors = append(ch.OtherActors, a)
	}

	metaPos := r.pos()
	specs, lens, err := readColumnMeta(r, "change op")
	if err != nil {
		return nil, err
	}
	for i, s := range specs {
		if s.deflate() {
			return nil, malformedf(metaPos, "change op column %d is deflate-compressed", i)
		}
	}
	total, err := sumLens(lens, r.remaining(), metaPos, "change op")
	if err != nil {
		return nil, err
	}
	dataPos := r.pos()
	opData, _ := r.take(uint64(total), "change op data")
	// Anything after the op columns is the change's extra bytes; automerge
	// keeps them opaque.
	raw, err := sliceColumns(specs, lens, opData, dataPos, "change op")
	if err != nil {
		return nil, err
	}
	layout, err := parseLayout(raw, "change op")
	if err != nil {
		return nil, err
	}

	actionCol := simple(layout, opColAction, colInteger)
	n, err := countValues(actionCol, kindUint, "action", uint64(bud.lim.MaxOpsPerChange))
	if err != nil {
		return nil, err
	}
	if n > uint64(bud.lim.MaxOpsPerChange) {
		return nil, limitf(dataPos, "change has more than MaxOpsPerChange %d ops", bud.lim.MaxOpsPerChange)
	}
	ch.Ops = int(n)
	// Op ids are startOp .. startOp+ops-1; the core unwraps each into a u32
	// (OpId::new in import_ops).
	if n > 0 && ch.StartOp+n-1 > math.MaxUint32 {
		return nil, malformedf(startPos, "change op counters %d..%d overflow 32 bits", ch.StartOp, ch.StartOp+n-1)
	}
	if err := bud.addOps(ch.Ops, dataPos); err != nil {
		return nil, err
	}
	ops, err := newOpColumns(layout, false, uint64(1+len(ch.OtherActors)), bud, dataPos)
	if err != nil {
		return nil, err
	}
	if err := ops.checkOps(ch.Ops, ch.StartOp); err != nil {
		return nil, err
	}
	actors := append([][]byte{ch.Actor}, ch.OtherActors...)
	ch.makes = exportKinds(ops.objects, actors)
	ch.uses = exportKinds(ops.uses, actors)
	return ch, nil
}
