package amcheck

import (
	"fmt"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"
	"github.com/stretchr/testify/require"
)

// benchMessage returns the largest sync message exchanged while a fresh
// peer syncs a document made of n commits of size characters each.
func benchMessage(b *testing.B, n, size int) []byte {
	b.Helper()
	d := automerge.New()
	require.NoError(b, d.SetActorID("0123456789abcdef0123456789abcdef"))
	require.NoError(b, d.RootMap().Set("text", automerge.NewText("")))
	v, err := d.RootMap().Get("text")
	require.NoError(b, err)
	tx := v.Text()
	for i := 0; i < n; i++ {
		require.NoError(b, tx.Splice(tx.Len()/2, 0, strings.Repeat(string(rune('a'+i%26)), size)))
		require.NoError(b, d.RootMap().Set(fmt.Sprintf("k%d", i%50), int64(i)))
		_, err := d.Commit("")
		require.NoError(b, err)
	}
	var biggest []byte
	for _, m := range syncAll(b, d, automerge.New()) {
		if len(m) > len(biggest) {
			biggest = m
		}
	}
	return biggest
}

// BenchmarkParseSyncMessage measures validation of a typical sync message
// carrying changes, next to the core's own handling of the same bytes
// (decode plus apply into a fresh document; automerge-go does not expose the
// decode step alone).
func BenchmarkParseSyncMessage(b *testing.B) {
	for _, tc := range []struct {
		name    string
		n, size int
	}{
		{"1KB", 2, 330},
		{"1MB", 900, 1000},
	} {
		msg := benchMessage(b, tc.n, tc.size)
		m, err := ParseSyncMessage(msg, Limits{})
		require.NoError(b, err)
		ops := 0
		for _, c := range m.Decoded {
			ops += c.Ops
		}
		b.Run(tc.name+"/amcheck", func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseSyncMessage(msg, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(m.Decoded)), "changes/msg")
			b.ReportMetric(float64(ops), "ops/msg")
		})
		b.Run(tc.name+"/core-receive", func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				b.StopTimer()
				ss := automerge.NewSyncState(automerge.New())
				b.StartTimer()
				if _, err := ss.ReceiveMessage(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseDocument compares validating a saved document with loading
// it in the core.
func BenchmarkParseDocument(b *testing.B) {
	d := automerge.New()
	require.NoError(b, d.RootMap().Set("text", automerge.NewText(strings.Repeat("hello 🌍 ", 20000))))
	_, err := d.Commit("")
	require.NoError(b, err)
	saved := d.Save()
	doc, err := ParseDocument(saved, Limits{})
	require.NoError(b, err)
	b.Run("amcheck", func(b *testing.B) {
		b.SetBytes(int64(len(saved)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseDocument(saved, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(doc.Ops), "ops/doc")
	})
	b.Run("core-load", func(b *testing.B) {
		b.SetBytes(int64(len(saved)))
		for b.Loop() {
			if _, err := automerge.Load(saved); err != nil {
				b.Fatal(err)
			}
		}
	})
}
