package amcheck

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// ChangeHash is the SHA-256 hash of a change chunk (type byte, LEB128
// length and data), which automerge uses as the change's identity.
type ChangeHash [32]byte

// String returns the lower-case hex form of h.
func (h ChangeHash) String() string { return hex.EncodeToString(h[:]) }

// ChunkType is the type byte of a storage chunk.
type ChunkType uint8

// Chunk types.
const (
	ChunkDocument   ChunkType = 0
	ChunkChange     ChunkType = 1
	ChunkCompressed ChunkType = 2
)

// String returns a short name for t.
func (t ChunkType) String() string {
	switch t {
	case ChunkDocument:
		return "document"
	case ChunkChange:
		return "change"
	case ChunkCompressed:
		return "compressed change"
	}
	return "unknown"
}

// magic starts every automerge storage chunk.
var magic = [4]byte{0x85, 0x6f, 0x4a, 0x83}

// Chunk is one validated storage chunk.
type Chunk struct {
	// Type is the chunk type from the header.
	Type ChunkType
	// Checksum is the 4-byte checksum from the header; it has been verified.
	Checksum [4]byte
	// Hash is the SHA-256 over the chunk's type, length and data; for a
	// compressed change it is the hash of the equivalent uncompressed
	// change chunk, which is the change's hash.
	Hash ChangeHash
	// Raw is the chunk as it appears in the input (header included).
	Raw []byte
	// Change is set for change and compressed change chunks.
	Change *Change
	// Document is set for document chunks.
	Document *DocChunk
}

// ParseChunk validates the storage chunk at the start of b and returns it
// with the bytes that follow it. The work limits apply to this one chunk;
// len(b) is bounded by lim.MaxDocumentBytes.
func ParseChunk(b []byte, lim Limits) (*Chunk, []byte, error) {
	bud := newBudget(lim)
	if len(b) > bud.lim.MaxDocumentBytes {
		return nil, nil, limitf(0, "input of %d bytes exceeds MaxDocumentBytes %d", len(b), bud.lim.MaxDocumentBytes)
	}
	c, n, err := parseChunk(b, 0, bud)
	if err != nil {
		return nil, nil, err
	}
	return c, b[n:], nil
}

// chunkHash computes SHA-256(type || uleb(len(data)) || data).
func chunkHash(t ChunkType, data []byte) ChangeHash {
	h := sha256.New()
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = byte(t)
	n := binary.PutUvarint(hdr[1:], uint64(len(data)))
	h.Write(hdr[:1+n])
	h.Write(data)
	var out ChangeHash
	h.Sum(out[:0])
	return out
}

// parseChunk validates one chunk at the start of b (which begins at
// absolute offset base) and returns it with the number of bytes it spans.
func parseChunk(b []byte, base int, bud *budget) (*Chunk, int, error) {
	r := newReader(b, base)
	m, err := r.take(4, "chunk magic")
	if err != nil {
		return nil, 0, err
	}
	if [4]byte(m) != magic {
		return nil, 0, malformedf(base, "bad chunk magic bytes % x", m)
	}
	sum, err := r.take(4, "chunk checksum")
	if err != nil {
		return nil, 0, err
	}
	t, err := r.byte1("chunk type")
	if err != nil {
		return nil, 0, err
	}
	if t > byte(ChunkCompressed) {
		return nil, 0, malformedf(base+8, "unknown chunk type %d", t)
	}
	data, err := r.lenBytes("chunk data")
	if err != nil {
		return nil, 0, err
	}
	dataBase := r.pos() - len(data)
	c := &Chunk{Type: ChunkType(t), Checksum: [4]byte(sum), Raw: b[:r.off]}
	switch c.Type {
	case ChunkChange, ChunkDocument:
		c.Hash = chunkHash(c.Type, data)
	case ChunkCompressed:
		inflated, err := inflate(data, bud, dataBase, "compressed change chunk")
		if err != nil {
			return nil, 0, err
		}
		data = inflated
		c.Hash = chunkHash(ChunkChange, data)
		// Offsets inside inflated data cannot be mapped to the input: report
		// the chunk's own offset for errors in its body.
		dataBase = base
	}
	if [4]byte(c.Hash[:4]) != c.Checksum {
		return nil, 0, malformedf(base+4, "%s chunk checksum % x does not match its data (want % x)", c.Type, c.Checksum, c.Hash[:4])
	}
	switch c.Type {
	case ChunkDocument:
		d, err := parseDocBody(data, dataBase, bud)
		if err != nil {
			return nil, 0, err
		}
		c.Document = d
	default:
		ch, err := parseChangeBody(data, dataBase, bud)
		if err != nil {
			return nil, 0, err
		}
		ch.Hash = c.Hash
		ch.Compressed = c.Type == ChunkCompressed
		c.Change = ch
	}
	return c, r.off, nil
}
