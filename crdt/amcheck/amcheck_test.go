package amcheck

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// TestCrashersRejected checks every input known to abort the 0.5.0 core.
func TestCrashersRejected(t *testing.T) {
	lim := DefaultLimits()
	cases := []struct {
		file  string
		parse func([]byte) error
		want  string
	}{
		{"min-bloom-div0.bin", func(b []byte) error { _, err := ParseSyncMessage(b, lim); return err }, "0 bits per entry"},
		{"sync-wrapping-loadchanges-oob762.bin", func(b []byte) error { _, err := ParseSyncMessage(b, lim); return err }, "key actor index"},
		{"min-loadchanges-oob762.bin", func(b []byte) error { _, err := ParseChange(b, lim); return err }, "key actor index"},
		{"min-load-unknownaction.bin", func(b []byte) error { _, err := ParseDocument(b, lim); return err }, "unknown action"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			err := tc.parse(readTestdata(t, tc.file))
			require.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// Every crasher is also rejected by the other parsers that could be
	// handed it.
	for _, name := range []string{"min-load-unknownaction.bin", "min-loadchanges-oob762.bin"} {
		b := readTestdata(t, name)
		_, err := ParseDocument(b, lim)
		assert.ErrorIs(t, err, ErrMalformed, name)
		_, _, err = ParseChunk(b, lim)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

// TestGeneratedAccepted is the property test: real automerge output from
// hundreds of random histories must all be accepted.
func TestGeneratedAccepted(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 40
	}
	c := genCorpus(t, 1, n)
	require.NotEmpty(t, c.docs)
	require.NotEmpty(t, c.changes)
	require.NotEmpty(t, c.syncs)
	lim := DefaultLimits()
	for i, b := range c.docs {
		d, err := ParseDocument(b, lim)
		require.NoError(t, err, "doc %d", i)
		require.NotEmpty(t, d.Chunks)
	}
	for i, b := range c.changes {
		ch, err := ParseChange(b, lim)
		require.NoError(t, err, "change %d", i)
		require.NotZero(t, ch.Seq)
	}
	withChanges := 0
	for i, b := range c.syncs {
		m, err := ParseSyncMessage(b, lim)
		require.NoError(t, err, "sync %d", i)
		require.Equal(t, len(m.Changes), len(m.Decoded))
		if len(m.Changes) > 0 {
			withChanges++
		}
	}
	require.NotZero(t, withChanges, "no sync message carried changes")
	t.Logf("accepted %d documents, %d changes, %d sync messages (%d with changes)",
		len(c.docs), len(c.changes), len(c.syncs), withChanges)
}
