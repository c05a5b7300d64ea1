package amcheck

import (
	"bytes"
	"compress/flate"
	"io"
	"math"
	"unicode/utf8"
)

// Column types, the low three bits of a column spec.
const (
	colGroup     = 0
	colActor     = 1
	colInteger   = 2
	colDelta     = 3
	colBoolean   = 4
	colString    = 5
	colValueMeta = 6
	colValue     = 7

	colDeflateBit = 8
)

// colSpec is a raw column specification: id<<4 | deflate<<3 | type.
type colSpec uint32

func (s colSpec) id() uint32         { return uint32(s) >> 4 }
func (s colSpec) typ() uint32        { return uint32(s) & 7 }
func (s colSpec) deflate() bool      { return uint32(s)&colDeflateBit != 0 }
func (s colSpec) normalized() uint32 { return uint32(s) &^ colDeflateBit }

func mkSpec(id, typ uint32) colSpec { return colSpec(id<<4 | typ) }

// rawColumn is one column of a chunk's column metadata with its data.
type rawColumn struct {
	spec colSpec
	data []byte
	base int // absolute offset of data[0]; for inflated data, of the compressed column
}

// readColumnMeta reads a column metadata block (count, then spec and length
// per column) and checks, as automerge's RawColumns::parse does, that the
// specs are sorted by their normalized value.
func readColumnMeta(r *reader, what string) ([]colSpec, []uint64, error) {
	n, err := r.count(what+" column count", 2)
	if err != nil {
		return nil, nil, err
	}
	specs := make([]colSpec, n)
	lens := make([]uint64, n)
	for i := 0; i < n; i++ {
		start := r.pos()
		s, err := r.uleb32(what + " column spec")
		if err != nil {
			return nil, nil, err
		}
		l, err := r.uleb(what + " column length")
		if err != nil {
			return nil, nil, err
		}
		specs[i], lens[i] = colSpec(s), l
		if i > 0 && specs[i].normalized() < specs[i-1].normalized() {
			return nil, nil, malformedf(start, "%s columns not in normalized order", what)
		}
	}
	return specs, lens, nil
}

// sliceColumns splits data (which starts at absolute offset base) by the
// column lengths. The lengths must add up to at most len(data); the caller
// decides whether the data length was taken from their sum.
func sliceColumns(specs []colSpec, lens []uint64, data []byte, base int, what string) ([]rawColumn, error) {
	cols := make([]rawColumn, len(specs))
	off := uint64(0)
	for i, s := range specs {
		if lens[i] > uint64(len(data))-off {
			return nil, malformedf(base+int(off), "%s column %d length %d exceeds the column data", what, i, lens[i])
		}
		cols[i] = rawColumn{spec: s, data: data[off : off+lens[i]], base: base + int(off)}
		off += lens[i]
	}
	return cols, nil
}

// sumLens returns the total of the column lengths, or an error if it
// overflows or exceeds max.
func sumLens(lens []uint64, max int, off int, what string) (int, error) {
	var total uint64
	for _, l := range lens {
		if l > uint64(max) || total+l > uint64(max) {
			return 0, malformedf(off, "%s column lengths exceed the %d remaining bytes", what, max)
		}
		total += l
	}
	return int(total), nil
}

// inflateColumns decompresses every deflated column, charging the output to
// the budget. Columns that are not deflated are returned as they are.
func inflateColumns(cols []rawColumn, b *budget, what string) error {
	for i := range cols {
		c := &cols[i]
		if !c.spec.deflate() {
			continue
		}
		out, err := inflate(c.data, b, c.base, what+" column")
		if err != nil {
			return err
		}
		c.data = out
		c.spec = colSpec(uint32(c.spec) &^ colDeflateBit)
	}
	return nil
}

