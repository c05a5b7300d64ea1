package amcheck

import "math"

// reader reads the fixed (non-columnar) parts of chunks and sync messages.
// Its LEB128 decoding is as strict as automerge's storage parser: at most 10
// bytes, no overlong encodings, no overflow.
type reader struct {
	b    []byte
	off  int // position in b
	base int // absolute offset of b[0] in the caller's input
}

func newReader(b []byte, base int) *reader { return &reader{b: b, base: base} }

// pos is the absolute offset of the next byte.
func (r *reader) pos() int { return r.base + r.off }

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) empty() bool { return r.off >= len(r.b) }

func (r *reader) rest() []byte { return r.b[r.off:] }

func (r *reader) errf(format string, args ...any) error {
	return malformedf(r.pos(), format, args...)
}

func (r *reader) byte1(what string) (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.errf("%s: unexpected end of input", what)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// take returns the next n bytes without copying.
func (r *reader) take(n uint64, what string) ([]byte, error) {
	if n > uint64(r.remaining()) {
		return nil, r.errf("%s: length %d exceeds the %d remaining bytes", what, n, r.remaining())
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

// uleb reads a strict unsigned LEB128 as automerge's leb128_u64 does.
func (r *reader) uleb(what string) (uint64, error) {
	v, n, err := decodeULEB(r.b[r.off:], true)
	if err != nil {
		return 0, r.errf("%s: %v", what, err)
	}
	r.off += n
	return v, nil
}

// uleb32 reads a strict unsigned LEB128 that must fit in a u32.
func (r *reader) uleb32(what string) (uint32, error) {
	start := r.pos()
	v, err := r.uleb(what)
	if err != nil {
		return 0, err
	}
	if v > math.MaxUint32 {
		return 0, malformedf(start, "%s: %d does not fit in 32 bits", what, v)
	}
	return uint32(v), nil
}

// sleb reads a strict signed LEB128 as automerge's leb128_i64 does.
func (r *reader) sleb(what string) (int64, error) {
	v, n, err := decodeSLEB(r.b[r.off:], true)
	if err != nil {
		return 0, r.errf("%s: %v", what, err)
	}
	r.off += n
	return v, nil
}

// count reads an element count and checks it against the remaining input,
// given the minimum encoded size of one element, so that a forged count can
// neither cause a huge allocation nor a long loop.
func (r *reader) count(what string, minElemSize int) (int, error) {
	start := r.pos()
	n, err := r.uleb(what)
	if err != nil {
		return 0, err
	}
	if minElemSize < 1 {
		minElemSize = 1
	}
	if n > uint64(r.remaining()/minElemSize) {
		return 0, malformedf(start, "%s: count %d cannot fit in the %d remaining bytes", what, n, r.remaining())
	}
	return int(n), nil
}

// hashes reads a count-prefixed list of 32-byte change hashes.
func (r *reader) hashes(what string) ([]ChangeHash, error) {
	n, err := r.count(what, 32)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]ChangeHash, n)
	for i := range out {
		copy(out[i][:], r.b[r.off:r.off+32])
		r.off += 32
	}
	return out, nil
}

// lenBytes reads a LEB128 length followed by that many bytes.
func (r *reader) lenBytes(what string) ([]byte, error) {
	n, err := r.uleb(what + " length")
	if err != nil {
		return nil, err
	}
	return r.take(n, what)
}

type lebError string

func (e lebError) Error() string { return string(e) }

const (
	errLEBTruncated lebError = "truncated LEB128"
	errLEBTooLarge  lebError = "LEB128 too large for 64 bits"
	errLEBOverlong  lebError = "overlong LEB128"
)

// decodeULEB decodes an unsigned LEB128 from the start of b. With strict,
// overlong encodings (a redundant final zero byte) are rejected, as the
// automerge storage parser does; without, they are accepted as the leb128
// crate used for column data does.
func decodeULEB(b []byte, strict bool) (uint64, int, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		if i >= len(b) {
			return 0, 0, errLEBTruncated
		}
		c := b[i]
		if i == 9 && c > 1 {
			return 0, 0, errLEBTooLarge
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			if strict && i > 0 && c == 0 {
				return 0, 0, errLEBOverlong
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errLEBTooLarge
}

// decodeSLEB decodes a signed LEB128 from the start of b; strict as for
// decodeULEB.
func decodeSLEB(b []byte, strict bool) (int64, int, error) {
	var v int64
	var prev byte
	for i := 0; i < 10; i++ {
		if i >= len(b) {
			return 0, 0, errLEBTruncated
		}
		c := b[i]
		if i == 9 && c != 0 && c != 0x7f {
			return 0, 0, errLEBTooLarge
		}
		v |= int64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			if strict && i > 0 && ((c == 0 && prev&0x40 == 0) || (c == 0x7f && prev&0x40 != 0)) {
				return 0, 0, errLEBOverlong
			}
			shift := 7 * uint(i+1)
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, i + 1, nil
		}
		prev = c
	}
	return 0, 0, errLEBTooLarge
}
