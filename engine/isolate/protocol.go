package isolate

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// The host and its workers exchange length-prefixed frames over the
// worker's stdin and stdout: one request, then its response, one at a time.
// codec.go encodes their bodies.

const maxFrame = 1 << 30

type op uint8

const (
	opLoad op = iota + 1
	opStep
	opSyncStates
	opSave
	opDrop
)

type request struct {
	Op     op
	Doc    string
	Actor  string
	Chunks []store.Chunk
	In     engine.ReplicaInput
}

type rejected struct {
	Peer engine.PeerKey
	Err  string
}

type output struct {
	Saves        []store.Op
	Messages     []engine.PeerData
	Rejected     []rejected
	TheirHeads   map[engine.PeerKey][][32]byte
	ChangeErrors []string
	Heads        [][32]byte
	HeadsChanged bool
	Empty        bool
	SavedBytes   int
	RemoteErrors []string
	Published    []byte
}

type response struct {
	Err    string
	Out    *output
	States map[engine.PeerKey][]byte
	Data   []byte
}

var errFrame = errors.New("isolate: bad frame")

// writeFrame writes one length-prefixed frame body and flushes it.
func writeFrame(w *bufio.Writer, body []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Flush()
}

// readFrame reads one frame body into a buffer of its own.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("%w: %d bytes", errFrame, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
