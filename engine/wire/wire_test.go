package wire

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hx decodes hex fragments, ignoring spaces. Fragments written by ts (a
// CBOR text string) and bs (a CBOR byte string) can be mixed in.
func hx(parts ...string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Join(parts, ""), " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// ts returns the hex of s as a definite-length CBOR text string, written
// independently of the package's encoder.
func ts(s string) string { return head(3, len(s)) + hex.EncodeToString([]byte(s)) }

// bs returns the hex of b as a definite-length CBOR byte string.
func bs(b []byte) string { return head(2, len(b)) + hex.EncodeToString(b) }

func head(major, n int) string {
	switch {
	case n < 24:
		return fmt.Sprintf("%02x", major<<5|n)
	case n < 256:
		return fmt.Sprintf("%02x%02x", major<<5|24, n)
	case n < 65536:
		return fmt.Sprintf("%02x%04x", major<<5|25, n)
	}
	return fmt.Sprintf("%02x%08x", major<<5|26, n)
}

// Frames captured from automerge-repo 2.5.6 (docs/automerge-repo-protocol.md §2).
const (
	capturedJoin = "b90004 6474797065 646a6f696e 6873656e6465724964 63636c69" +
		" 6c706565724d65746164617461 b90002 6973746f726167654964 f7 6b6973457068656d6572616c f5" +
		" 7819 737570706f7274656450726f746f636f6c56657273696f6e73 8161 31"
	capturedPeer = "b90005 6474797065 6470656572 6873656e6465724964 63737276" +
		" 6c706565724d65746164617461 b90002 6973746f726167654964 f7 6b6973457068656d6572616c f5" +
		" 7773656c656374656450726f746f636f6c56657273696f6e 6131 68746172676574496463636c69"
	// capturedDocID is the documentId of the captured sync frame.
	capturedDocID = "25gQkE3hoP2bJikoQWmNSo2vm1CY"
	// requestPayload is the automerge sync message an empty doc sends.
	requestPayload = "42 00 00 01 00 00 00 02 02 84"
	// capturedSyncPayload is the 47-byte automerge sync message of the
	// captured sync frame. The notes elide the middle of its one head
	// (a46fc285…93cb), so those 26 bytes are filled with 0x11 here; every
	// other byte is as captured.
	capturedSyncPayload = "42 01 a46fc285 1111111111111111111111111111111111111111111111111111 93cb" +
		" 00 01 00 05010a077168 00 020284"
)

// cborxFrame writes a sync-like frame the way cbor-x lays out the captured
// sync frame: 16-bit map header, keys in the client's order.
func cborxFrame(typ, data string) []byte {
	return hx("b90005", ts("type"), ts(typ), ts("targetId"), ts("srv"),
		ts("data"), bs(hx(data)), ts("documentId"), ts(capturedDocID), ts("senderId"), ts("cli"))
}

func TestDecodeCapturedFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  Message
	}{
		{"join", hx(capturedJoin), Message{
			Type: TypeJoin, SenderID: "cli",
			PeerMetadata:              &PeerMetadata{StorageID: "", IsEphemeral: true},
			SupportedProtocolVersions: []string{ProtocolV1},
		}},
		{"peer", hx(capturedPeer), Message{
			Type: TypePeer, SenderID: "srv", TargetID: "cli",
			PeerMetadata:            &PeerMetadata{StorageID: "", IsEphemeral: true},
			SelectedProtocolVersion: ProtocolV1,
		}},
		{"sync", cborxFrame("sync", capturedSyncPayload), Message{
			Type: TypeSync, SenderID: "cli", TargetID: "srv", DocumentID: capturedDocID,
			Data: hx(capturedSyncPayload),
		}},
		{"request", cborxFrame("request", requestPayload), Message{
			Type: TypeRequest, SenderID: "cli", TargetID: "srv", DocumentID: capturedDocID,
			Data: hx(requestPayload),
		}},
		{"doc-unavailable", hx("b90004", ts("type"), ts("doc-unavailable"), ts("documentId"), ts(capturedDocID),
			ts("targetId"), ts("cli"), ts("senderId"), ts("storage-server-host")), Message{
			Type: TypeDocUnavailable, SenderID: "storage-server-host", TargetID: "cli", DocumentID: capturedDocID,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.frame)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	require.Len(t, hx(capturedSyncPayload), 47)
	require.Len(t, hx(requestPayload), 10)
}

func TestDecodeCopiesData(t *testing.T) {
	frame := cborxFrame("sync", requestPayload)
	m, err := Decode(frame)
	require.NoError(t, err)
	clear(frame)
	assert.Equal(t, hx(requestPayload), m.Data)
}

// sampleMessages has one valid message of every type, with the optional
// fields both set and unset.
func sampleMessages() []Message {
	heads := []string{EncodeHead([32]byte{1}), EncodeHead([32]byte{2})}
	return []Message{
		{Type: TypeJoin, SenderID: "peer-abc", PeerMetadata: &PeerMetadata{StorageID: "st-1", IsEphemeral: false},
			SupportedProtocolVersions: []string{ProtocolV1}},
		{Type: TypeJoin, SenderID: "peer-abc"},
		{Type: TypeJoin, SenderID: "peer-abc", SupportedProtocolVersions: []string{}},
		{Type: TypePeer, SenderID: "srv", TargetID: "peer-abc", SelectedProtocolVersion: ProtocolV1,
			PeerMetadata: &PeerMetadata{StorageID: "69e06126-0000-4000-8000-000000000000"}},
		{Type: TypePeer, SenderID: "srv", TargetID: "peer-abc", SelectedProtocolVersion: ProtocolV1},
		{Type: TypeError, SenderID: "srv", TargetID: "peer-abc", ErrorMessage: "unsupported protocol version"},
		{Type: TypeError, SenderID: "srv", TargetID: "peer-abc"},
		{Type: TypeLeave, SenderID: "peer-abc"},
		{Type: TypeSync, SenderID: "srv", TargetID: "peer-abc", DocumentID: capturedDocID, Data: hx(capturedSyncPayload)},
		{Type: TypeRequest, SenderID: "peer-abc", TargetID: "srv", DocumentID: capturedDocID, Data: hx(requestPayload)},
		{Type: TypeDocUnavailable, SenderID: "srv", TargetID: "peer-abc", DocumentID: capturedDocID},
		{Type: TypeEphemeral, SenderID: "peer-a", TargetID: "peer-b", DocumentID: capturedDocID,
			Count: 1, SessionID: "k3j5h", Data: []byte{0xa1, 0x61, 0x78, 0x01}},
		{Type: TypeEphemeral, SenderID: "peer-a", TargetID: "peer-b", DocumentID: capturedDocID,
			Count: 1 << 40, SessionID: "k3j5h", Data: []byte{0xf6}},
		{Type: TypeRemoteSubscriptionChange, SenderID: "peer-a", TargetID: "srv", Add: []string{"st-1", "st-2"}},
		{Type: TypeRemoteSubscriptionChange, SenderID: "peer-a", TargetID: "srv", Remove: []string{}},
		{Type: TypeRemoteSubscriptionChange, SenderID: "peer-a", TargetID: "srv"},
		{Type: TypeRemoteHeadsChanged, SenderID: "srv", TargetID: "peer-b", DocumentID: capturedDocID,
			NewHeads: map[string]HeadsInfo{
				"st-a": {Heads: heads, Timestamp: 1795629327576},
				"st-b": {Heads: []string{}, Timestamp: 12.5},
			}},
		{Type: TypeRemoteHeadsChanged, SenderID: "srv", TargetID: "peer-b", DocumentID: capturedDocID,
			NewHeads: map[string]HeadsInfo{}},
	}
}

func TestRoundTripEveryType(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range sampleMessages() {
		seen[m.Type] = true
		t.Run(m.Type, func(t *testing.T) {
			frame, err := Encode(m)
			require.NoError(t, err)
			got, err := Decode(frame)
			require.NoError(t, err)
			assert.Equal(t, m, got)

			// A generic decoder sees text keys and a bare byte string.
			var generic map[any]any
			require.NoError(t, cbor.Unmarshal(frame, &generic))
			for k := range generic {
				assert.IsType(t, "", k)
			}
			if m.Data != nil {
				assert.Equal(t, m.Data, generic["data"])
			}
		})
	}
	for _, typ := range []string{TypeJoin, TypePeer, TypeError, TypeLeave, TypeSync, TypeRequest,
		TypeDocUnavailable, TypeEphemeral, TypeRemoteSubscriptionChange, TypeRemoteHeadsChanged} {
		assert.True(t, seen[typ], "no sample of %s", typ)
	}
}

func TestEncodeWritesOnlyTheFieldsOfTheType(t *testing.T) {
	m := Message{Type: TypeDocUnavailable, SenderID: "srv", TargetID: "cli", DocumentID: capturedDocID,
		Data: []byte{1}, Count: 3, SessionID: "s", ErrorMessage: "x", SelectedProtocolVersion: "1",
		PeerMetadata: &PeerMetadata{}, Add: []string{"a"}, NewHeads: map[string]HeadsInfo{}}
	frame, err := Encode(m)
	require.NoError(t, err)
	var generic map[string]any
	require.NoError(t, cbor.Unmarshal(frame, &generic))
	assert.Equal(t, map[string]any{"type": "doc-unavailable", "senderId": "srv", "targetId": "cli",
		"documentId": capturedDocID}, generic)
}

// TestEncodePeerAsCborxReadsIt checks the peer reply field by field as the JS
// client will see it, and against the frame the official server sent.
func TestEncodePeerAsCborxReadsIt(t *testing.T) {
	m := Message{Type: TypePeer, SenderID: "srv", TargetID: "cli", SelectedProtocolVersion: ProtocolV1,
		PeerMetadata: &PeerMetadata{IsEphemeral: true}}
	frame, err := Encode(m)
	require.NoError(t, err)

	var got, captured map[string]any
	require.NoError(t, cbor.Unmarshal(frame, &got))
	require.NoError(t, cbor.Unmarshal(hx(capturedPeer), &captured))
	assert.Equal(t, captured, got)

	keys := topLevelKeys(t, frame)
	assert.ElementsMatch(t, []string{"type", "senderId", "peerMetadata", "selectedProtocolVersion", "targetId"}, keys)
	var md map[string]cbor.RawMessage
	require.NoError(t, cbor.Unmarshal(mustRaw(t, frame, "peerMetadata"), &md))
	require.Len(t, md, 2)
	assert.Equal(t, cbor.RawMessage{0xf7}, md["storageId"], "absent storageId is undefined, as cbor-x writes it")
	assert.Equal(t, cbor.RawMessage{0xf5}, md["isEphemeral"])

	m.PeerMetadata = &PeerMetadata{StorageID: "69e06126-9e1e-4a3c-9c52-3d1ab0f8e2a1"}
	frame, err = Encode(m)
	require.NoError(t, err)
	require.NoError(t, cbor.Unmarshal(mustRaw(t, frame, "peerMetadata"), &md))
	assert.Equal(t, cbor.RawMessage(hx(ts("69e06126-9e1e-4a3c-9c52-3d1ab0f8e2a1"))), md["storageId"])
	assert.Equal(t, cbor.RawMessage{0xf4}, md["isEphemeral"])
}

func topLevelKeys(t *testing.T, frame []byte) []string {
	t.Helper()
	var fields map[string]cbor.RawMessage
	require.NoError(t, cbor.Unmarshal(frame, &fields))
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	return keys
}

func mustRaw(t *testing.T, frame []byte, key string) []byte {
	t.Helper()
	var fields map[string]cbor.RawMessage
	require.NoError(t, cbor.Unmarshal(frame, &fields))
	require.Contains(t, fields, key)
	return fields[key]
}

func TestEncodeNumbersAsCborx(t *testing.T) {
	eph := func(c uint64) Message {
		return Message{Type: TypeEphemeral, SenderID: "a", TargetID: "b", DocumentID: capturedDocID,
			Count: c, SessionID: "s", Data: []byte{1}}
	}
	for _, tt := range []struct {
		count uint64
		want  string
	}{
		{0, "00"},
		{23, "17"},
		{24, "1818"},
		{1<<32 - 1, "1affffffff"},
		{1 << 32, "fb41f0000000000000"},
		{MaxCount, "fb433fffffffffffff"},
	} {
		frame, err := Encode(eph(tt.count))
		require.NoError(t, err)
		assert.Equal(t, tt.want, hex.EncodeToString(mustRaw(t, frame, "count")), "count %d", tt.count)
	}

	rhc := func(ts float64) Message {
		return Message{Type: TypeRemoteHeadsChanged, SenderID: "a", TargetID: "b", DocumentID: capturedDocID,
			NewHeads: map[string]HeadsInfo{"s": {Heads: []string{}, Timestamp: ts}}}
	}
	for _, tt := range []struct {
		ts   float64
		want string
	}{
		{1795629327576, "fb427a213d924d8000"}, // Date.now(): above 2^32, a float64 as cbor-x writes it
		{1000, "1903e8"},
		{0.5, "fb3fe0000000000000"},
		{-1, "fbbff0000000000000"},
	} {
		frame, err := Encode(rhc(tt.ts))
		require.NoError(t, err)
		var nh map[string]map[string]cbor.RawMessage
		require.NoError(t, cbor.Unmarshal(mustRaw(t, frame, "newHeads"), &nh))
		assert.Equal(t, tt.want, hex.EncodeToString(nh["s"]["timestamp"]), "timestamp %v", tt.ts)
	}
}

func TestEncodeDataIsAnUntaggedByteString(t *testing.T) {
	data := make([]byte, 70000)
	frame, err := Encode(Message{Type: TypeSync, SenderID: "a", TargetID: "b", DocumentID: capturedDocID, Data: data})
	require.NoError(t, err)
	raw := mustRaw(t, frame, "data")
	assert.Equal(t, "5a00011170", hex.EncodeToString(raw[:5]))
	assert.Len(t, raw, 5+len(data))
}

func TestAppendEncode(t *testing.T) {
	m := sampleMessages()[8]
	want, err := Encode(m)
	require.NoError(t, err)
	prefix := []byte("prefix")
	got, err := AppendEncode(prefix, m)
	require.NoError(t, err)
	assert.Equal(t, append([]byte("prefix"), want...), got)

	got, err = AppendEncode(prefix, Message{Type: TypeSync})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Equal(t, []byte("prefix"), got)
}

func TestEncodeRejectsInvalid(t *testing.T) {
	valid := func(typ string) Message {
		for _, m := range sampleMessages() {
			if m.Type == typ {
				return m
			}
		}
		panic(typ)
	}
	tests := []struct {
		name   string
		mutate func(*Message)
		typ    string
		want   error
		field  string
	}{
		{"unknown type", func(m *Message) { m.Type = "gossip" }, TypeSync, ErrUnknownType, ""},
		{"empty type", func(m *Message) { m.Type = "" }, TypeSync, ErrUnknownType, ""},
		{"no senderId", func(m *Message) { m.SenderID = "" }, TypeLeave, ErrMalformed, "senderId"},
		{"senderId not UTF-8", func(m *Message) { m.SenderID = "\xff" }, TypeLeave, ErrMalformed, "senderId"},
		{"no targetId", func(m *Message) { m.TargetID = "" }, TypeSync, ErrMalformed, "targetId"},
		{"error without targetId", func(m *Message) { m.TargetID = "" }, TypeError, ErrMalformed, "targetId"},
		{"bad documentId", func(m *Message) { m.DocumentID = "not-base58" }, TypeSync, ErrInvalidDocumentID, "documentId"},
		{"empty documentId", func(m *Message) { m.DocumentID = "" }, TypeDocUnavailable, ErrInvalidDocumentID, "documentId"},
		{"empty data", func(m *Message) { m.Data = []byte{} }, TypeRequest, ErrMalformed, "data"},
		{"nil data", func(m *Message) { m.Data = nil }, TypeEphemeral, ErrMalformed, "data"},
		{"count too big", func(m *Message) { m.Count = MaxCount + 1 }, TypeEphemeral, ErrMalformed, "count"},
		{"no sessionId", func(m *Message) { m.SessionID = "" }, TypeEphemeral, ErrMalformed, "sessionId"},
		{"no selectedProtocolVersion", func(m *Message) { m.SelectedProtocolVersion = "" }, TypePeer, ErrMalformed, "selectedProtocolVersion"},
		{"storageId not UTF-8", func(m *Message) { m.PeerMetadata = &PeerMetadata{StorageID: "\xc3"} }, TypeJoin, ErrMalformed, "peerMetadata"},
		{"version not UTF-8", func(m *Message) { m.SupportedProtocolVersions = []string{"\xc3"} }, TypeJoin, ErrMalformed, "supportedProtocolVersions"},
		{"add not UTF-8", func(m *Message) { m.Add = []string{"\xc3"} }, TypeRemoteSubscriptionChange, ErrMalformed, "add"},
		{"nil newHeads", func(m *Message) { m.NewHeads = nil }, TypeRemoteHeadsChanged, ErrMalformed, "newHeads"},
		{"nil heads", func(m *Message) { m.NewHeads = map[string]HeadsInfo{"s": {}} }, TypeRemoteHeadsChanged, ErrMalformed, "newHeads"},
		{"NaN timestamp", func(m *Message) {
			m.NewHeads = map[string]HeadsInfo{"s": {Heads: []string{}, Timestamp: math.NaN()}}
		}, TypeRemoteHeadsChanged, ErrMalformed, "newHeads"},
		{"infinite timestamp", func(m *Message) {
			m.NewHeads = map[string]HeadsInfo{"s": {Heads: []string{}, Timestamp: math.Inf(1)}}
		}, TypeRemoteHeadsChanged, ErrMalformed, "newHeads"},
		{"error message not UTF-8", func(m *Message) { m.ErrorMessage = "\xff" }, TypeError, ErrMalformed, "message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valid(tt.typ)
			tt.mutate(&m)
			_, err := Encode(m)
			require.ErrorIs(t, err, tt.want)
			if tt.field != "" {
				assert.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), fmt.Sprintf("%q", tt.field))
			}
		})
	}
}

