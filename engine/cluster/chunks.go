package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// chunkMagic starts every automerge storage chunk.
var chunkMagic = []byte{0x85, 0x6f, 0x4a, 0x83}

// splitChunks cuts b (concatenated automerge chunks, as ChangesSince and
// Save give them) into parts of at most max bytes, at chunk boundaries and
// in order. Input that fits is returned whole, unparsed; a single chunk
// larger than max is ErrTooLarge.
func splitChunks(b []byte, max int) ([][]byte, error) {
	if len(b) <= max {
		return [][]byte{b}, nil
	}
	var parts [][]byte
	start, off := 0, 0
	for off < len(b) {
		n, err := chunkLen(b[off:])
		if err != nil {
			return nil, fmt.Errorf("%w: at byte %d: %v", ErrPublish, off, err)
		}
		if n > max {
			return nil, fmt.Errorf("%w: one chunk of %d bytes, at most %d", ErrTooLarge, n, max)
		}
		if off+n-start > max {
			parts = append(parts, b[start:off])
			start = off
		}
		off += n
	}
	return append(parts, b[start:]), nil
}

// chunkLen is the length of the chunk at the start of b: magic (4 bytes),
// checksum (4), type (1), LEB128 data length, data.
func chunkLen(b []byte) (int, error) {
	if len(b) < 10 || !bytes.Equal(b[:4], chunkMagic) {
		return 0, fmt.Errorf("not an automerge chunk")
	}
	n, k := binary.Uvarint(b[9:])
	if k <= 0 || n > uint64(len(b)) {
		return 0, fmt.Errorf("bad chunk length")
	}
	total := 9 + k + int(n)
	if total > len(b) {
		return 0, fmt.Errorf("chunk of %d bytes truncated to %d", total, len(b))
	}
	return total, nil
}
