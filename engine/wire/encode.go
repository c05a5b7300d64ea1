package wire

import (
	"encoding/binary"
	"math"
	"slices"
)

// Encode encodes m as one frame. See AppendEncode.
func Encode(m Message) ([]byte, error) {
	return AppendEncode(nil, m)
}

// AppendEncode appends the encoding of m to dst and returns the extended
// slice; on error dst is returned unchanged.
//
// The frame is a CBOR map holding exactly the fields of m.Type (fields of
// other types are ignored), written so that cbor-x reads what the JS client
// expects: text keys, data as a byte string (never tagged), numbers other
// than integers in [0, 2^32) as float64 so that JS never gets a BigInt
// (cbor-x itself does this from 2^32 on), peerMetadata as {storageId, isEphemeral} with an empty StorageID
// written as undefined, as cbor-x writes an absent one. Optional lists
// (supportedProtocolVersions, add, remove) and peerMetadata are left out
// when nil. newHeads is written in sorted key order, so the output is
// deterministic. m must pass Validate.
//
// Lengths are written in their shortest form (a5, not cbor-x's b9 0005); the
// JS decoder reads both.
func AppendEncode(dst []byte, m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	t := m.Type
	n := 2 // type, senderId
	if hasTarget(t) {
		n++
	}
	if hasDocument(t) {
		n++
	}
	if hasData(t) {
		n++
	}
	switch t {
	case TypeJoin:
		n += present(m.PeerMetadata != nil) + present(m.SupportedProtocolVersions != nil)
	case TypePeer:
		n += present(m.PeerMetadata != nil) + 1
	case TypeError:
		n++
	case TypeEphemeral:
		n += 2
	case TypeRemoteSubscriptionChange:
		n += present(m.Add != nil) + present(m.Remove != nil)
	case TypeRemoteHeadsChanged:
		n++
	}

	dst = slices.Grow(dst, 96+len(m.SenderID)+len(m.TargetID)+len(m.DocumentID)+len(m.Data)+len(m.SessionID)+len(m.ErrorMessage))
	dst = appendHead(dst, majorMap, uint64(n))
	dst = appendText(appendText(dst, "type"), t)
	dst = appendText(appendText(dst, "senderId"), m.SenderID)
	if hasTarget(t) {
		dst = appendText(appendText(dst, "targetId"), m.TargetID)
	}
	if hasDocument(t) {
		dst = appendText(appendText(dst, "documentId"), m.DocumentID)
	}
	switch t {
	case TypeJoin:
		if m.PeerMetadata != nil {
			dst = appendPeerMetadata(appendText(dst, "peerMetadata"), m.PeerMetadata)
		}
		if m.SupportedProtocolVersions != nil {
			dst = appendTextList(appendText(dst, "supportedProtocolVersions"), m.SupportedProtocolVersions)
		}
	case TypePeer:
		if m.PeerMetadata != nil {
			dst = appendPeerMetadata(appendText(dst, "peerMetadata"), m.PeerMetadata)
		}
		dst = appendText(appendText(dst, "selectedProtocolVersion"), m.SelectedProtocolVersion)
	case TypeError:
		dst = appendText(appendText(dst, "message"), m.ErrorMessage)
	case TypeEphemeral:
		dst = appendNumber(appendText(dst, "count"), float64(m.Count))
		dst = appendText(appendText(dst, "sessionId"), m.SessionID)
	case TypeRemoteSubscriptionChange:
		if m.Add != nil {
			dst = appendTextList(appendText(dst, "add"), m.Add)
		}
		if m.Remove != nil {
			dst = appendTextList(appendText(dst, "remove"), m.Remove)
		}
	case TypeRemoteHeadsChanged:
		dst = appendNewHeads(appendText(dst, "newHeads"), m.NewHeads)
	}
	if hasData(t) {
		dst = appendHead(appendText(dst, "data"), majorBytes, uint64(len(m.Data)))
		dst = append(dst, m.Data...)
	}
	return dst, nil
}

func present(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendHead appends the shortest head of an item of major type mt with
// argument n.
func appendHead(dst []byte, mt byte, n uint64) []byte {
	mt <<= 5
	switch {
	case n < 24:
		return append(dst, mt|byte(n))
	case n <= math.MaxUint8:
		return append(dst, mt|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mt|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, mt|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, mt|27), n)
}

func appendText(dst []byte, s string) []byte {
	return append(appendHead(dst, majorText, uint64(len(s))), s...)
}

func appendTextList(dst []byte, l []string) []byte {
	dst = appendHead(dst, majorArray, uint64(len(l)))
	for _, s := range l {
		dst = appendText(dst, s)
	}
	return dst
}

// appendNumber writes f as cbor-x writes a JS number: integers in
// [0, 2^32) as unsigned integers, everything else as a float64.
func appendNumber(dst []byte, f float64) []byte {
	if f >= 0 && f < 1<<32 && f == math.Trunc(f) {
		return appendHead(dst, majorUint, uint64(f))
	}
	return binary.BigEndian.AppendUint64(append(dst, cborFloat64), math.Float64bits(f))
}

func appendPeerMetadata(dst []byte, md *PeerMetadata) []byte {
	dst = appendHead(dst, majorMap, 2)
	dst = appendText(dst, "storageId")
	if md.StorageID == "" {
		dst = append(dst, cborUndefined)
	} else {
		dst = appendText(dst, md.StorageID)
	}
	dst = appendText(dst, "isEphemeral")
	if md.IsEphemeral {
		return append(dst, cborTrue)
	}
	return append(dst, cborFalse)
}

func appendNewHeads(dst []byte, heads map[string]HeadsInfo) []byte {
	keys := make([]string, 0, len(heads))
	for k := range heads {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = appendHead(dst, majorMap, uint64(len(keys)))
	for _, k := range keys {
		h := heads[k]
		dst = appendHead(appendText(dst, k), majorMap, 2)
		dst = appendTextList(appendText(dst, "heads"), h.Heads)
		dst = appendNumber(appendText(dst, "timestamp"), h.Timestamp)
	}
	return dst
}