// TestDecodeLiberal covers what cbor-x writes or accepts and Decode must too.
func TestDecodeLiberal(t *testing.T) {
	syncWant := Message{Type: TypeSync, SenderID: "cli", TargetID: "srv", DocumentID: capturedDocID, Data: hx(requestPayload)}
	ephWant := func(count uint64) Message {
		return Message{Type: TypeEphemeral, SenderID: "a", TargetID: "b", DocumentID: capturedDocID,
			Count: count, SessionID: "s", Data: []byte{0xf6}}
	}
	eph := func(count string) []byte {
		return hx("a7", ts("type"), ts("ephemeral"), ts("senderId"), ts("a"), ts("targetId"), ts("b"),
			ts("documentId"), ts(capturedDocID), ts("count"), count, ts("sessionId"), ts("s"), ts("data"), "41f6")
	}
	rhcWant := func(ts float64) Message {
		return Message{Type: TypeRemoteHeadsChanged, SenderID: "a", TargetID: "b", DocumentID: capturedDocID,
			NewHeads: map[string]HeadsInfo{"st": {Heads: []string{"h"}, Timestamp: ts}}}
	}
	rhc := func(timestamp string) []byte {
		return hx("a5", ts("type"), ts("remote-heads-changed"), ts("senderId"), ts("a"), ts("targetId"), ts("b"),
			ts("documentId"), ts(capturedDocID), ts("newHeads"),
			"a1", ts("st"), "a2", ts("heads"), "81", ts("h"), ts("timestamp"), timestamp)
	}
	rsc := func(add, remove string) []byte {
		return hx("a5", ts("type"), ts("remote-subscription-change"), ts("senderId"), ts("a"), ts("targetId"), ts("b"),
			ts("add"), add, ts("remove"), remove)
	}
	tests := []struct {
		name  string
		frame []byte
		want  Message
	}{
		{"compact map header", hx("a5", ts("type"), ts("sync"), ts("senderId"), ts("cli"), ts("targetId"), ts("srv"),
			ts("documentId"), ts(capturedDocID), ts("data"), bs(hx(requestPayload))), syncWant},
		{"indefinite-length map and strings", hx("bf", ts("type"), "7f", ts("sy"), ts("nc"), "ff", ts("senderId"), ts("cli"),
			ts("targetId"), ts("srv"), ts("documentId"), ts(capturedDocID), ts("data"),
			"5f", bs(hx("42 00 00 01")), bs(hx("00 00 00 02 02 84")), "ff", "ff"), syncWant},
		{"data as tag 64 uint8 array", hx("a5", ts("type"), ts("sync"), ts("senderId"), ts("cli"), ts("targetId"), ts("srv"),
			ts("documentId"), ts(capturedDocID), ts("data"), "d840", bs(hx(requestPayload))), syncWant},
		{"self-described CBOR tag", append(hx("d9d9f7"), cborxFrame("sync", requestPayload)...), syncWant},
		{"unknown keys and fields of other types ignored", hx("a8", ts("type"), ts("sync"), ts("senderId"), ts("cli"),
			ts("targetId"), ts("srv"), ts("documentId"), ts(capturedDocID), ts("data"), bs(hx(requestPayload)),
			ts("count"), ts("not a number"), ts("newHeads"), "f6", ts("extra"), "a1 00 80"), syncWant},
		{"join without metadata or versions", hx("a2", ts("type"), ts("join"), ts("senderId"), ts("cli")),
			Message{Type: TypeJoin, SenderID: "cli"}},
		{"join with undefined metadata and null versions", hx("a4", ts("type"), ts("join"), ts("senderId"), ts("cli"),
			ts("peerMetadata"), "f7", ts("supportedProtocolVersions"), "f6"), Message{Type: TypeJoin, SenderID: "cli"}},
		{"peerMetadata without isEphemeral, null storageId", hx("a3", ts("type"), ts("join"), ts("senderId"), ts("cli"),
			ts("peerMetadata"), "a1", ts("storageId"), "f6"),
			Message{Type: TypeJoin, SenderID: "cli", PeerMetadata: &PeerMetadata{}}},
		{"count as uint", eph("05"), ephWant(5)},
		{"count as float64", eph("fb4014000000000000"), ephWant(5)},
		{"count as float16", eph("f94500"), ephWant(5)},
		{"count as negative zero", eph("f98000"), ephWant(0)},
		{"count = MaxCount as uint", eph("1b001fffffffffffff"), ephWant(MaxCount)},
		{"timestamp as uint", rhc("1903e8"), rhcWant(1000)},
		{"timestamp as float64", rhc("fb427a213d924d8000"), rhcWant(1795629327576)},
		{"timestamp as float32", rhc("fa3fc00000"), rhcWant(1.5)},
		{"negative timestamp", rhc("20"), rhcWant(-1)},
		{"add undefined, remove null", rsc("f7", "f6"),
			Message{Type: TypeRemoteSubscriptionChange, SenderID: "a", TargetID: "b"}},
		{"add empty, remove undefined (observed)", rsc("80", "f7"),
			Message{Type: TypeRemoteSubscriptionChange, SenderID: "a", TargetID: "b", Add: []string{}}},
		{"add and remove", rsc("81"+ts("x"), "82"+ts("y")+ts("z")), Message{Type: TypeRemoteSubscriptionChange,
			SenderID: "a", TargetID: "b", Add: []string{"x"}, Remove: []string{"y", "z"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.frame)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	syncFields := func(skip string, extra ...string) []byte {
		fields := map[string]string{
			"type": ts("sync"), "senderId": ts("cli"), "targetId": ts("srv"),
			"documentId": ts(capturedDocID), "data": bs(hx(requestPayload)),
		}
		parts := []string{}
		n := 0
		for _, k := range []string{"type", "senderId", "targetId", "documentId", "data"} {
			if k == skip {
				continue
			}
			parts = append(parts, ts(k), fields[k])
			n++
		}
		for i := 0; i < len(extra); i += 2 {
			parts = append(parts, ts(extra[i]), extra[i+1])
			n++
		}
		return hx(append([]string{head(5, n)}, parts...)...)
	}
	eph := func(count, session string) []byte {
		return hx("a7", ts("type"), ts("ephemeral"), ts("senderId"), ts("a"), ts("targetId"), ts("b"),
			ts("documentId"), ts(capturedDocID), ts("count"), count, ts("sessionId"), session, ts("data"), "41f6")
	}
	join := func(k, v string) []byte {
		return hx("a3", ts("type"), ts("join"), ts("senderId"), ts("cli"), ts(k), v)
	}
	rhc := func(newHeads string) []byte {
		return hx("a5", ts("type"), ts("remote-heads-changed"), ts("senderId"), ts("a"), ts("targetId"), ts("b"),
			ts("documentId"), ts(capturedDocID), ts("newHeads"), newHeads)
	}
	badChecksum := capturedDocID[:len(capturedDocID)-1] + "Z"
	deep := strings.Repeat("81", 40) + "00"

	tests := []struct {
		name  string
		frame []byte
		want  error
		msg   string // a substring of the error
	}{
		{"empty frame", nil, ErrMalformed, "empty frame"},
		{"CBOR null", hx("f6"), ErrMalformed, "top level is null"},
		{"CBOR undefined", hx("f7"), ErrMalformed, "top level is undefined"},
		{"array at top level", hx("81", ts("sync")), ErrMalformed, "top level is an array"},
		{"text at top level", hx(ts("sync")), ErrMalformed, "top level is a text string"},
		{"tagged map", hx("c1 a0"), ErrMalformed, "top level is a tagged item"},
		{"truncated map", hx("a2", ts("type")), ErrMalformed, "unexpected EOF"},
		{"type missing", hx("a1", ts("senderId"), ts("cli")), ErrMalformed, `"type": missing`},
		{"type is a number", hx("a2", ts("type"), "01", ts("senderId"), ts("cli")), ErrMalformed, `"type": want a text string, got an unsigned integer`},
		{"type is null", hx("a1", ts("type"), "f6"), ErrMalformed, `"type": want a text string, got null`},
		{"type key in another case", hx("a2", ts("Type"), ts("sync"), ts("senderId"), ts("cli")), ErrMalformed, `"type": missing`},
		{"type unknown", hx("a2", ts("type"), ts("gossip"), ts("senderId"), ts("cli")), ErrUnknownType, `"gossip"`},
		{"type in another case", hx("a2", ts("type"), ts("Sync"), ts("senderId"), ts("cli")), ErrUnknownType, `"Sync"`},
		{"integer key", hx("a3", ts("type"), ts("leave"), ts("senderId"), ts("cli"), "01", "02"), ErrMalformed, "an unsigned integer as a key"},
		{"byte string key", hx("a3", ts("type"), ts("leave"), ts("senderId"), ts("cli"), "41 00", "02"), ErrMalformed, "byte string"},
		{"duplicate type", hx("a3", ts("type"), ts("leave"), ts("senderId"), ts("cli"), ts("type"), ts("sync")), ErrMalformed, "duplicate map key"},
		{"duplicate unknown key", hx("a4", ts("type"), ts("leave"), ts("senderId"), ts("cli"), ts("x"), "01", ts("x"), "02"), ErrMalformed, "duplicate map key"},
		{"leave without senderId", hx("a1", ts("type"), ts("leave")), ErrMalformed, `leave: field "senderId": missing`},
		{"senderId is a number", hx("a2", ts("type"), ts("leave"), ts("senderId"), "07"), ErrMalformed, `"senderId": want a text string`},
		{"senderId empty", hx("a2", ts("type"), ts("leave"), ts("senderId"), "60"), ErrMalformed, `"senderId": missing or empty`},
		{"senderId not UTF-8", hx("a2", ts("type"), ts("leave"), ts("senderId"), "61ff"), ErrMalformed, `"senderId": not valid UTF-8`},
		{"sync without data", syncFields("data"), ErrMalformed, `sync: field "data": missing`},
		{"sync data as text", syncFields("data", "data", ts("QgAAAQAAAAICBA==")), ErrMalformed, `"data": want a byte string, got a text string`},
		{"sync data as array", syncFields("data", "data", "8101"), ErrMalformed, `"data": want a byte string, got an array`},
		{"sync data under another tag", syncFields("data", "data", "d84d"+bs([]byte{1})), ErrMalformed, `"data": want a byte string, got a tagged item`},
		{"sync data empty", syncFields("data", "data", "40"), ErrMalformed, `"data": empty`},
		{"sync without documentId", syncFields("documentId"), ErrMalformed, `"documentId": missing`},
		{"sync documentId bad checksum", syncFields("documentId", "documentId", ts(badChecksum)), ErrInvalidDocumentID, `"documentId"`},
		{"sync documentId not base58", syncFields("documentId", "documentId", ts("0OIl")), ErrInvalidDocumentID, `"documentId"`},
		{"sync documentId a UUID", syncFields("documentId", "documentId", ts("6b8d1e3a-4f52-471a-9c0e-112233445566")), ErrInvalidDocumentID, `"documentId"`},
		{"sync without targetId", syncFields("targetId"), ErrMalformed, `"targetId": missing`},
		{"sync targetId undefined", syncFields("targetId", "targetId", "f7"), ErrMalformed, `"targetId": missing`},
		{"ephemeral negative count", eph("20", ts("s")), ErrMalformed, `"count": -1 is not an integer`},
		{"ephemeral fractional count", eph("fb3ff8000000000000", ts("s")), ErrMalformed, `"count": 1.5 is not an integer`},
		{"ephemeral NaN count", eph("f97e00", ts("s")), ErrMalformed, `"count": NaN is not finite`},
		{"ephemeral infinite count", eph("f97c00", ts("s")), ErrMalformed, `"count": +Inf is not finite`},
		{"ephemeral count above 2^53-1", eph("1b0020000000000000", ts("s")), ErrMalformed, `"count": 9007199254740992 is above`},
		{"ephemeral count as float above 2^53-1", eph("fb4340000000000000", ts("s")), ErrMalformed, `"count": 9.007199254740992e+15 is not an integer`},
		{"ephemeral count as text", eph(ts("1"), ts("s")), ErrMalformed, `"count": want a number, got a text string`},
		{"ephemeral count as bignum", eph("c2 41 01", ts("s")), ErrMalformed, `"count": want a number, got a tagged item`},
		{"ephemeral count missing", eph("f7", ts("s")), ErrMalformed, `"count": missing`},
		{"ephemeral sessionId missing", eph("01", "f6"), ErrMalformed, `"sessionId": missing`},
		{"peerMetadata an array", join("peerMetadata", "80"), ErrMalformed, `"peerMetadata": want a map, got an array`},
		{"isEphemeral as text", join("peerMetadata", "a1"+ts("isEphemeral")+ts("true")), ErrMalformed, `"peerMetadata.isEphemeral": want a boolean`},
		{"storageId as number", join("peerMetadata", "a1"+ts("storageId")+"01"), ErrMalformed, `"peerMetadata.storageId": want a text string`},
		{"peerMetadata duplicate key", join("peerMetadata", "a2"+ts("storageId")+"f7"+ts("storageId")+"f7"), ErrMalformed, "duplicate map key"},
		{"supportedProtocolVersions as text", join("supportedProtocolVersions", ts("1")), ErrMalformed, `"supportedProtocolVersions": want an array of text strings`},
		{"supportedProtocolVersions with a number", join("supportedProtocolVersions", "8101"), ErrMalformed, `"supportedProtocolVersions": want a text string, got an unsigned integer`},
		{"supportedProtocolVersions with null", join("supportedProtocolVersions", "81f6"), ErrMalformed, `"supportedProtocolVersions": want a text string, got null`},
		{"peer without selectedProtocolVersion", hx("a3", ts("type"), ts("peer"), ts("senderId"), ts("srv"), ts("targetId"), ts("cli")),
			ErrMalformed, `"selectedProtocolVersion": missing`},
		{"error without message", hx("a3", ts("type"), ts("error"), ts("senderId"), ts("srv"), ts("targetId"), ts("cli")),
			ErrMalformed, `"message": missing`},
		{"add as a map", hx("a4", ts("type"), ts("remote-subscription-change"), ts("senderId"), ts("a"), ts("targetId"), ts("b"), ts("add"), "a0"),
			ErrMalformed, `"add": want an array`},
		{"newHeads missing", rhc("f6"), ErrMalformed, `"newHeads": missing`},
		{"newHeads an array", rhc("80"), ErrMalformed, `"newHeads": want a map, got an array`},
		{"newHeads integer key", rhc("a1 01 a0"), ErrMalformed, `"newHeads"`},
		{"newHeads entry null", rhc("a1" + ts("st") + "f6"), ErrMalformed, `"newHeads[\"st\"]": want a map, got null`},
		{"newHeads heads missing", rhc("a1" + ts("st") + "a1" + ts("timestamp") + "01"), ErrMalformed, `"newHeads[\"st\"].heads": missing`},
		{"newHeads heads of numbers", rhc("a1" + ts("st") + "a2" + ts("heads") + "8101" + ts("timestamp") + "01"), ErrMalformed, `.heads": want a text string`},
		{"newHeads timestamp missing", rhc("a1" + ts("st") + "a1" + ts("heads") + "80"), ErrMalformed, `.timestamp": missing`},
		{"newHeads timestamp text", rhc("a1" + ts("st") + "a2" + ts("heads") + "80" + ts("timestamp") + ts("now")), ErrMalformed, `.timestamp": want a number`},
		{"newHeads timestamp infinite", rhc("a1" + ts("st") + "a2" + ts("heads") + "80" + ts("timestamp") + "f9fc00"), ErrMalformed, `.timestamp": -Inf is not finite`},
		{"deep nesting", syncFields("", "x", deep), ErrMalformed, "exceeded max nested level"},
		{"huge byte string, short input", hx("a1", ts("x"), "5a 7fffffff 00"), ErrMalformed, "unexpected EOF"},
		{"2^64-1 byte string", hx("a1", ts("x"), "5b ffffffffffffffff 00"), ErrMalformed, "too large"},
		{"huge map, short input", hx("ba 7fffffff", ts("type")), ErrMalformed, "exceeded max number of key-value pairs"},
		{"2^64-1 pair map", hx("bb ffffffffffffffff", ts("type")), ErrMalformed, "too large"},
		{"map just under the pair limit, short input", hx("ba 0001869f", ts("type")), ErrMalformed, "unexpected EOF"},
		{"huge array, short input", hx("a1", ts("x"), "9a 7fffffff 00"), ErrMalformed, "exceeded max number of elements"},
		{"huge text, short input", hx("a1", ts("type"), "7a 7fffffff 61"), ErrMalformed, "unexpected EOF"},
		{"trailing garbage", append(cborxFrame("sync", requestPayload), 0x00), ErrMalformed, "extraneous data"},
		{"two maps", append(cborxFrame("sync", requestPayload), cborxFrame("sync", requestPayload)...), ErrMalformed, "extraneous data"},
		{"unterminated indefinite map", hx("bf", ts("type"), ts("leave")), ErrMalformed, "unexpected EOF"},
		{"reserved additional info", hx("a1", ts("x"), "1c"), ErrMalformed, "invalid additional information"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.frame)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.msg)
			if tt.want != ErrUnknownType {
				assert.Equal(t, Message{}, m)
			}
		})
	}
}