// inflate decompresses raw deflate data, refusing to produce more than the
// budget's remaining room.
func inflate(data []byte, b *budget, off int, what string) ([]byte, error) {
	room := b.inflateRoom()
	if room < 0 {
		room = 0
	}
	zr := flate.NewReader(bytes.NewReader(data))
	defer zr.Close()
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(zr, int64(room)+1))
	if err != nil {
		return nil, malformedf(off, "%s: bad deflate data: %v", what, err)
	}
	if n > int64(room) {
		return nil, limitf(off, "%s: decompressed size exceeds MaxDecompressedBytes %d", what, b.lim.MaxDecompressedBytes)
	}
	b.inflated += int(n)
	return out.Bytes(), nil
}

// layoutColumn is a top-level column after layout parsing: a simple column,
// a value column (metadata plus optional raw data), or a group with members.
type layoutColumn struct {
	spec    colSpec
	col     rawColumn
	raw     *rawColumn     // for value metadata: the raw value column, if any
	members []layoutColumn // for groups
}

// parseLayout checks the column layout rules of automerge's
// ColumnLayoutParser (sorted, no duplicates, every raw value column directly
// after a value metadata column with the same id, no nested groups) and
// groups the columns. Columns must already be inflated.
func parseLayout(cols []rawColumn, what string) ([]layoutColumn, error) {
	var out []layoutColumn
	inGroup := -1 // index in out of the open group, or -1
	for i, c := range cols {
		if i > 0 {
			prev := cols[i-1].spec
			if prev.normalized() > c.spec.normalized() {
				return nil, malformedf(c.base, "%s columns out of order", what)
			}
			if prev.normalized() == c.spec.normalized() {
				return nil, malformedf(c.base, "%s duplicate column spec %d", what, c.spec.normalized())
			}
		}
		if c.spec.typ() == colValue {
			if i == 0 || cols[i-1].spec.typ() != colValueMeta || cols[i-1].spec.id() != c.spec.id() {
				return nil, malformedf(c.base, "%s raw value column %d without its metadata column", what, c.spec.id())
			}
		}
		if inGroup >= 0 && out[inGroup].spec.id() != c.spec.id() {
			inGroup = -1
		}
		if inGroup >= 0 {
			g := &out[inGroup]
			switch c.spec.typ() {
			case colGroup:
				return nil, malformedf(c.base, "%s nested group column %d", what, c.spec.id())
			case colValue:
				m := &g.members[len(g.members)-1]
				cc := c
				m.raw = &cc
			default:
				g.members = append(g.members, layoutColumn{spec: c.spec, col: c})
			}
			continue
		}
		switch c.spec.typ() {
		case colGroup:
			out = append(out, layoutColumn{spec: c.spec, col: c})
			inGroup = len(out) - 1
		case colValue:
			m := &out[len(out)-1]
			cc := c
			m.raw = &cc
		default:
			out = append(out, layoutColumn{spec: c.spec, col: c})
		}
	}
	return out, nil
}

// findColumn returns the top-level column with the given id and type.
func findColumn(cols []layoutColumn, id, typ uint32) *layoutColumn {
	for i := range cols {
		if cols[i].spec.id() == id && cols[i].spec.typ() == typ {
			return &cols[i]
		}
	}
	return nil
}

// colReader is the LEB128 reader of one column's data. Column data is read
// with the leb128 crate's rules: overlong encodings are accepted.
type colReader struct {
	name string
	data []byte
	off  int
	base int
}

func (c *colReader) done() bool { return c.off >= len(c.data) }

func (c *colReader) errf(format string, args ...any) error {
	return malformedf(c.base, "column %s byte %d: "+format, append([]any{c.name, c.off}, args...)...)
}

func (c *colReader) uleb() (uint64, error) {
	v, n, err := decodeULEB(c.data[c.off:], false)
	if err != nil {
		return 0, c.errf("%v", err)
	}
	c.off += n
	return v, nil
}

func (c *colReader) sleb() (int64, error) {
	v, n, err := decodeSLEB(c.data[c.off:], false)
	if err != nil {
		return 0, c.errf("%v", err)
	}
	c.off += n
	return v, nil
}

