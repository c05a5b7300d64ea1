package amcheck

import "math"

// Op column ids shared by change and document op columns.
const (
	opColObj      = 0
	opColKey      = 1
	opColID       = 2 // documents only
	opColInsert   = 3
	opColAction   = 4
	opColValue    = 5
	opColPred     = 7 // changes only
	opColSucc     = 8 // documents only
	opColExpand   = 9
	opColMarkName = 10
)

// Op actions known to automerge 0.5.0 (OpType::from_action_and_value). Any
// other action makes the core panic on load ("unreachable: UnknownAction",
// types.rs:274).
const (
	actionMakeMap   = 0
	actionSet       = 1
	actionMakeList  = 2
	actionDelete    = 3
	actionMakeText  = 4
	actionIncrement = 5
	actionMakeTable = 6
	actionMark      = 7
)

// opColumns holds the decoders of one chunk's op columns.
type opColumns struct {
	objActor, objCtr *rleDecoder
	keyActor         *rleDecoder
	keyCtr           *deltaDecoder
	keyStr           *rleDecoder
	idActor          *rleDecoder   // documents only
	idCtr            *deltaDecoder // documents only
	insert           *boolDecoder
	action           *rleDecoder
	value            *valueDecoder
	grpNum           *rleDecoder // pred (changes) or succ (documents)
	grpActor         *rleDecoder
	grpCtr           *deltaDecoder
	expand           *boolDecoder
	mark             *rleDecoder

	numActors uint64
	isDoc     bool
	bud       *budget
	base      int // offset reported for errors not tied to a column

	// Object key kinds (true: list/text, keyed by element; false: map or
	// table, keyed by string), by packed op id (actor index<<32 | counter).
	// The core panics when one object mixes both ("can only compare map
	// keys", op_set.rs:447). In a document every object is created before
	// it is used, so objects is complete; in a change, objects holds those
	// the change creates and uses those it refers to without creating them.
	objects map[uint64]bool
	uses    map[uint64]bool
}

func packID(actor, counter uint64) uint64 { return actor<<32 | counter }

// objRef identifies an object across chunks: the actor id bytes and the
// counter of the op that created it.
type objRef struct {
	actor   string
	counter uint64
}

// objKinds maps objects to their key kind: true for list and text objects
// (element keys), false for map and table objects (string keys).
type objKinds map[objRef]bool

// export converts packed ids to actor-independent references.
func exportKinds(m map[uint64]bool, actors [][]byte) objKinds {
	if len(m) == 0 {
		return nil
	}
	out := make(objKinds, len(m))
	for id, seq := range m {
		out[objRef{actor: string(actors[id>>32]), counter: id & 0xffffffff}] = seq
	}
	return out
}

func simple(cols []layoutColumn, id, typ uint32) *rawColumn {
	if c := findColumn(cols, id, typ); c != nil {
		return &c.col
	}
	return nil
}

