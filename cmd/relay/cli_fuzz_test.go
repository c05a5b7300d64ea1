package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/store"
	"github.com/amsync/amsync/engine/wire"
)

// realBackup returns the JSON lines (gunzipped) of a backup of n real
// documents.
func realBackup(t testing.TB, n int) []byte {
	var gz bytes.Buffer
	bk, err := newBackupWriter(&gz, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	require.NoError(t, err)
	for i := range n {
		d, err := crdt.New(crdt.ActorID("0a0b0c0d"))
		require.NoError(t, err)
		_, err = d.Change(time.Unix(int64(i), 0), "", func(tx *crdt.Tx) error {
			return tx.Set(nil, map[string]any{"i": int64(i), "title": crdt.Text("doc"), "tags": []any{"x", 1.5}})
		})
		require.NoError(t, err)
		id, err := wire.NewDocumentID(bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 16)))
		require.NoError(t, err)
		require.NoError(t, bk.add(backupDoc{Doc: id, Heads: d.Heads().Strings(), Chunks: []backupChunk{{Kind: store.KindSnapshot, Data: d.Save()}}}))
	}
	require.NoError(t, bk.close())
	zr, err := gzip.NewReader(&gz)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	return raw
}

// decodeAll reads every document of a backup's JSON lines.
func decodeAll(r io.Reader) ([]backupDoc, error) {
	d, err := newBackupDecoder(r)
	if err != nil {
		return nil, err
	}
	return decodeRest(d)
}

func decodeRest(d *backupDecoder) ([]backupDoc, error) {
	var docs []backupDoc
	for {
		bd, err := d.next()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, bd)
	}
}

// FuzzBackupDecoder feeds arbitrary JSON lines to the import decoder (the
// part before crdt sees any bytes). Whatever it accepts is well formed,
// and a backup it reads completely writes back to the same documents.
func FuzzBackupDecoder(f *testing.F) {
	real := realBackup(f, 3)
	f.Add(real)
	lines := strings.SplitAfter(string(real), "\n")
	f.Add([]byte(lines[0] + lines[len(lines)-2]))                 // header, trailer
	f.Add([]byte(lines[0] + `{"end":true,"documents":0}` + "\n")) // empty backup
	f.Add([]byte(lines[0] + lines[1]))                            // truncated
	f.Add([]byte(`{"format":"amsync-backup","version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := decodeAll(bytes.NewReader(data))
		for _, d := range docs {
			require.NoError(t, d.validate())
			require.Len(t, d.heads(), len(d.Heads))
			require.Len(t, d.storeChunks(), len(d.Chunks))
		}
		if err != nil {
			require.ErrorIs(t, err, errBackup)
			return
		}
		var gz bytes.Buffer
		bk, err := newBackupWriter(&gz, time.Unix(0, 0))
		require.NoError(t, err)
		for _, d := range docs {
			require.NoError(t, bk.add(d))
		}
		require.NoError(t, bk.close())
		br, err := newBackupReader(&gz)
		require.NoError(t, err)
		again, err := decodeRest(br.backupDecoder)
		require.NoError(t, err)
		require.Equal(t, len(docs), len(again))
		for i := range docs {
			require.Equal(t, docs[i].Doc, again[i].Doc)
			require.Equal(t, docs[i].Heads, again[i].Heads)
			require.Equal(t, len(docs[i].Chunks), len(again[i].Chunks))
		}
	})
}

// FuzzParseAssignment checks that doc set's PATH=JSON parser never panics
// and that what it accepts has a usable path and a value crdt.Tx.Set takes.
func FuzzParseAssignment(f *testing.F) {
	for _, s := range []string{
		"items.0.done=true", `title="shopping"`, "n=null", `a.b={"x":[1,2.5,"s",{"y":null}]}`,
		"big=18446744073709551615", "neg=-9223372036854775808", "f=1e400", "a..b=1", "=1", "a=",
		`a=1 2`, `a="x"` + "\n", "a.b.c.d.e.f.g=[]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAssignment(s)
		if err != nil {
			return
		}
		require.NotEmpty(t, a.path)
		for _, seg := range a.path {
			require.NotEmpty(t, seg)
			require.NotContains(t, seg, ".")
		}
		checkSettable(t, a.value)
	})
}

// checkSettable requires v to be made only of the types crdt.Tx.Set
// documents.
func checkSettable(t *testing.T, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			checkSettable(t, e)
		}
	case []any:
		for _, e := range x {
			checkSettable(t, e)
		}
	case crdt.Text, int64, uint64, float64, bool, nil:
	default:
		t.Fatalf("value of type %T", v)
	}
}