func (c *colReader) take(n uint64) ([]byte, error) {
	if n > uint64(len(c.data)-c.off) {
		return nil, c.errf("length %d exceeds the %d remaining column bytes", n, len(c.data)-c.off)
	}
	s := c.data[c.off : c.off+int(n)]
	c.off += int(n)
	return s, nil
}

// RLE value kinds.
const (
	kindUint = iota
	kindInt
	kindString
)

// rleDecoder decodes automerge's run-length encoding: a signed count n
// followed by one value repeated n times (n > 0), |n| literal values
// (n < 0), or an unsigned null-run length (n == 0). Once the data is
// exhausted every further value is null, as in automerge's RleDecoder.
type rleDecoder struct {
	r       colReader
	kind    int
	count   uint64 // values left in the current run
	literal bool
	null    bool
	u       uint64
	i       int64
	s       []byte
}

func newRLE(name string, c *rawColumn, kind int) *rleDecoder {
	d := &rleDecoder{kind: kind}
	d.r.name = name
	if c != nil {
		d.r.data, d.r.base = c.data, c.base
	}
	return d
}

func (d *rleDecoder) readValue() error {
	switch d.kind {
	case kindUint:
		v, err := d.r.uleb()
		d.u = v
		return err
	case kindInt:
		v, err := d.r.sleb()
		d.i = v
		return err
	default:
		n, err := d.r.uleb()
		if err != nil {
			return err
		}
		s, err := d.r.take(n)
		if err != nil {
			return err
		}
		if !utf8.Valid(s) {
			return d.r.errf("invalid UTF-8 string")
		}
		d.s = s
		return nil
	}
}

// header reads the next run header; it returns false when the data is
// exhausted.
func (d *rleDecoder) header() (bool, error) {
	for d.count == 0 {
		if d.r.done() {
			return false, nil
		}
		n, err := d.r.sleb()
		if err != nil {
			return false, err
		}
		switch {
		case n > 0:
			d.count, d.literal, d.null = uint64(n), false, false
			if err := d.readValue(); err != nil {
				return false, err
			}
		case n < 0:
			if n == math.MinInt64 {
				return false, d.r.errf("literal run length overflows")
			}
			d.count, d.literal, d.null = uint64(-n), true, false
		default:
			l, err := d.r.uleb()
			if err != nil {
				return false, err
			}
			if l > math.MaxInt64 {
				return false, d.r.errf("null run length %d overflows", l)
			}
			d.count, d.literal, d.null = l, false, true
		}
	}
	return true, nil
}

// more reports whether another value (null or not) is left.
func (d *rleDecoder) more() (bool, error) { return d.header() }

// next advances by one value. null is true for a null value and for an
// exhausted column.
func (d *rleDecoder) next() (null bool, err error) {
	if d.count > 0 && !d.literal {
		// Fast path: inside a run.
		d.count--
		return d.null, nil
	}
	ok, err := d.header()
	if err != nil || !ok {
		return true, err
	}
	d.count--
	if d.literal {
		if err := d.readValue(); err != nil {
			return true, err
		}
	}
	return d.null, nil
}

// countValues returns the number of values (null or not) encoded in an RLE
// column without expanding runs, stopping once the count exceeds max.
func countValues(c *rawColumn, kind int, name string, max uint64) (uint64, error) {
	d := newRLE(name, c, kind)
	var total uint64
	for {
		ok, err := d.header()
		if err != nil {
			return 0, err
		}
		if !ok {
			return total, nil
		}
		total += d.count
		if total > max {
			return total, nil
		}
		if d.literal {
			for ; d.count > 0; d.count-- {
				if err := d.readValue(); err != nil {
					return 0, err
				}
			}
		}
		d.count = 0
	}
}

// deltaDecoder decodes a delta-encoded integer column: an RLE column of
// signed differences, accumulated with saturation as automerge does.
type deltaDecoder struct {
	rle rleDecoder
	abs int64
}

