package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// The backup format (docs/cli.md): a gzip stream of JSON lines.
//
//	{"format":"amsync-backup","version":1,"created":"2026-…Z"}
//	{"doc":"<document id>","heads":["<hex>",…],"chunks":[{"kind":"snapshot","data":"<base64>"}]}
//	…
//	{"end":true,"documents":N}
//
// The trailer makes a truncated file an error rather than a smaller
// backup. Export writes one snapshot chunk per document; import also
// accepts several chunks of kind snapshot or incremental, loaded as
// automerge-repo loads a document's stored chunks.
const (
	backupFormat  = "amsync-backup"
	backupVersion = 1
)

// errBackup is returned for a backup file that is not one, or is damaged.
var errBackup = errors.New("relay: bad backup")

type backupHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Created string `json:"created,omitempty"`
}

type backupChunk struct {
	Kind string `json:"kind"`
	Data []byte `json:"data"`
}

type backupDoc struct {
	Doc    string        `json:"doc"`
	Heads  []string      `json:"heads"`
	Chunks []backupChunk `json:"chunks"`
}

type backupTrailer struct {
	End       bool `json:"end"`
	Documents int  `json:"documents"`
}

// backupLine is any line, for decoding.
type backupLine struct {
	backupHeader
	backupDoc
	End       bool `json:"end"`
	Documents *int `json:"documents"`
}

// backupWriter writes a backup stream.
type backupWriter struct {
	zw  *gzip.Writer
	bw  *bufio.Writer
	enc *json.Encoder
	n   int
}

func newBackupWriter(w io.Writer, created time.Time) (*backupWriter, error) {
	zw := gzip.NewWriter(w)
	bw := bufio.NewWriterSize(zw, 256<<10)
	bk := &backupWriter{zw: zw, bw: bw, enc: json.NewEncoder(bw)}
	return bk, bk.enc.Encode(backupHeader{Format: backupFormat, Version: backupVersion, Created: created.UTC().Format(time.RFC3339)})
}

func (bk *backupWriter) add(d backupDoc) error {
	bk.n++
	return bk.enc.Encode(d)
}

// close writes the trailer and flushes; the underlying writer stays open.
func (bk *backupWriter) close() error {
	if err := bk.enc.Encode(backupTrailer{End: true, Documents: bk.n}); err != nil {
		return err
	}
	if err := bk.bw.Flush(); err != nil {
		return err
	}
	return bk.zw.Close()
}

// backupDecoder reads the JSON lines of a backup (after gzip).
type backupDecoder struct {
	dec  *json.Decoder
	n    int
	done bool
}

// newBackupDecoder reads and checks the header line.
func newBackupDecoder(r io.Reader) (*backupDecoder, error) {
	d := &backupDecoder{dec: json.NewDecoder(r)}
	var h backupLine
	if err := d.dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", errBackup, err)
	}
	if h.Format != backupFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", errBackup, h.Format, backupFormat)
	}
	if h.Version != backupVersion {
		return nil, fmt.Errorf("%w: version %d; this relay reads version %d", errBackup, h.Version, backupVersion)
	}
	return d, nil
}

// next returns the next document, or io.EOF after a trailer that matches
// the number of documents read and nothing after it.
func (d *backupDecoder) next() (backupDoc, error) {
	if d.done {
		return backupDoc{}, io.EOF
	}
	var l backupLine
	if err := d.dec.Decode(&l); err != nil {
		if err == io.EOF {
			err = errors.New("no end line: the file is truncated")
		}
		return backupDoc{}, fmt.Errorf("%w: after %d documents: %v", errBackup, d.n, err)
	}
	if l.End {
		if l.Documents == nil || *l.Documents != d.n {
			return backupDoc{}, fmt.Errorf("%w: end line does not count the %d documents read", errBackup, d.n)
		}
		if _, err := d.dec.Token(); err != io.EOF {
			return backupDoc{}, fmt.Errorf("%w: data after the end line", errBackup)
		}
		d.done = true
		return backupDoc{}, io.EOF
	}
	if err := l.backupDoc.validate(); err != nil {
		return backupDoc{}, fmt.Errorf("%w: document %d: %v", errBackup, d.n+1, err)
	}
	d.n++
	return l.backupDoc, nil
}

// validate checks the shape of a document line; whether its chunks load
// is for crdt to say.
func (b *backupDoc) validate() error {
	if _, err := wire.ParseDocumentID(b.Doc); err != nil {
		return err
	}
	if err := store.DocPrefix(b.Doc).Validate(); err != nil {
		return err
	}
	if len(b.Heads) == 0 {
		return fmt.Errorf("%s: no heads", b.Doc)
	}
	for _, h := range b.Heads {
		if _, err := crdt.ParseHash(h); err != nil {
			return fmt.Errorf("%s: %w", b.Doc, err)
		}
	}
	if len(b.Chunks) == 0 {
		return fmt.Errorf("%s: no chunks", b.Doc)
	}
	for _, c := range b.Chunks {
		if c.Kind != store.KindSnapshot && c.Kind != store.KindIncremental {
			return fmt.Errorf("%s: chunk kind %q", b.Doc, c.Kind)
		}
		if len(c.Data) == 0 {
			return fmt.Errorf("%s: empty chunk", b.Doc)
		}
	}
	return nil
}

// heads parses the validated heads.
func (b *backupDoc) heads() crdt.Heads {
	out := make(crdt.Heads, 0, len(b.Heads))
	for _, s := range b.Heads {
		h, _ := crdt.ParseHash(s)
		out = append(out, h)
	}
	return out
}

// storeChunks gives the chunks the keys automerge-repo would store them
// under, for engine.LoadReplica.
func (b *backupDoc) storeChunks() []store.Chunk {
	out := make([]store.Chunk, len(b.Chunks))
	for i, c := range b.Chunks {
		name := store.ChunkHash(c.Data)
		out[i] = store.Chunk{Key: store.Key{b.Doc, c.Kind, name}, Data: c.Data}
	}
	return out
}

// backupReader reads a gzip'd backup.
type backupReader struct {
	zr *gzip.Reader
	*backupDecoder
}

func newBackupReader(r io.Reader) (*backupReader, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 256<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", errBackup, err)
	}
	d, err := newBackupDecoder(zr)
	if err != nil {
		return nil, err
	}
	return &backupReader{zr: zr, backupDecoder: d}, nil
}
