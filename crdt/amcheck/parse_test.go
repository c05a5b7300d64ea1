package amcheck

import (
	"bytes"
	"compress/flate"
	"math"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLEB128(t *testing.T) {
	cases := []struct {
		in      []byte
		strict  bool
		want    uint64
		wantErr bool
	}{
		{[]byte{0}, true, 0, false},
		{[]byte{0x7f}, true, 127, false},
		{[]byte{0x80, 0x01}, true, 128, false},
		{[]byte{0x80, 0x00}, true, 0, true}, // overlong
		{[]byte{0x80, 0x00}, false, 0, false},
		{[]byte{0x80}, false, 0, true}, // truncated
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, true, math.MaxUint64, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, false, 0, true}, // > 64 bits
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, false, 0, true},
	}
	for _, tc := range cases {
		v, n, err := decodeULEB(tc.in, tc.strict)
		if tc.wantErr {
			assert.Error(t, err, "% x", tc.in)
			continue
		}
		require.NoError(t, err, "% x", tc.in)
		assert.Equal(t, tc.want, v)
		assert.Equal(t, len(tc.in), n)
	}
	scases := []struct {
		in      []byte
		strict  bool
		want    int64
		wantErr bool
	}{
		{[]byte{0x7f}, true, -1, false},
		{[]byte{0x3f}, true, 63, false},
		{[]byte{0xc0, 0x00}, true, 64, false},
		{[]byte{0xff, 0x7f}, true, 0, true}, // overlong -1
		{[]byte{0xff, 0x7f}, false, -1, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, true, math.MinInt64, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, true, math.MaxInt64, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, false, 0, true},
	}
	for _, tc := range scases {
		v, n, err := decodeSLEB(tc.in, tc.strict)
		if tc.wantErr {
			assert.Error(t, err, "% x", tc.in)
			continue
		}
		require.NoError(t, err, "% x", tc.in)
		assert.Equal(t, tc.want, v)
		assert.Equal(t, len(tc.in), n)
	}
}

// syncWithBloom returns a v1 sync message with one have entry holding the
// given bloom filter bytes.
func syncWithBloom(bloom []byte) []byte {
	out := []byte{SyncV1, 0, 0, 1, 0}
	out = uvarint(out, uint64(len(bloom)))
	out = append(out, bloom...)
	return append(out, 0)
}

