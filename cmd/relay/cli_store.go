package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// storedDoc is one document as a store holds it.
type storedDoc struct {
	id     string
	chunks []store.Chunk // snapshot and incremental chunks only
	bytes  int
	doc    *crdt.Doc
}

// loadStored loads document id from st. A document without chunks has a
// nil doc.
func loadStored(ctx context.Context, st store.Store, id string) (storedDoc, error) {
	all, err := st.LoadRange(ctx, store.DocPrefix(id))
	if err != nil {
		return storedDoc{}, err
	}
	sd := storedDoc{id: id}
	for _, c := range all {
		if len(c.Key) == 3 && (c.Key[1] == store.KindSnapshot || c.Key[1] == store.KindIncremental) {
			sd.chunks = append(sd.chunks, c)
			sd.bytes += len(c.Data)
		}
	}
	if len(sd.chunks) == 0 {
		return sd, nil
	}
	r, err := engine.LoadReplica(id, "", sd.chunks)
	if err != nil {
		return sd, err
	}
	sd.doc = r.Doc()
	return sd, nil
}

func listDocuments(ctx context.Context, st store.Store) ([]string, error) {
	var ids []string
	err := st.Documents(ctx, func(id string) bool {
		ids = append(ids, id)
		return true
	})
	return ids, err
}

// inspectRow is one document of the inspect listing (-json prints these).
type inspectRow struct {
	Doc    string   `json:"doc"`
	Chunks int      `json:"chunks"`
	Bytes  int      `json:"bytes"`
	Heads  []string `json:"heads"`
	Error  string   `json:"error,omitempty"`
}

func inspectCmd(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 1 {
		return usagef("want at most one document URL, got %d arguments", len(args))
	}
	var id string
	if len(args) == 1 {
		var err error
		if id, err = parseDocArg(args[0]); err != nil {
			return err
		}
	}
	st, err := openStore(env.opts.data, true, env.log)
	if err != nil {
		return err
	}
	defer st.Close()
	if id != "" {
		sd, err := loadStored(ctx, st, id)
		if err != nil {
			return err
		}
		if sd.doc == nil {
			return fmt.Errorf("%w: %s is not in %s", errNotFound, id, env.opts.data)
		}
		v, err := sd.doc.Value()
		if err != nil {
			return err
		}
		return writeJSON(env.stdout, v)
	}
	ids, err := listDocuments(ctx, st)
	if err != nil {
		return err
	}
	var tw *tabwriter.Writer
	if !env.opts.json {
		tw = tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DOCUMENT\tCHUNKS\tBYTES\tHEADS")
	}
	total, broken := 0, 0
	for _, id := range ids {
		row := inspectRow{Doc: id}
		sd, err := loadStored(ctx, st, id)
		row.Chunks, row.Bytes = len(sd.chunks), sd.bytes
		switch {
		case err != nil:
			row.Error = oneLine(err.Error())
			broken++
		case sd.doc != nil:
			row.Heads = sd.doc.Heads().Strings()
		}
		total += sd.bytes
		if env.opts.json {
			if err := writeJSON(env.stdout, row); err != nil {
				return err
			}
			continue
		}
		heads := strings.Join(row.Heads, ",")
		if row.Error != "" {
			heads = "ERROR: " + row.Error
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", row.Doc, row.Chunks, row.Bytes, heads)
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%d documents, %d bytes\n", len(ids), total)
	}
	if broken > 0 {
		return fmt.Errorf("%d of %d documents cannot be loaded", broken, len(ids))
	}
	return nil
}

func exportCmd(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 0 {
		return usagef("unexpected argument %q (the backup file is -o FILE)", args[0])
	}
	if env.opts.out == "" {
		return usagef("-o FILE is required")
	}
	st, err := openStore(env.opts.data, true, env.log)
	if err != nil {
		return err
	}
	defer st.Close()
	ids, err := listDocuments(ctx, st)
	if err != nil {
		return err
	}

	out, commit, err := createOutput(env.opts.out, env.stdout)
	if err != nil {
		return err
	}
	defer out.Close()
	start := time.Now()
	bk, err := newBackupWriter(out, start)
	if err != nil {
		return err
	}
	prog := newProgress(env.stderr, "exporting", len(ids))
	defer prog.done()
	stored, written, skipped := 0, 0, 0
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted; %s not written", env.opts.out)
		}
		sd, err := loadStored(ctx, st, id)
		if err != nil {
			return fmt.Errorf("document %s: %w", id, err)
		}
		stored += sd.bytes
		if sd.doc == nil || sd.doc.Empty() {
			skipped++
			continue
		}
		snap := sd.doc.Save()
		written += len(snap)
		if err := bk.add(backupDoc{
			Doc:    id,
			Heads:  sd.doc.Heads().Strings(),
			Chunks: []backupChunk{{Kind: store.KindSnapshot, Data: snap}},
		}); err != nil {
			return err
		}
		prog.step(i + 1)
	}
	if err := bk.close(); err != nil {
		return err
	}
	if err := commit(); err != nil {
		return err
	}
	prog.done()
	report := env.stdout
	if env.opts.out == "-" {
		report = env.stderr
	}
	_, err = fmt.Fprintf(report, "exported %d documents to %s (%d stored bytes, %d snapshot bytes; %d empty skipped) in %v\n",
		bk.n, env.opts.out, stored, written, skipped, time.Since(start).Round(time.Millisecond))
	return err
}

