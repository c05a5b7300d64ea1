package isolate

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// The host and its workers exchange length-prefixed CBOR frames over the
// worker's stdin and stdout: one request, then its response, one at a time.

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
	Op     op                  `cbor:"1,keyasint"`
	Doc    string              `cbor:"2,keyasint"`
	Actor  string              `cbor:"3,keyasint,omitempty"`
	Chunks []store.Chunk       `cbor:"4,keyasint,omitempty"`
	In     engine.ReplicaInput `cbor:"5,keyasint,omitempty"`
}

type rejected struct {
	Peer engine.PeerKey `cbor:"1,keyasint"`
	Err  string         `cbor:"2,keyasint"`
}

type output struct {
	Saves        []store.Op                    `cbor:"1,keyasint,omitempty"`
	Messages     []engine.PeerData             `cbor:"2,keyasint,omitempty"`
	Rejected     []rejected                    `cbor:"3,keyasint,omitempty"`
	TheirHeads   map[engine.PeerKey][][32]byte `cbor:"4,keyasint,omitempty"`
	ChangeErrors []string                      `cbor:"5,keyasint,omitempty"`
	Heads        [][32]byte                    `cbor:"6,keyasint,omitempty"`
	HeadsChanged bool                          `cbor:"7,keyasint,omitempty"`
	Empty        bool                          `cbor:"8,keyasint,omitempty"`
	SavedBytes   int                           `cbor:"9,keyasint,omitempty"`
	RemoteErrors []string                      `cbor:"10,keyasint,omitempty"`
	Published    []byte                        `cbor:"11,keyasint,omitempty"`
}

type response struct {
	Err    string                    `cbor:"1,keyasint,omitempty"`
	Out    *output                   `cbor:"2,keyasint,omitempty"`
	States map[engine.PeerKey][]byte `cbor:"3,keyasint,omitempty"`
	Data   []byte                    `cbor:"4,keyasint,omitempty"`
}

var (
	encMode, _ = cbor.EncOptions{}.EncMode()
	decMode, _ = cbor.DecOptions{MaxArrayElements: 1 << 24, MaxMapPairs: 1 << 24}.DecMode()
)

var errFrame = errors.New("isolate: bad frame")

func writeFrame(w *bufio.Writer, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("isolate: encode: %w", err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("%w: %d bytes", errFrame, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", errFrame, err)
	}
	return nil
}
