package amcheck

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"math/rand/v2"
)

// fixChunkChecksums rewrites, in place, the checksum of every chunk in a
// chunk sequence so that byte mutations of chunk bodies get past the
// checksum check, as an attacker's would. It stops at the first chunk whose
// header does not parse.
func fixChunkChecksums(b []byte) {
	off := 0
	for off+9 < len(b) && [4]byte(b[off:off+4]) == magic {
		t := ChunkType(b[off+8])
		l, n, err := decodeULEB(b[off+9:], false)
		if err != nil || l > uint64(len(b)-off-9-n) {
			return
		}
		data := b[off+9+n : off+9+n+int(l)]
		var h ChangeHash
		switch t {
		case ChunkDocument, ChunkChange:
			h = chunkHash(t, data)
		case ChunkCompressed:
			zr := flate.NewReader(bytes.NewReader(data))
			raw, err := io.ReadAll(io.LimitReader(zr, 1<<24))
			zr.Close()
			if err != nil {
				return
			}
			h = chunkHash(ChunkChange, raw)
		default:
			return
		}
		copy(b[off+4:off+8], h[:4])
		off += 9 + n + int(l)
	}
}

// syncChangeSpans returns the [start, end) spans of the change entries of a
// sync message, parsed leniently (no validation beyond what is needed to
// find them).
func syncChangeSpans(b []byte) [][2]int {
	r := newReader(b, 0)
	if _, err := r.byte1("type"); err != nil {
		return nil
	}
	skipHashes := func() bool {
		n, err := r.uleb("n")
		if err != nil || n > uint64(r.remaining()/32) {
			return false
		}
		r.off += int(n) * 32
		return true
	}
	if !skipHashes() || !skipHashes() {
		return nil
	}
	nh, err := r.uleb("have")
	if err != nil || nh > uint64(r.remaining()) {
		return nil
	}
	for i := uint64(0); i < nh; i++ {
		if !skipHashes() {
			return nil
		}
		if _, err := r.lenBytes("bloom"); err != nil {
			return nil
		}
	}
	nc, err := r.uleb("changes")
	if err != nil || nc > uint64(r.remaining()) {
		return nil
	}
	var spans [][2]int
	for i := uint64(0); i < nc; i++ {
		c, err := r.lenBytes("change")
		if err != nil {
			return spans
		}
		spans = append(spans, [2]int{r.off - len(c), r.off})
	}
	return spans
}

// fixSyncChecksums fixes the chunk checksums inside every change entry of a
// sync message, in place.
func fixSyncChecksums(b []byte) {
	for _, s := range syncChangeSpans(b) {
		fixChunkChecksums(b[s[0]:s[1]])
	}
}

// interesting byte values for in-place mutation: LEB128 edges, action and
// type codes, actor indices.
var interesting = []byte{0, 1, 2, 3, 5, 7, 8, 9, 0x0f, 0x10, 0x3f, 0x40, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff}

// mutateInPlace applies a few length-preserving byte mutations to b[lo:hi]
// (so length prefixes stay valid and the mutation lands in a body).
func mutateInPlace(rng *rand.Rand, b []byte, lo, hi int) {
	if hi <= lo {
		return
	}
	for k := 1 + rng.IntN(3); k > 0; k-- {
		i := lo + rng.IntN(hi-lo)
		switch rng.IntN(4) {
		case 0:
			b[i] ^= 1 << rng.UintN(8)
		case 1:
			b[i] = interesting[rng.IntN(len(interesting))]
		case 2:
			b[i] = byte(rng.UintN(256))
		default:
			// Bump a small integer, the most common shape of a field.
			b[i] += byte(rng.IntN(5)) - 2
		}
	}
}

// mutateChunks mutates a chunk sequence in place, avoiding the 9-byte chunk
// headers, and fixes the checksums.
func mutateChunks(rng *rand.Rand, b []byte) {
	// Keep out of the first chunk's header so the type and length survive.
	lo := 9
	if len(b) > 10 {
		_, n, err := decodeULEB(b[9:], false)
		if err == nil {
			lo += n
		}
	}
	mutateInPlace(rng, b, lo, len(b))
	fixChunkChecksums(b)
}

// mutateSync mutates a sync message in place: inside a change entry if it
// has any, else anywhere after the type byte; then fixes the checksums.
func mutateSync(rng *rand.Rand, b []byte) {
	spans := syncChangeSpans(b)
	if len(spans) > 0 && rng.IntN(4) != 0 {
		s := spans[rng.IntN(len(spans))]
		mutateChunks(rng, b[s[0]:s[1]])
		return
	}
	mutateInPlace(rng, b, 1, len(b))
	fixSyncChecksums(b)
}

// uvarint appends the LEB128 encoding of v.
func uvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// wrapChunk builds a chunk of type t around data with a correct checksum.
func wrapChunk(t ChunkType, data []byte) []byte {
	h := chunkHash(t, data)
	out := append([]byte{}, magic[:]...)
	out = append(out, h[:4]...)
	out = append(out, byte(t))
	out = uvarint(out, uint64(len(data)))
	return append(out, data...)
}

// syncMessage encodes a v1 sync message with the given changes and no
// heads, need or have.
func syncMessage(changes ...[]byte) []byte {
	out := []byte{SyncV1, 0, 0, 0}
	out = uvarint(out, uint64(len(changes)))
	for _, c := range changes {
		out = uvarint(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}