// createOutput opens the export's destination: stdout for "-", else a
// temporary file beside name that commit syncs and renames into place, so
// that an interrupted export never leaves a partial backup under name.
func createOutput(name string, stdout io.Writer) (io.WriteCloser, func() error, error) {
	if name == "-" {
		return nopCloser{stdout}, func() error { return nil }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return nil, nil, err
	}
	committed := false
	closer := closeFunc(func() error {
		if committed {
			return nil
		}
		f.Close()
		return os.Remove(f.Name())
	})
	commit := func() error {
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(f.Name(), name); err != nil {
			return err
		}
		committed = true
		return nil
	}
	return writeCloser{f, closer}, commit, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type closeFunc func() error

type writeCloser struct {
	io.Writer
	close closeFunc
}

func (w writeCloser) Close() error { return w.close() }

// importStats counts what import did.
type importStats struct {
	read, created, merged, unchanged int
}

// Import writes in batches of up to this many documents or bytes: one
// fsync per batch instead of one per document, well within one Badger
// transaction.
const (
	importBatchDocs  = 128
	importBatchBytes = 1 << 20
)

func importCmd(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) != 1 {
		return usagef("want one backup FILE (\"-\": standard input), got %d arguments", len(args))
	}
	if env.opts.data == "" {
		return usagef("-data is required")
	}
	var in io.Reader = os.Stdin
	if args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	br, err := newBackupReader(in)
	if err != nil {
		return err
	}
	st, err := openStore(env.opts.data, false, env.log)
	if err != nil {
		return err
	}
	defer st.Close()

	start := time.Now()
	prog := newProgress(env.stderr, "importing", 0)
	defer prog.done()
	var stats importStats
	imported := map[string]crdt.Heads{}
	var order []string
	var batch []store.Op
	batchBytes, batchDocs := 0, map[string]bool{}
	flush := func() error {
		if len(batch) > 0 {
			if err := st.Apply(ctx, batch); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		batch, batchBytes, batchDocs = nil, 0, map[string]bool{}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted after %d documents (those are merged; running import again is safe)", stats.read)
		}
		bd, err := br.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if batchDocs[bd.Doc] {
			if err := flush(); err != nil {
				return err
			}
		}
		ops, kind, err := importDoc(ctx, st, bd)
		if err != nil {
			return fmt.Errorf("document %s: %w", bd.Doc, err)
		}
		stats.read++
		switch kind {
		case "created":
			stats.created++
		case "merged":
			stats.merged++
		default:
			stats.unchanged++
		}
		if _, seen := imported[bd.Doc]; !seen {
			order = append(order, bd.Doc)
		}
		imported[bd.Doc] = append(imported[bd.Doc], bd.heads()...)
		for _, op := range ops {
			batchBytes += len(op.Data)
		}
		batch = append(batch, ops...)
		batchDocs[bd.Doc] = true
		if len(batchDocs) >= importBatchDocs || batchBytes >= importBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		prog.step(stats.read)
	}
	if err := flush(); err != nil {
		return err
	}
	prog.done()

	// Verify: every document, as now stored, holds the heads exported.
	vprog := newProgress(env.stderr, "verifying", len(order))
	for i, id := range order {
		sd, err := loadStored(ctx, st, id)
		if err != nil {
			return fmt.Errorf("verify %s: %w", id, err)
		}
		for _, h := range imported[id] {
			if sd.doc == nil || !sd.doc.HasChange(h) {
				return fmt.Errorf("verify %s: head %s missing after import", id, h)
			}
		}
		vprog.step(i + 1)
	}
	vprog.done()
	fmt.Fprintf(env.stdout, "imported %d documents: %d new, %d merged, %d unchanged; %d verified in %v\n",
		stats.read, stats.created, stats.merged, stats.unchanged, len(order), time.Since(start).Round(time.Millisecond))
	return nil
}

