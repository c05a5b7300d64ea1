package wire

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// Decoding limits. A frame is at most what the transport lets through; these
// bound the work a hostile frame of that size can cause.
const (
	maxNestedLevels  = 16
	maxArrayElements = 100_000
	maxMapPairs      = 100_000
)

// decMode is the CBOR decoder every Decode uses: bounded nesting and sizes,
// indefinite lengths allowed (cbor-x accepts them), duplicate map keys
// rejected, map keys matched to fields case-sensitively, UTF-8 checked.
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   maxNestedLevels,
		MaxArrayElements:  maxArrayElements,
		MaxMapPairs:       maxMapPairs,
		IndefLength:       cbor.IndefLengthAllowed,
		TagsMd:            cbor.TagsAllowed,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("wire: invalid CBOR decoding options: " + err.Error())
	}
	return dm
}()

// raw is one CBOR data item as it appears in the frame, not copied; nil when
// the key is absent. fxamacker/cbor hands an Unmarshaler a sub-slice of the
// input, which is only read before Decode returns.
type raw []byte

func (r *raw) UnmarshalCBOR(b []byte) error {
	*r = b
	return nil
}

// wireMessage collects the top-level fields of every message type. Which of
// them are read, and how, depends on type; the others are skipped like
// unknown keys, so a field of another type does not make a frame malformed.
type wireMessage struct {
	Type                      raw `cbor:"type"`
	SenderID                  raw `cbor:"senderId"`
	TargetID                  raw `cbor:"targetId"`
	PeerMetadata              raw `cbor:"peerMetadata"`
	SupportedProtocolVersions raw `cbor:"supportedProtocolVersions"`
	SelectedProtocolVersion   raw `cbor:"selectedProtocolVersion"`
	Message                   raw `cbor:"message"`
	DocumentID                raw `cbor:"documentId"`
	Data                      raw `cbor:"data"`
	Count                     raw `cbor:"count"`
	SessionID                 raw `cbor:"sessionId"`
	Add                       raw `cbor:"add"`
	Remove                    raw `cbor:"remove"`
	NewHeads                  raw `cbor:"newHeads"`
}

type wirePeerMetadata struct {
	StorageID   raw `cbor:"storageId"`
	IsEphemeral raw `cbor:"isEphemeral"`
}

type wireHeadsInfo struct {
	Heads     raw `cbor:"heads"`
	Timestamp raw `cbor:"timestamp"`
}

// CBOR major types.
const (
	majorUint   = 0
	majorNegInt = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
)

// Simple values and the 2-byte head of tag 64 (uint8 typed array).
const (
	cborFalse     = 0xf4
	cborTrue      = 0xf5
	cborNull      = 0xf6
	cborUndefined = 0xf7
	cborFloat16   = 0xf9
	cborFloat32   = 0xfa
	cborFloat64   = 0xfb
	tagUint8Array = 64
)

// selfDescribed is the head of tag 55799, which may prefix any CBOR item
// and means nothing.
var selfDescribed = [3]byte{0xd9, 0xd9, 0xf7}

