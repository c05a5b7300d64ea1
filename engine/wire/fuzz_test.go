package wire

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode checks that Decode never panics, that it fails only with its
// sentinels, and that whatever it accepts re-encodes and decodes to an equal
// message.
func FuzzDecode(f *testing.F) {
	f.Add(hx(capturedJoin))
	f.Add(hx(capturedPeer))
	f.Add(cborxFrame("sync", capturedSyncPayload))
	f.Add(cborxFrame("request", requestPayload))
	f.Add(hx("bf", ts("type"), "7f", ts("sy"), ts("nc"), "ff", ts("senderId"), ts("cli"),
		ts("targetId"), ts("srv"), ts("documentId"), ts(capturedDocID), ts("data"),
		"5f", bs(hx("42 00 00 01")), bs(hx("00 00 00 02 02 84")), "ff", "ff"))
	f.Add(hx("f6"))
	f.Add(hx("a2", ts("type"), ts("gossip"), ts("senderId"), ts("cli")))
	for _, m := range sampleMessages() {
		frame, err := Encode(m)
		require.NoError(f, err)
		f.Add(frame)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 30 {
		frame, err := Encode(randomMessage(r))
		require.NoError(f, err)
		f.Add(frame)
	}

	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v\n%+v", err, m)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n%x", err, again)
		}
		require.Equal(t, m, m2)
	})
}

// FuzzParseDocumentID checks that parsing never panics, that what parses
// has 1 to 64 bytes and formats back to the same string (base58 is a
// bijection), and that DecodeHead agrees with it.
func FuzzParseDocumentID(f *testing.F) {
	for _, s := range []string{
		capturedDocID, "2VuWtLDAKHGMJ2xNrtkQoNTBRQAB", "3QJmnh", "1Wh4bh", "", "1", "0OIl",
		EncodeHead([32]byte{1, 2, 3}), capturedDocID[:len(capturedDocID)-1] + "Z",
		"1NS17iag9jJgTHD1VXjvLCEnZuQ3rJED9L",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseDocumentID(s)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidDocumentID)
			require.False(t, validDocumentID(s))
			_, err := DecodeHead(s)
			require.ErrorIs(t, err, ErrInvalidHead)
			return
		}
		require.True(t, validDocumentID(s))
		require.NotEmpty(t, b)
		require.LessOrEqual(t, len(b), maxCheckPayload)
		require.Equal(t, s, FormatDocumentID(b))
		if h, err := DecodeHead(s); err == nil {
			require.Len(t, b, 32)
			require.Equal(t, s, EncodeHead(h))
		} else {
			require.NotEqual(t, 32, len(b))
		}
	})
}