func newDelta(name string, c *rawColumn) *deltaDecoder {
	return &deltaDecoder{rle: *newRLE(name, c, kindInt)}
}

func (d *deltaDecoder) next() (v int64, null bool, err error) {
	null, err = d.rle.next()
	if err != nil || null {
		return 0, true, err
	}
	d.abs = satAdd(d.abs, d.rle.i)
	return d.abs, false, nil
}

func satAdd(a, b int64) int64 {
	s := a + b
	if a > 0 && b > 0 && s < 0 {
		return math.MaxInt64
	}
	if a < 0 && b < 0 && s >= 0 {
		return math.MinInt64
	}
	return s
}

// boolDecoder decodes a boolean column: alternating run lengths starting
// with a run of false. Once exhausted it reports exhausted.
type boolDecoder struct {
	r     colReader
	val   bool
	count uint64
}

func newBool(name string, c *rawColumn) *boolDecoder {
	d := &boolDecoder{val: true}
	d.r.name = name
	if c != nil {
		d.r.data, d.r.base = c.data, c.base
	}
	return d
}

func (d *boolDecoder) present() bool { return len(d.r.data) > 0 }

func (d *boolDecoder) next() (v bool, exhausted bool, err error) {
	for d.count == 0 {
		if d.r.done() {
			return false, true, nil
		}
		n, err := d.r.uleb()
		if err != nil {
			return false, true, err
		}
		d.count = n
		d.val = !d.val
	}
	d.count--
	return d.val, false, nil
}

// Value type codes, the low four bits of a value metadata entry.
const (
	valNull      = 0
	valFalse     = 1
	valTrue      = 2
	valUint      = 3
	valInt       = 4
	valFloat     = 5
	valString    = 6
	valBytes     = 7
	valCounter   = 8
	valTimestamp = 9
)

// valueDecoder decodes a value column pair: RLE metadata (type code and
// length) and the raw bytes the lengths point into.
type valueDecoder struct {
	meta *rleDecoder
	raw  colReader
}

func newValue(name string, lc *layoutColumn) *valueDecoder {
	d := &valueDecoder{}
	if lc == nil {
		d.meta = newRLE(name+" meta", nil, kindUint)
		d.raw.name = name + " raw"
		return d
	}
	d.meta = newRLE(name+" meta", &lc.col, kindUint)
	d.raw.name = name + " raw"
	if lc.raw != nil {
		d.raw.data, d.raw.base = lc.raw.data, lc.raw.base
	}
	return d
}

// next validates one value and returns its type code. A null metadata entry
// or an exhausted column is an error: every op has a value.
func (d *valueDecoder) next() (typ uint8, err error) {
	null, err := d.meta.next()
	if err != nil {
		return 0, err
	}
	if null {
		return 0, d.meta.r.errf("missing value metadata")
	}
	m := d.meta.u
	typ = uint8(m & 0x0f)
	length := m >> 4
	switch typ {
	case valNull, valFalse, valTrue:
		if length != 0 {
			return 0, d.meta.r.errf("value type %d with length %d", typ, length)
		}
		return typ, nil
	case valFloat:
		if length != 8 {
			return 0, d.meta.r.errf("float value with length %d", length)
		}
	case valUint, valInt, valCounter, valTimestamp, valString, valBytes:
	default:
		return 0, d.meta.r.errf("unknown value type %d", typ)
	}
	b, err := d.raw.take(length)
	if err != nil {
		return 0, err
	}
	switch typ {
	case valUint:
		_, n, err := decodeULEB(b, true)
		if err != nil || n != len(b) {
			return 0, d.raw.errf("bad uint value")
		}
	case valInt, valCounter, valTimestamp:
		_, n, err := decodeSLEB(b, true)
		if err != nil || n != len(b) {
			return 0, d.raw.errf("bad integer value")
		}
	case valString:
		if !utf8.Valid(b) {
			return 0, d.raw.errf("invalid UTF-8 string value")
		}
	}
	return typ, nil
}
