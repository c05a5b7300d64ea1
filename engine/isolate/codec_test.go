package isolate

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// fullRequest sets every field the codec carries, so that a field the
// encoder forgets (or writes in another order than the decoder reads)
// fails the round trip.
func fullRequest() request {
	return request{
		Op: opStep, Doc: docID, Actor: "0a0b",
		Chunks: []store.Chunk{
			{Key: store.Key{docID, store.KindSnapshot, "ab"}, Data: []byte("snap")},
			{Key: store.Key{docID, store.KindIncremental, "cd"}, Data: []byte("inc")},
		},
		In: engine.ReplicaInput{
			Attach: []engine.PeerInit{
				{Peer: "p1", StorageID: "s1", SyncState: []byte{0x43, 0}, Resumed: true},
				{Peer: "p2"},
			},
			Reset:      []engine.PeerKey{"p3"},
			Remote:     [][]byte{[]byte("remote")},
			Publish:    true,
			RawChanges: [][]byte{[]byte("raw1"), []byte("raw2")},
			Receive:    []engine.PeerData{{Peer: "p1", Data: []byte{0x42, 0, 0, 0, 0}}},
			Detach:     []engine.PeerKey{"p4"},
			Generate:   []engine.PeerKey{"p1", "p2"},
			Always:     []engine.PeerKey{"p5"},
			Flush:      true,
		},
	}
}

func fullResponse() response {
	var h1, h2 [32]byte
	h1[0], h2[31] = 1, 2
	return response{
		Err: "some error",
		Out: &output{
			Saves: []store.Op{
				{Key: store.Key{docID, store.KindSnapshot, "ab"}, Data: []byte("snap")},
				{Key: store.Key{docID, store.KindIncremental, "cd"}, Delete: true},
			},
			Messages:     []engine.PeerData{{Peer: "p1", Data: []byte("m1")}, {Peer: "p2", Data: []byte("m2")}},
			Rejected:     []rejected{{Peer: "p3", Err: "bad"}},
			TheirHeads:   map[engine.PeerKey][][32]byte{"p1": {h1, h2}, "p2": {h2}},
			ChangeErrors: []string{"", "failed"},
			Heads:        [][32]byte{h1, h2},
			HeadsChanged: true,
			Empty:        true,
			SavedBytes:   1234567,
			RemoteErrors: []string{"", ""},
			Published:    []byte("published"),
		},
		States: map[engine.PeerKey][]byte{"p1": {0x43, 0}, "p2": {0x43, 1}},
		Data:   []byte("saved document"),
	}
}

func TestCodecRoundTripsEveryField(t *testing.T) {
	req := fullRequest()
	got, err := decodeRequest(appendRequest(nil, &req))
	require.NoError(t, err)
	assert.Equal(t, req, got)

	resp := fullResponse()
	gotResp, err := decodeResponse(appendResponse(nil, &resp))
	require.NoError(t, err)
	assert.Equal(t, resp, gotResp)

	// The empty values round-trip too (empty lists decode as nil).
	var empty request
	got, err = decodeRequest(appendRequest(nil, &empty))
	require.NoError(t, err)
	assert.Equal(t, empty, got)
	var emptyResp response
	gotResp, err = decodeResponse(appendResponse(nil, &emptyResp))
	require.NoError(t, err)
	assert.Equal(t, emptyResp, gotResp)
}

func TestCodecRejectsBadFrames(t *testing.T) {
	req := fullRequest()
	b := appendRequest(nil, &req)
	// Every cut of a valid frame is an error, never a panic.
	for i := range len(b) {
		_, err := decodeRequest(b[:i])
		require.ErrorIs(t, err, errFrame, "cut at %d", i)
	}
	resp := fullResponse()
	rb := appendResponse(nil, &resp)
	for i := range len(rb) {
		_, err := decodeResponse(rb[:i])
		require.ErrorIs(t, err, errFrame, "cut at %d", i)
	}

	_, err := decodeRequest(append(b, 0))
	assert.ErrorIs(t, err, errFrame, "a trailing byte")
	bad := append([]byte{}, b...)
	bad[0] = codecVersion + 1
	_, err = decodeRequest(bad)
	assert.ErrorContains(t, err, "codec version")
	// A list count far beyond the frame allocates nothing and fails.
	_, err = decodeResponse([]byte{codecVersion, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	assert.ErrorContains(t, err, "list longer than the frame")
}

func FuzzDecodeRequest(f *testing.F) {
	req := fullRequest()
	f.Add(appendRequest(nil, &req))
	var empty request
	f.Add(appendRequest(nil, &empty))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRequest(b)
		if err != nil {
			require.ErrorIs(t, err, errFrame)
			return
		}
		// What decodes re-encodes to a frame that decodes the same.
		again, err := decodeRequest(appendRequest(nil, &got))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

func FuzzDecodeResponse(f *testing.F) {
	resp := fullResponse()
	f.Add(appendResponse(nil, &resp))
	var empty response
	f.Add(appendResponse(nil, &empty))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeResponse(b)
		if err != nil {
			require.ErrorIs(t, err, errFrame)
			return
		}
		again, err := decodeResponse(appendResponse(nil, &got))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

// BenchmarkCodec encodes and decodes the frames of a typical fan-out step:
// one sync message received, 100 readers to generate for, 100 messages
// out. It is the per-call cost of the pipe protocol besides the system
// calls (BenchmarkStep measures those).
func BenchmarkCodec(b *testing.B) {
	peers := make([]engine.PeerKey, 100)
	msgs := make([]engine.PeerData, 100)
	for i := range peers {
		peers[i] = engine.PeerKey(fmt.Sprintf("session-%d/peer-%08x", i, i*7919))
		msgs[i] = engine.PeerData{Peer: peers[i], Data: make([]byte, 240)}
	}
	req := request{Op: opStep, Doc: docID, In: engine.ReplicaInput{
		Receive:  []engine.PeerData{{Peer: peers[0], Data: make([]byte, 300)}},
		Generate: peers,
	}}
	var h [32]byte
	resp := response{Out: &output{
		Messages:   msgs,
		Saves:      []store.Op{{Key: store.Key{docID, store.KindIncremental, "ab"}, Data: make([]byte, 200)}},
		TheirHeads: map[engine.PeerKey][][32]byte{peers[0]: {h}},
		Heads:      [][32]byte{h},
	}}
	var buf []byte
	var bytes int
	b.ReportAllocs()
	for b.Loop() {
		buf = appendRequest(buf[:0], &req)
		bytes = len(buf)
		if _, err := decodeRequest(buf); err != nil {
			b.Fatal(err)
		}
		buf = appendResponse(buf[:0], &resp)
		bytes += len(buf)
		if _, err := decodeResponse(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bytes), "frame-bytes/op")
}
