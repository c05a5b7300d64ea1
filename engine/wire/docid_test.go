package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Base58 vectors from bitcoin core's base58_encode_decode.json.
func TestBase58Vectors(t *testing.T) {
	for _, tt := range []struct{ hex, b58 string }{
		{"", ""},
		{"61", "2g"},
		{"626262", "a3gV"},
		{"636363", "aPEr"},
		{"73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"},
		{"00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"},
		{"516b6fcd0f", "ABnLTmg"},
		{"bf4f89001e670274dd", "3SEo3LWLoPntC"},
		{"572e4794", "3EFU7m"},
		{"ecac89cad93923c02321", "EJDM8drfXA6uyA"},
		{"10c8511e", "Rt5zm"},
		{"00000000000000000000", "1111111111"},
	} {
		b, err := hex.DecodeString(tt.hex)
		require.NoError(t, err)
		assert.Equal(t, tt.b58, string(b58Append(nil, b)), "encode %s", tt.hex)
		var buf [128]byte
		got, ok := b58Decode(tt.b58, buf[:])
		require.True(t, ok, "decode %s", tt.b58)
		assert.Equal(t, tt.hex, hex.EncodeToString(got), "decode %s", tt.b58)
	}
}

func TestParseDocumentID(t *testing.T) {
	for _, tt := range []struct{ id, hex string }{
		{capturedDocID, "4d91ebe6f5c64c63acb994b1b97df19f"},
		{"2VuWtLDAKHGMJ2xNrtkQoNTBRQAB", "6b8d1e3a4f52471a9c0e112233445566"},
		// The payload of a base58 vector above, with its real checksum
		// (computed with an independent Python implementation).
		{"1NS17iag9jJgTHD1VXjvLCEnZuQ3rJED9L", "00eb15231dfceb60925886b67d065299925915aeb1"},
		{"1Wh4bh", "00"},
		{strings.Repeat("1", 64) + "6oUsJe", strings.Repeat("00", 64)},
	} {
		b, err := ParseDocumentID(tt.id)
		require.NoError(t, err, tt.id)
		assert.Equal(t, tt.hex, hex.EncodeToString(b))
		assert.Equal(t, tt.id, FormatDocumentID(b))
	}

	max := bytes.Repeat([]byte{0xff}, maxCheckPayload)
	id := FormatDocumentID(max)
	assert.Len(t, id, maxCheckString)
	b, err := ParseDocumentID(id)
	require.NoError(t, err)
	assert.Equal(t, max, b)

	for _, bad := range []string{
		"",
		"3QJmnh",                             // valid checksum of an empty payload
		"1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L", // base58 but a wrong checksum
		capturedDocID[:len(capturedDocID)-1] + "Z",
		capturedDocID[1:],
		capturedDocID + "1",
		"1" + capturedDocID,
		"0OIl",
		capturedDocID + " ",
		"25gQkE3hoP2bJikoQWmNSo2vm1C\u00e9",
		"6b8d1e3a-4f52-471a-9c0e-112233445566",
		FormatDocumentID(append(max, 0xff)), // 65 bytes
		strings.Repeat("z", 200),
		"1", "11", "z",
	} {
		_, err := ParseDocumentID(bad)
		assert.ErrorIs(t, err, ErrInvalidDocumentID, "%q", bad)
		assert.False(t, validDocumentID(bad), "%q", bad)
	}
}

func TestNewDocumentID(t *testing.T) {
	r := rand.NewChaCha8([32]byte{7})
	seen := map[string]bool{}
	for range 200 {
		id, err := NewDocumentID(r)
		require.NoError(t, err)
		assert.True(t, len(id) == 27 || len(id) == 28, id)
		b, err := ParseDocumentID(id)
		require.NoError(t, err)
		require.Len(t, b, 16)
		assert.Equal(t, byte(0x40), b[6]&0xf0, "UUID version 4")
		assert.Equal(t, byte(0x80), b[8]&0xc0, "RFC 4122 variant")
		assert.False(t, seen[id])
		seen[id] = true
	}

	id, err := NewDocumentID(nil)
	require.NoError(t, err)
	assert.True(t, validDocumentID(id))

	_, err = NewDocumentID(bytes.NewReader(make([]byte, 15)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unexpected EOF")
}

func TestHeads(t *testing.T) {
	r := rand.NewChaCha8([32]byte{9})
	for range 100 {
		var h [32]byte
		_, _ = r.Read(h[:])
		s := EncodeHead(h)
		got, err := DecodeHead(s)
		require.NoError(t, err)
		assert.Equal(t, h, got)
	}
	var zero [32]byte
	assert.Equal(t, strings.Repeat("1", 32), EncodeHead(zero)[:32])

	for _, bad := range []string{"", capturedDocID, EncodeHead(zero)[1:], "not a head"} {
		_, err := DecodeHead(bad)
		assert.ErrorIs(t, err, ErrInvalidHead, "%q", bad)
	}
}

func TestParseURL(t *testing.T) {
	h1, h2 := EncodeHead([32]byte{1}), EncodeHead([32]byte{2})
	tests := []struct {
		in   string
		want URL
		str  string // what String gives back
	}{
		{"automerge:" + capturedDocID, URL{DocumentID: capturedDocID}, "automerge:" + capturedDocID},
		{"automerge:" + capturedDocID + "#", URL{DocumentID: capturedDocID, Heads: []string{}}, "automerge:" + capturedDocID + "#"},
		{"automerge:" + capturedDocID + "#" + h2 + "|" + h1, URL{DocumentID: capturedDocID, Heads: []string{h2, h1}},
			"automerge:" + capturedDocID + "#" + min(h1, h2) + "|" + max(h1, h2)},
	}
	for _, tt := range tests {
		u, err := ParseURL(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, u)
		assert.Equal(t, tt.str, u.String())
	}
	assert.Equal(t, "automerge:"+capturedDocID, FormatURL(capturedDocID))

	for _, tt := range []struct {
		in   string
		also error
	}{
		{"", nil},
		{capturedDocID, nil},
		{"Automerge:" + capturedDocID, nil},
		{"automerge:", ErrInvalidDocumentID},
		{"automerge:" + capturedDocID + "x", ErrInvalidDocumentID},
		{"automerge:" + capturedDocID + "/path", ErrInvalidDocumentID},
		{"automerge:" + capturedDocID + "#" + h1 + "#" + h2, nil},
		{"automerge:" + capturedDocID + "#" + h1 + "|", ErrInvalidHead},
		{"automerge:" + capturedDocID + "#" + capturedDocID, ErrInvalidHead},
		{"automerge:6b8d1e3a-4f52-471a-9c0e-112233445566", ErrInvalidDocumentID},
	} {
		_, err := ParseURL(tt.in)
		require.ErrorIs(t, err, ErrInvalidURL, "%q", tt.in)
		if tt.also != nil {
			assert.ErrorIs(t, err, tt.also, "%q", tt.in)
		}
	}
}

func TestParseURLErrorTruncatesInput(t *testing.T) {
	_, err := ParseURL("automerge:" + strings.Repeat("z", 10000))
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 400)
	assert.True(t, errors.Is(err, ErrInvalidDocumentID))
}