// importDoc returns the writes that bring the stored document bd.Doc up to
// (at least) bd: a snapshot for a new document; for one already stored
// with changes bd lacks, the imported changes applied to it, saved as one
// snapshot that replaces the chunks it was loaded from (as automerge-repo
// compacts); nothing when the store already holds every change of bd.
func importDoc(ctx context.Context, st store.Store, bd backupDoc) ([]store.Op, string, error) {
	r, err := engine.LoadReplica(bd.Doc, "", bd.storeChunks())
	if err != nil {
		return nil, "", err
	}
	in := r.Doc()
	want := bd.heads()
	if got := in.Heads(); !got.Equal(sortedHeads(want)) {
		return nil, "", fmt.Errorf("%w: its chunks load with heads %v, the file says %v", errBackup, got.Strings(), bd.Heads)
	}
	cur, err := loadStored(ctx, st, bd.Doc)
	if err != nil {
		return nil, "", fmt.Errorf("stored copy: %w", err)
	}
	if cur.doc == nil || cur.doc.Empty() {
		data := bd.Chunks[0].Data
		if len(bd.Chunks) != 1 || bd.Chunks[0].Kind != store.KindSnapshot {
			data = in.Save()
		}
		return []store.Op{{Key: store.SnapshotKey(bd.Doc, in.Heads().Key()), Data: data}}, "created", nil
	}
	if hasHeads(cur.doc, want) {
		return nil, "unchanged", nil
	}
	// Changes of in that cur lacks are not ancestors of any head they
	// share, so the changes since the shared heads are enough.
	var shared crdt.Heads
	for _, h := range cur.doc.Heads() {
		if in.HasChange(h) {
			shared = append(shared, h)
		}
	}
	raw, err := in.ChangesSince(shared)
	if err != nil {
		return nil, "", err
	}
	before := cur.doc.Heads()
	if err := cur.doc.ApplyChanges(raw); err != nil {
		return nil, "", err
	}
	if !hasHeads(cur.doc, want) || !hasHeads(cur.doc, before) {
		return nil, "", errors.New("merge lost changes")
	}
	key := store.SnapshotKey(bd.Doc, cur.doc.Heads().Key())
	ops := []store.Op{{Key: key, Data: cur.doc.Save()}}
	for _, c := range cur.chunks {
		if c.Key.Compare(key) != 0 {
			ops = append(ops, store.Op{Key: c.Key, Delete: true})
		}
	}
	return ops, "merged", nil
}

func hasHeads(d *crdt.Doc, heads crdt.Heads) bool {
	for _, h := range heads {
		if !d.HasChange(h) {
			return false
		}
	}
	return true
}

func sortedHeads(h crdt.Heads) crdt.Heads {
	out := slices.Clone(h)
	slices.SortFunc(out, func(a, b crdt.Hash) int { return bytes.Compare(a[:], b[:]) })
	return out
}