// newOpColumns picks the op columns out of a parsed layout the way
// automerge's ChangeOpsColumns / DocOpColumns do: by exact (id, type);
// columns with other ids or types are ignored.
func newOpColumns(cols []layoutColumn, isDoc bool, numActors uint64, bud *budget, base int) (*opColumns, error) {
	o := &opColumns{numActors: numActors, isDoc: isDoc, bud: bud, base: base,
		objects: make(map[uint64]bool), uses: make(map[uint64]bool)}
	o.objActor = newRLE("obj actor", simple(cols, opColObj, colActor), kindUint)
	o.objCtr = newRLE("obj counter", simple(cols, opColObj, colInteger), kindUint)
	o.keyActor = newRLE("key actor", simple(cols, opColKey, colActor), kindUint)
	o.keyCtr = newDelta("key counter", simple(cols, opColKey, colDelta))
	o.keyStr = newRLE("key string", simple(cols, opColKey, colString), kindString)
	if isDoc {
		o.idActor = newRLE("id actor", simple(cols, opColID, colActor), kindUint)
		o.idCtr = newDelta("id counter", simple(cols, opColID, colDelta))
	}
	o.insert = newBool("insert", simple(cols, opColInsert, colBoolean))
	o.action = newRLE("action", simple(cols, opColAction, colInteger), kindUint)
	o.value = newValue("value", findColumn(cols, opColValue, colValueMeta))
	o.expand = newBool("expand", simple(cols, opColExpand, colBoolean))
	o.mark = newRLE("mark name", simple(cols, opColMarkName, colString), kindString)

	grpID, grpName := uint32(opColPred), "pred"
	if isDoc {
		grpID, grpName = opColSucc, "succ"
	}
	var numCol, actCol, ctrCol *rawColumn
	if g := findColumn(cols, grpID, colGroup); g != nil {
		numCol = &g.col
		switch len(g.members) {
		case 0:
		case 2:
			a, c := g.members[0], g.members[1]
			if (a.spec.typ() != colActor && a.spec.typ() != colInteger) || c.spec.typ() != colDelta {
				return nil, malformedf(g.col.base, "%s group must hold an actor and a delta column", grpName)
			}
			actCol, ctrCol = &a.col, &c.col
		default:
			return nil, malformedf(g.col.base, "%s group has %d columns, want 0 or 2", grpName, len(g.members))
		}
	}
	o.grpNum = newRLE(grpName+" count", numCol, kindUint)
	o.grpActor = newRLE(grpName+" actor", actCol, kindUint)
	o.grpCtr = newDelta(grpName+" counter", ctrCol)
	return o, nil
}

// opID is an op id with its actor as an index into the chunk's actor table.
type opID struct {
	actor   uint64
	counter uint64
}

// checkOps validates n ops. For a change, ids are (0, startOp+i); for a
// document they come from the id columns.
func (o *opColumns) checkOps(n int, startOp uint64) error {
	for i := 0; i < n; i++ {
		var id opID
		if o.isDoc {
			var err error
			if id, err = o.docID(); err != nil {
				return err
			}
		} else {
			id = opID{actor: 0, counter: startOp + uint64(i)}
		}
		if err := o.checkOp(id); err != nil {
			return err
		}
	}
	return nil
}

func (o *opColumns) docID() (opID, error) {
	aNull, err := o.idActor.next()
	if err != nil {
		return opID{}, err
	}
	c, cNull, err := o.idCtr.next()
	if err != nil {
		return opID{}, err
	}
	if aNull || cNull {
		return opID{}, o.idCtr.rle.r.errf("op id has a null actor or counter")
	}
	return o.opRef("id", o.idActor.u, c, math.MaxUint32+1)
}

// opRef validates an op reference: actor index in the actor table (the
// 0.5.0 core indexes its actor table with it without a bounds check:
// automerge.rs:762/770/776) and counter in 1..2^32-1 (OpId::new unwraps a
// u32 conversion) and below limit.
func (o *opColumns) opRef(what string, actor uint64, counter int64, limit uint64) (opID, error) {
	if actor >= o.numActors {
		return opID{}, malformedf(o.base, "%s actor index %d out of range (%d actors)", what, actor, o.numActors)
	}
	if counter <= 0 || counter > math.MaxUint32 {
		return opID{}, malformedf(o.base, "%s counter %d out of range", what, counter)
	}
	if uint64(counter) >= limit {
		return opID{}, malformedf(o.base, "%s counter %d is not below the op's own counter %d", what, counter, limit)
	}
	return opID{actor: actor, counter: uint64(counter)}, nil
}

