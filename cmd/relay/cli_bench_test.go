package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/engine/wire"
)

// BenchmarkExportImport backs up a store of 500 documents, each stored as
// a snapshot and two incremental chunks, and imports the backup into a
// fresh directory.
func BenchmarkExportImport(b *testing.B) {
	const docs = 500
	src := b.TempDir()
	st, err := badgerstore.Open(badgerstore.Config{Dir: src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	ctx := context.Background()
	stored := 0
	for i := range docs {
		id, err := wire.NewDocumentID(nil)
		require.NoError(b, err)
		d, err := crdt.New(crdt.ActorID(fmt.Sprintf("%08x", i+1)))
		require.NoError(b, err)
		var ops []store.Op
		for c := range 3 {
			before := d.Heads()
			_, err := d.Change(time.Unix(int64(c), 0), "", func(tx *crdt.Tx) error {
				return tx.Set([]any{fmt.Sprintf("field%d", c)}, map[string]any{"n": int64(i), "text": crdt.Text("some text to store"), "list": []any{1.5, true}})
			})
			require.NoError(b, err)
			if c == 0 {
				snap := d.Save()
				ops = append(ops, store.Op{Key: store.SnapshotKey(id, d.Heads().Key()), Data: snap})
				continue
			}
			raw, err := d.ChangesSince(before)
			require.NoError(b, err)
			ops = append(ops, store.Op{Key: store.IncrementalKey(id, store.ChunkHash(raw)), Data: raw})
		}
		for _, op := range ops {
			stored += len(op.Data)
		}
		require.NoError(b, st.Apply(ctx, ops))
	}
	require.NoError(b, st.Close())

	var exportTime, importTime time.Duration
	var backupBytes int64
	for b.Loop() {
		dir := b.TempDir()
		backup := filepath.Join(dir, "backup.gz")
		start := time.Now()
		cliOK(b, "export", "-data", src, "-o", backup)
		exportTime += time.Since(start)
		start = time.Now()
		cliOK(b, "import", "-data", filepath.Join(dir, "store"), backup)
		importTime += time.Since(start)
		fi, err := os.Stat(backup)
		require.NoError(b, err)
		backupBytes = fi.Size()
	}
	b.ReportMetric(float64(docs*b.N)/exportTime.Seconds(), "exported-docs/s")
	b.ReportMetric(float64(docs*b.N)/importTime.Seconds(), "imported-docs/s")
	b.ReportMetric(float64(stored)/docs, "stored-bytes/doc")
	b.ReportMetric(float64(backupBytes)/docs, "backup-bytes/doc")
}