func TestDecodeUnknownTypeKeepsSender(t *testing.T) {
	m, err := Decode(hx("a2", ts("type"), ts("gossip"), ts("senderId"), ts("peer-x")))
	require.ErrorIs(t, err, ErrUnknownType)
	assert.NotErrorIs(t, err, ErrMalformed)
	assert.Equal(t, Message{Type: "gossip", SenderID: "peer-x"}, m)
}

// randomMessage draws a valid message of a random type.
func randomMessage(r *rand.Rand) Message {
	str := func() string {
		const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-é"
		b := make([]byte, 1+r.IntN(20))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet)-2)]
		}
		return string(b)
	}
	strs := func() []string {
		if r.IntN(3) == 0 {
			return nil
		}
		l := make([]string, r.IntN(4))
		for i := range l {
			l[i] = str()
		}
		return l
	}
	data := func() []byte {
		b := make([]byte, 1+r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	docID := func() string {
		b := make([]byte, 1+r.IntN(maxCheckPayload))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return FormatDocumentID(b)
	}
	types := []string{TypeJoin, TypePeer, TypeError, TypeLeave, TypeSync, TypeRequest,
		TypeDocUnavailable, TypeEphemeral, TypeRemoteSubscriptionChange, TypeRemoteHeadsChanged}
	m := Message{Type: types[r.IntN(len(types))], SenderID: str()}
	if hasTarget(m.Type) {
		m.TargetID = str()
	}
	if hasDocument(m.Type) {
		m.DocumentID = docID()
	}
	if hasData(m.Type) {
		m.Data = data()
	}
	switch m.Type {
	case TypeJoin, TypePeer:
		if r.IntN(2) == 0 {
			m.PeerMetadata = &PeerMetadata{IsEphemeral: r.IntN(2) == 0}
			if r.IntN(2) == 0 {
				m.PeerMetadata.StorageID = str()
			}
		}
		if m.Type == TypeJoin {
			m.SupportedProtocolVersions = strs()
		} else {
			m.SelectedProtocolVersion = ProtocolV1
		}
	case TypeError:
		m.ErrorMessage = str()
	case TypeEphemeral:
		m.Count = r.Uint64N(MaxCount + 1)
		if r.IntN(2) == 0 {
			m.Count = r.Uint64N(1000)
		}
		m.SessionID = str()
	case TypeRemoteSubscriptionChange:
		m.Add, m.Remove = strs(), strs()
	case TypeRemoteHeadsChanged:
		m.NewHeads = map[string]HeadsInfo{}
		for range r.IntN(3) {
			heads := make([]string, r.IntN(3))
			for i := range heads {
				var h [32]byte
				for j := range h {
					h[j] = byte(r.Uint32())
				}
				heads[i] = EncodeHead(h)
			}
			ts := float64(r.Int64N(1 << 45))
			if r.IntN(2) == 0 {
				ts = r.Float64() * 1e12
			}
			m.NewHeads[str()] = HeadsInfo{Heads: heads, Timestamp: ts}
		}
	}
	return m
}

func TestRoundTripRandomMessages(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randomMessage(r)
		frame, err := Encode(m)
		require.NoError(t, err, "message %d: %+v", i, m)
		got, err := Decode(frame)
		require.NoError(t, err, "message %d: %x", i, frame)
		require.Equal(t, m, got, "message %d", i)
	}
}