func (o *opColumns) checkOp(id opID) error {
	// Object: both null (root) or both present.
	aNull, err := o.objActor.next()
	if err != nil {
		return err
	}
	cNull, err := o.objCtr.next()
	if err != nil {
		return err
	}
	root := false
	var obj opID
	switch {
	case aNull && cNull:
		root = true
	case !aNull && !cNull:
		if o.objCtr.u > math.MaxInt64 {
			return malformedf(o.base, "obj counter %d out of range", o.objCtr.u)
		}
		if obj, err = o.opRef("obj", o.objActor.u, int64(o.objCtr.u), id.counter); err != nil {
			return err
		}
	default:
		return o.objCtr.r.errf("obj has a null actor or counter")
	}

	// Key: a map key string, the list head (counter 0, null actor), or an
	// element id.
	sNull, err := o.keyStr.next()
	if err != nil {
		return err
	}
	kaNull, err := o.keyActor.next()
	if err != nil {
		return err
	}
	kc, kcNull, err := o.keyCtr.next()
	if err != nil {
		return err
	}
	isProp := false
	switch {
	case !sNull:
		if !kaNull || !kcNull {
			return o.keyStr.r.errf("key has both a string and an element id")
		}
		isProp = true
	case kcNull:
		return o.keyCtr.rle.r.errf("key is null")
	case kc == 0 && kaNull:
		// list head
	case kaNull:
		return o.keyActor.r.errf("key element id has a null actor")
	default:
		if _, err := o.opRef("key", o.keyActor.u, kc, id.counter); err != nil {
			return err
		}
	}

	if err := o.checkKeyKind(root, obj, !isProp); err != nil {
		return err
	}

	insert, exhausted, err := o.insert.next()
	if err != nil {
		return err
	}
	if exhausted {
		return o.insert.r.errf("insert column ends before the ops")
	}
	if insert && isProp {
		return malformedf(o.base, "insert op with a map key")
	}

	actNull, err := o.action.next()
	if err != nil {
		return err
	}
	if actNull {
		return o.action.r.errf("null action")
	}
	action := o.action.u
	if action > actionMark {
		return o.action.r.errf("unknown action %d", action)
	}

	vt, err := o.value.next()
	if err != nil {
		return err
	}
	// The document loader calls from_action_and_value without validating
	// it first; an increment with a non-integer value panics there
	// (types.rs:267).
	if action == actionIncrement && vt != valUint && vt != valInt {
		return o.action.r.errf("increment op with value type %d", vt)
	}

	if err := o.checkGroup(id); err != nil {
		return err
	}
	switch action {
	case actionMakeMap, actionMakeTable:
		o.objects[packID(id.actor, id.counter)] = false
	case actionMakeList, actionMakeText:
		o.objects[packID(id.actor, id.counter)] = true
	}

	if o.expand.present() {
		if _, _, err := o.expand.next(); err != nil {
			return err
		}
	}
	if _, err := o.mark.next(); err != nil {
		return err
	}
	return nil
}

// checkKeyKind checks that an op's key kind (element or string) matches its
// object.
func (o *opColumns) checkKeyKind(root bool, obj opID, seqKey bool) error {
	if root {
		if seqKey {
			return malformedf(o.base, "op on the root map with an element key")
		}
		return nil
	}
	p := packID(obj.actor, obj.counter)
	want, ok := o.objects[p]
	if !ok && o.isDoc {
		return malformedf(o.base, "op on object %d@%d before any op creates it", obj.counter, obj.actor)
	}
	if !ok {
		if want, ok = o.uses[p]; !ok {
			o.uses[p] = seqKey
			return nil
		}
	}
	if want != seqKey {
		return malformedf(o.base, "op on object %d@%d mixes element and string keys", obj.counter, obj.actor)
	}
	return nil
}

// checkGroup validates the op's pred (changes) or succ (documents) list.
func (o *opColumns) checkGroup(id opID) error {
	null, err := o.grpNum.next()
	if err != nil {
		return err
	}
	if null {
		return o.grpNum.r.errf("missing pred/succ count")
	}
	num := o.grpNum.u
	if err := o.bud.addGroupEntries(num, o.base); err != nil {
		return err
	}
	for j := uint64(0); j < num; j++ {
		aNull, err := o.grpActor.next()
		if err != nil {
			return err
		}
		c, cNull, err := o.grpCtr.next()
		if err != nil {
			return err
		}
		if aNull || cNull {
			return o.grpCtr.rle.r.errf("pred/succ entry has a null actor or counter")
		}
		if o.isDoc {
			// A successor comes after the op.
			if c <= int64(id.counter) && c > 0 {
				return malformedf(o.base, "succ counter %d is not above the op's counter %d", c, id.counter)
			}
			if _, err := o.opRef("succ", o.grpActor.u, c, math.MaxUint32+1); err != nil {
				return err
			}
		} else if _, err := o.opRef("pred", o.grpActor.u, c, id.counter); err != nil {
			return err
		}
	}
	return nil
}