// Decode decodes one frame: a CBOR map with text keys holding one message.
//
// It checks that type is a known text value (else the error wraps
// ErrUnknownType and the returned Message holds Type and, if it is text,
// SenderID), and that the fields the type requires are present with the
// right CBOR type and pass Message.Validate; any other problem is an error
// wrapping ErrMalformed that names the field. Unknown keys and the fields of
// other types are ignored. Following cbor-x, optional fields (peerMetadata,
// its storageId, supportedProtocolVersions, add, remove) may be null or
// undefined; count and timestamp may be unsigned integers or floats; data
// must be a byte string, optionally under tag 64 (a uint8 typed array,
// which cbor-x writes when tagUint8Array is on). Bytes after the map are an
// error. Decode copies data, so the result does not alias frame.
func Decode(frame []byte) (Message, error) {
	body := frame
	if len(body) >= 3 && [3]byte(body[:3]) == selfDescribed {
		body = body[3:]
	}
	if len(body) == 0 {
		return Message{}, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if major(body[0]) != majorMap {
		return Message{}, fmt.Errorf("%w: top level is %s, want a map", ErrMalformed, kind(body))
	}
	var w wireMessage
	if err := decMode.Unmarshal(body, &w); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// fxamacker/cbor rejects most non-text keys but lets integer keys
	// through as unknown; the body is well-formed now, so walk it to check.
	if k := nonTextKey(body); k != "" {
		return Message{}, fmt.Errorf("%w: top-level map has %s as a key, want text keys", ErrMalformed, k)
	}
	if w.Type == nil {
		return Message{}, malformed("", "type", "missing")
	}
	t, err := text("", "type", w.Type)
	if err != nil {
		return Message{}, err
	}
	if !knownType(t) {
		m := Message{Type: t}
		if w.SenderID != nil && major(w.SenderID[0]) == majorText {
			m.SenderID, _ = text(t, "senderId", w.SenderID)
		}
		return m, fmt.Errorf("%w: %q", ErrUnknownType, truncate(t))
	}
	m, err := w.message(t)
	if err != nil {
		return Message{}, err
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// message converts the fields type t uses.
func (w *wireMessage) message(t string) (Message, error) {
	m := Message{Type: t}
	var err error
	if m.SenderID, err = requiredText(t, "senderId", w.SenderID); err != nil {
		return Message{}, err
	}
	if hasTarget(t) {
		if m.TargetID, err = requiredText(t, "targetId", w.TargetID); err != nil {
			return Message{}, err
		}
	}
	if hasDocument(t) {
		if m.DocumentID, err = requiredText(t, "documentId", w.DocumentID); err != nil {
			return Message{}, err
		}
	}
	if hasData(t) {
		if m.Data, err = byteString(t, "data", w.Data); err != nil {
			return Message{}, err
		}
	}
	switch t {
	case TypeJoin:
		if m.PeerMetadata, err = peerMetadata(t, w.PeerMetadata); err != nil {
			return Message{}, err
		}
		if m.SupportedProtocolVersions, err = optionalTextList(t, "supportedProtocolVersions", w.SupportedProtocolVersions); err != nil {
			return Message{}, err
		}
	case TypePeer:
		if m.PeerMetadata, err = peerMetadata(t, w.PeerMetadata); err != nil {
			return Message{}, err
		}
		if m.SelectedProtocolVersion, err = requiredText(t, "selectedProtocolVersion", w.SelectedProtocolVersion); err != nil {
			return Message{}, err
		}
	case TypeError:
		if m.ErrorMessage, err = requiredText(t, "message", w.Message); err != nil {
			return Message{}, err
		}
	case TypeEphemeral:
		if m.Count, err = count(t, "count", w.Count); err != nil {
			return Message{}, err
		}
		if m.SessionID, err = requiredText(t, "sessionId", w.SessionID); err != nil {
			return Message{}, err
		}
	case TypeRemoteSubscriptionChange:
		if m.Add, err = optionalTextList(t, "add", w.Add); err != nil {
			return Message{}, err
		}
		if m.Remove, err = optionalTextList(t, "remove", w.Remove); err != nil {
			return Message{}, err
		}
	case TypeRemoteHeadsChanged:
		if m.NewHeads, err = newHeads(t, w.NewHeads); err != nil {
			return Message{}, err
		}
	}
	return m, nil
}

func major(b byte) byte { return b >> 5 }

// isNil reports whether r is absent, null or undefined.
func isNil(r raw) bool { return len(r) == 0 || r[0] == cborNull || r[0] == cborUndefined }

// kind names the CBOR type of the item r for error messages.
func kind(r raw) string {
	if len(r) == 0 {
		return "nothing"
	}
	switch major(r[0]) {
	case majorUint:
		return "an unsigned integer"
	case majorNegInt:
		return "a negative integer"
	case majorBytes:
		return "a byte string"
	case majorText:
		return "a text string"
	case majorArray:
		return "an array"
	case majorMap:
		return "a map"
	case majorTag:
		return "a tagged item"
	}
	switch r[0] {
	case cborFalse, cborTrue:
		return "a boolean"
	case cborNull:
		return "null"
	case cborUndefined:
		return "undefined"
	case cborFloat16, cborFloat32, cborFloat64:
		return "a float"
	}
	return "a simple value"
}

func wrongType(typ, field, want string, r raw) error {
	return malformed(typ, field, "want %s, got %s", want, kind(r))
}

// text decodes a present text string.
func text(typ, field string, r raw) (string, error) {
	if len(r) == 0 || major(r[0]) != majorText {
		return "", wrongType(typ, field, "a text string", r)
	}
	body, ok := definite(r)
	if !ok {
		return decodeAs[string](typ, field, r)
	}
	// The common case needs no decoder: r is well-formed, so its length is
	// right.
	if !utf8.Valid(body) {
		return "", malformed(typ, field, "not valid UTF-8")
	}
	return intern(body), nil
}

// decodeAs decodes r into a T with the package's decoder. It is a function
// of its own because the T escapes to the heap.
func decodeAs[T any](typ, field string, r raw) (T, error) {
	var v T
	if err := decMode.Unmarshal(r, &v); err != nil {
		return v, malformed(typ, field, "%v", err)
	}
	return v, nil
}

// definite returns the content of the well-formed definite-length byte or
// text string r.
func definite(r raw) ([]byte, bool) {
	if r[0]&0x1f == 31 {
		return nil, false
	}
	off, n, _ := itemHead(r, 0)
	return r[off : off+int(n)], true
}

// intern returns the message types, which Decode sees in every frame,
// without allocating.
func intern(b []byte) string {
	switch string(b) {
	case TypeSync:
		return TypeSync
	case TypeRequest:
		return TypeRequest
	case TypeEphemeral:
		return TypeEphemeral
	case TypeDocUnavailable:
		return TypeDocUnavailable
	}
	return string(b)
}

func requiredText(typ, field string, r raw) (string, error) {
	if isNil(r) {
		return "", malformed(typ, field, "missing")
	}
	return text(typ, field, r)
}

// optionalTextList decodes an array of text strings; absent, null and
// undefined give nil, an empty array a non-nil empty slice.
func optionalTextList(typ, field string, r raw) ([]string, error) {
	if isNil(r) {
		return nil, nil
	}
	return textList(typ, field, r)
}

func textList(typ, field string, r raw) ([]string, error) {
	if major(r[0]) != majorArray {
		return nil, wrongType(typ, field, "an array of text strings", r)
	}
	items, err := decodeAs[[]raw](typ, field, r)
	if err != nil {
		return nil, err
	}
	l := make([]string, 0, len(items))
	for _, it := range items {
		s, err := text(typ, field, it)
		if err != nil {
			return nil, err
		}
		l = append(l, s)
	}
	return l, nil
}

// byteString decodes a present byte string, bare or under tag 64, into a copy.
func byteString(typ, field string, r raw) ([]byte, error) {
	if isNil(r) {
		return nil, malformed(typ, field, "missing")
	}
	body := r
	if len(body) >= 2 && body[0] == 0xd8 && body[1] == tagUint8Array {
		body = body[2:]
	}
	if len(body) == 0 || major(body[0]) != majorBytes {
		return nil, wrongType(typ, field, "a byte string", r)
	}
	if content, ok := definite(body); ok {
		return append([]byte(nil), content...), nil
	}
	return decodeAs[[]byte](typ, field, body)
}

// number decodes an unsigned or negative integer or a float as a finite
// float64; integers beyond 2^53 round, as they do in JavaScript.
func number(typ, field string, r raw) (float64, error) {
	if isNil(r) {
		return 0, malformed(typ, field, "missing")
	}
	switch {
	case major(r[0]) == majorUint, major(r[0]) == majorNegInt,
		r[0] == cborFloat16, r[0] == cborFloat32, r[0] == cborFloat64:
	default:
		return 0, wrongType(typ, field, "a number", r)
	}
	f, err := decodeAs[float64](typ, field, r)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, malformed(typ, field, "%v is not finite", f)
	}
	return f, nil
}

// count decodes ephemeral's count: an unsigned integer or an integral float
// in [0, MaxCount].
func count(typ, field string, r raw) (uint64, error) {
	if len(r) > 0 && major(r[0]) == majorUint {
		u, err := decodeAs[uint64](typ, field, r)
		if err != nil {
			return 0, err
		}
		if u > MaxCount {
			return 0, malformed(typ, field, "%d is above %d", u, uint64(MaxCount))
		}
		return u, nil
	}
	f, err := number(typ, field, r)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > MaxCount || f != math.Trunc(f) {
		return 0, malformed(typ, field, "%v is not an integer in [0, %d]", f, uint64(MaxCount))
	}
	return uint64(f), nil
}

func peerMetadata(typ string, r raw) (*PeerMetadata, error) {
	if isNil(r) {
		return nil, nil
	}
	if major(r[0]) != majorMap {
		return nil, wrongType(typ, "peerMetadata", "a map", r)
	}
	w, err := decodeAs[wirePeerMetadata](typ, "peerMetadata", r)
	if err != nil {
		return nil, err
	}
	md := &PeerMetadata{}
	if !isNil(w.StorageID) {
		s, err := text(typ, "peerMetadata.storageId", w.StorageID)
		if err != nil {
			return nil, err
		}
		md.StorageID = s
	}
	if !isNil(w.IsEphemeral) {
		switch w.IsEphemeral[0] {
		case cborTrue:
			md.IsEphemeral = true
		case cborFalse:
		default:
			return nil, wrongType(typ, "peerMetadata.isEphemeral", "a boolean", w.IsEphemeral)
		}
	}
	return md, nil
}

func newHeads(typ string, r raw) (map[string]HeadsInfo, error) {
	const field = "newHeads"
	if isNil(r) {
		return nil, malformed(typ, field, "missing")
	}
	if major(r[0]) != majorMap {
		return nil, wrongType(typ, field, "a map", r)
	}
	entries, err := decodeAs[map[string]raw](typ, field, r)
	if err != nil {
		return nil, err
	}
	heads := make(map[string]HeadsInfo, len(entries))
	// In key order, so that of several bad entries the same one is named.
	for _, storageID := range slices.Sorted(maps.Keys(entries)) {
		e := entries[storageID]
		sub := field + "[" + strconv.Quote(truncate(storageID)) + "]"
		if isNil(e) || major(e[0]) != majorMap {
			return nil, wrongType(typ, sub, "a map", e)
		}
		w, err := decodeAs[wireHeadsInfo](typ, sub, e)
		if err != nil {
			return nil, err
		}
		if isNil(w.Heads) {
			return nil, malformed(typ, sub+".heads", "missing")
		}
		l, err := textList(typ, sub+".heads", w.Heads)
		if err != nil {
			return nil, err
		}
		ts, err := number(typ, sub+".timestamp", w.Timestamp)
		if err != nil {
			return nil, err
		}
		heads[storageID] = HeadsInfo{Heads: l, Timestamp: ts}
	}
	return heads, nil
}

// nonTextKey returns the kind of the first key of the well-formed map b
// that is not a text string, or "" if all are text.
func nonTextKey(b []byte) string {
	off, n, indefinite := itemHead(b, 0)
	for i := uint64(0); indefinite || i < n; i++ {
		if indefinite && b[off] == 0xff {
			break
		}
		if major(b[off]) != majorText {
			return kind(b[off:])
		}
		off = skipItem(b, off)
		off = skipItem(b, off)
	}
	return ""
}

// itemHead reads the head of the well-formed item at b[off:] and returns
// the offset after it, its argument and whether its length is indefinite.
func itemHead(b []byte, off int) (next int, arg uint64, indefinite bool) {
	ai := b[off] & 0x1f
	off++
	switch {
	case ai < 24:
		return off, uint64(ai), false
	case ai == 24:
		return off + 1, uint64(b[off]), false
	case ai == 25:
		return off + 2, uint64(binary.BigEndian.Uint16(b[off:])), false
	case ai == 26:
		return off + 4, uint64(binary.BigEndian.Uint32(b[off:])), false
	case ai == 27:
		return off + 8, binary.BigEndian.Uint64(b[off:]), false
	}
	return off, 0, ai == 31
}

// skipItem returns the offset after the well-formed item at b[off:]. Its
// recursion is bounded by maxNestedLevels, which the decoder enforced.
func skipItem(b []byte, off int) int {
	mt := major(b[off])
	next, arg, indefinite := itemHead(b, off)
	off = next
	if indefinite {
		for b[off] != 0xff {
			off = skipItem(b, off)
		}
		return off + 1
	}
	switch mt {
	case majorBytes, majorText:
		return off + int(arg) // well-formed, so arg <= len(b)-off
	case majorArray:
		for range arg {
			off = skipItem(b, off)
		}
	case majorMap:
		for range arg {
			off = skipItem(b, off)
			off = skipItem(b, off)
		}
	case majorTag:
		return skipItem(b, off)
	}
	return off
}