func TestBloomFilter(t *testing.T) {
	bits := func(n int) []byte { return make([]byte, n) }
	enc := func(entries, bpe, probes uint64, b []byte) []byte {
		out := uvarint(nil, entries)
		out = uvarint(out, bpe)
		out = uvarint(out, probes)
		return append(out, b...)
	}
	cases := []struct {
		name  string
		bloom []byte
		ok    bool
		want  string
	}{
		{"empty (no entries)", nil, true, ""},
		{"automerge default 3 entries", enc(3, 10, 7, bits(4)), true, ""},
		{"zero entries with parameters", enc(0, 10, 7, nil), true, ""},
		// The crasher's shape, and every other way to get len(bits) == 0
		// with entries > 0: the modulus 8*len(bits) is zero.
		{"div0: 1 entry, 0 bits per entry, 0 probes", enc(1, 0, 0, nil), false, "0 bits per entry"},
		{"div0: 1 entry, 0 bits per entry, 7 probes", enc(1, 0, 7, nil), false, "0 bits per entry"},
		{"div0: max entries, 0 bits per entry", enc(math.MaxUint32, 0, 7, nil), false, "0 bits per entry"},
		{"probes 0 with entries", enc(1, 10, 0, bits(2)), false, "probes"},
		{"probes beyond 64 (the core allocates and loops per probe)", enc(1, 10, math.MaxUint32, bits(2)), false, "probes"},
		{"bits shorter than declared", enc(10, 10, 7, bits(12)), false, "bloom bits"},
		{"bits longer than declared", enc(3, 10, 7, bits(5)), false, "after the bloom filter"},
		{"entries above u32", enc(1<<32, 10, 7, nil), false, "32 bits"},
		{"2^29 bytes of bits (u32 modulus wraps to 0)", enc(1<<29, 8, 7, nil), false, "wrap"},
		{"truncated parameters", []byte{0x01, 0x0a}, false, "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseSyncMessage(syncWithBloom(tc.bloom), Limits{})
			if tc.ok {
				require.NoError(t, err)
				require.Len(t, m.Have, 1)
				return
			}
			require.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSyncForgedCounts(t *testing.T) {
	huge := uvarint(nil, 1<<40)
	cases := map[string][]byte{
		"heads":       append([]byte{SyncV1}, huge...),
		"need":        append([]byte{SyncV1, 0}, huge...),
		"have":        append([]byte{SyncV1, 0, 0}, huge...),
		"last sync":   append([]byte{SyncV1, 0, 0, 1}, huge...),
		"bloom bytes": append([]byte{SyncV1, 0, 0, 1, 0}, huge...),
		"changes":     append([]byte{SyncV1, 0, 0, 0}, huge...),
		"change size": append([]byte{SyncV1, 0, 0, 0, 1}, huge...),
	}
	for name, b := range cases {
		_, err := ParseSyncMessage(b, Limits{})
		assert.ErrorIs(t, err, ErrMalformed, name)
		assert.Contains(t, err.Error(), "offset", name)
	}
	for _, b := range [][]byte{nil, {0x41}, {0x44, 0, 0, 0, 0}} {
		_, err := ParseSyncMessage(b, Limits{})
		assert.ErrorIs(t, err, ErrMalformed, "% x", b)
	}
}

func TestSyncLimits(t *testing.T) {
	c := genDoc(t, 3)
	var withChanges []byte
	for _, m := range c.syncs {
		if pm, err := ParseSyncMessage(m, Limits{}); err == nil && len(pm.Changes) > 1 {
			withChanges = m
			break
		}
	}
	require.NotNil(t, withChanges)
	_, err := ParseSyncMessage(withChanges, Limits{MaxMessageBytes: len(withChanges) - 1})
	assert.ErrorIs(t, err, ErrLimit)
	_, err = ParseSyncMessage(withChanges, Limits{MaxChangesPerMessage: 1})
	assert.ErrorIs(t, err, ErrLimit)
	assert.Contains(t, err.Error(), "MaxChangesPerMessage")
	_, err = ParseSyncMessage(withChanges, Limits{MaxOpsPerChange: 1})
	assert.ErrorIs(t, err, ErrLimit)
	_, err = ParseSyncMessage(withChanges, Limits{MaxOps: 2})
	assert.ErrorIs(t, err, ErrLimit)
}

func TestSyncFlagsAndV2(t *testing.T) {
	c := genDoc(t, 5)
	base := c.syncs[len(c.syncs)-1]
	m, err := ParseSyncMessage(base, Limits{})
	require.NoError(t, err)
	require.Nil(t, m.Flags)

	// Newer automerge appends | length | 0x02 | 0x80|bits |.
	flagged := append(append([]byte{}, base...), 2, 0x02, 0x84)
	m, err = ParseSyncMessage(flagged, Limits{})
	require.NoError(t, err)
	assert.Equal(t, []byte{0x02, 0x84}, m.Flags)
	_, err = ParseSyncMessage(append(flagged, 0), Limits{})
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseSyncMessage(append(append([]byte{}, base...), 5, 1), Limits{})
	assert.ErrorIs(t, err, ErrMalformed)

	// A v2 message whose changes entry is a whole saved document.
	doc := c.docs[1]
	v2 := []byte{SyncV2, 0, 0, 0, 1}
	v2 = uvarint(v2, uint64(len(doc)))
	v2 = append(append(v2, doc...), 2, 0x02, 0x84)
	m, err = ParseSyncMessage(v2, Limits{})
	require.NoError(t, err)
	assert.Equal(t, SyncV2, m.Version)
	assert.Empty(t, m.Decoded)
	bad := append([]byte{}, v2...)
	bad[5+len(uvarint(nil, uint64(len(doc))))+8] = 7 // chunk type
	_, err = ParseSyncMessage(bad, Limits{})
	assert.ErrorIs(t, err, ErrMalformed)

	// How the 0.5.0 core treats them: a v1 message with flags is accepted
	// (the trailing bytes are ignored); a v2 message is rejected cleanly
	// with an error (ReadMessageError::WrongType), never reaching the
	// document.
	d := automerge.New()
	_, err = automerge.NewSyncState(d).ReceiveMessage(flagged)
	require.NoError(t, err)
	_, err = automerge.NewSyncState(d).ReceiveMessage(v2)
	require.Error(t, err)
	assert.Empty(t, d.Heads())
}

func TestChecksum(t *testing.T) {
	c := genDoc(t, 7)
	ch := append([]byte{}, c.changes[0]...)
	ch[len(ch)-1] ^= 0x01
	_, err := ParseChange(ch, Limits{})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "checksum")

	fixChunkChecksums(ch)
	_, err = ParseChange(ch, Limits{})
	if err != nil {
		assert.NotContains(t, err.Error(), "checksum")
	}

	doc := append([]byte{}, c.docs[1]...)
	doc[4] ^= 0xff
	_, err = ParseDocument(doc, Limits{})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "checksum")
}

// compress returns the compressed (type 2) chunk for change chunk b.
func compress(t testing.TB, b []byte) []byte {
	t.Helper()
	body := chunkBodyOf(t, b)
	var buf bytes.Buffer
	zw, err := flate.NewWriter(&buf, flate.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(body)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	out := append([]byte{}, magic[:]...)
	out = append(out, b[4:8]...) // the checksum of the uncompressed change
	out = append(out, byte(ChunkCompressed))
	out = uvarint(out, uint64(buf.Len()))
	return append(out, buf.Bytes()...)
}

func chunkBodyOf(t testing.TB, b []byte) []byte {
	t.Helper()
	l, n, err := decodeULEB(b[9:], true)
	require.NoError(t, err)
	return b[9+n : 9+n+int(l)]
}

func TestCompressedChange(t *testing.T) {
	c := genDoc(t, 11)
	raw := c.changes[0] // no deps, so the core loads it on its own
	want, err := ParseChange(raw, Limits{})
	require.NoError(t, err)

	z := compress(t, raw)
	got, err := ParseChange(z, Limits{})
	require.NoError(t, err)
	assert.True(t, got.Compressed)
	assert.Equal(t, want.Hash, got.Hash)
	assert.Equal(t, want.Ops, got.Ops)

	// The core agrees that this is the same change.
	chs, err := automerge.LoadChanges(z)
	require.NoError(t, err)
	require.Len(t, chs, 1)
	assert.Equal(t, want.Hash, ChangeHash(chs[0].Hash()))

	// In a saved document stream it is accepted; in a v1 sync message it is
	// not, because the 0.5.0 core would parse the deflate stream as an
	// uncompressed change.
	_, err = ParseDocument(append(append([]byte{}, c.docs[1]...), z...), Limits{})
	require.NoError(t, err)
	_, err = ParseSyncMessage(syncMessage(z), Limits{})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "compressed")

	// A compressed chunk whose inner change does not match its checksum.
	bad := append([]byte{}, z...)
	bad[5] ^= 1
	_, err = ParseChange(bad, Limits{})
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestDecompressionLimit(t *testing.T) {
	// 64 MiB of zeros deflates to about 64 KiB.
	var buf bytes.Buffer
	zw, err := flate.NewWriter(&buf, flate.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(make([]byte, 64<<20))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	bomb := append([]byte{}, magic[:]...)
	bomb = append(bomb, 0, 0, 0, 0, byte(ChunkCompressed))
	bomb = uvarint(bomb, uint64(buf.Len()))
	bomb = append(bomb, buf.Bytes()...)
	_, err = ParseChange(bomb, Limits{MaxDecompressedBytes: 1 << 20})
	require.ErrorIs(t, err, ErrLimit)
	assert.Contains(t, err.Error(), "MaxDecompressedBytes")

	// Deflated document columns count against the same limit.
	c := genCorpus(t, 20, 10)
	limited := 0
	for _, d := range c.docs {
		_, err := ParseDocument(d, Limits{})
		require.NoError(t, err)
		if _, err := ParseDocument(d, Limits{MaxDecompressedBytes: 64}); err != nil {
			require.ErrorIs(t, err, ErrLimit)
			limited++
		}
	}
	assert.NotZero(t, limited, "no generated document had deflated columns")
}

func TestDocumentLimits(t *testing.T) {
	// A long text: every character is an op, whatever the byte size.
	d := automerge.New()
	require.NoError(t, d.RootMap().Set("text", automerge.NewText(strings.Repeat("a", 20000))))
	_, err := d.Commit("")
	require.NoError(t, err)
	saved := d.Save()
	doc, err := ParseDocument(saved, Limits{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, doc.Ops, 20000)
	t.Logf("20000-character text: %d bytes, %d ops", len(saved), doc.Ops)

	_, err = ParseDocument(saved, Limits{MaxOps: 10000})
	require.ErrorIs(t, err, ErrLimit)
	assert.Contains(t, err.Error(), "MaxOps")
	_, err = ParseDocument(saved, Limits{MaxDocumentBytes: len(saved) - 1})
	require.ErrorIs(t, err, ErrLimit)

	chs, err := d.Changes()
	require.NoError(t, err)
	_, err = ParseChange(chs[0].Save(), Limits{MaxOpsPerChange: 10000})
	require.ErrorIs(t, err, ErrLimit)
	assert.Contains(t, err.Error(), "MaxOpsPerChange")

	_, err = ParseDocument(nil, Limits{})
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestLimitsDefaults(t *testing.T) {
	assert.Equal(t, DefaultLimits(), Limits{}.withDefaults())
	l := Limits{MaxOps: 5, MaxMessageBytes: -1}.withDefaults()
	assert.Equal(t, 5, l.MaxOps)
	assert.Equal(t, DefaultMaxMessageBytes, l.MaxMessageBytes)
}

func TestRegressionEscapes(t *testing.T) {
	// Found by the core-safety harness: an input the parsers accepted and
	// the core aborted on.
	_, err := ParseDocument(readTestdata(t, "escape-mixed-keys-doc.bin"), Limits{})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "mixes element and string keys")
}
