package crdt_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/amsync/amsync/crdt"
)

// The automerge operations on the engine's hot paths: loading a stored
// document, saving it, generating a sync message per peer, and applying a
// peer's change. Documents are built from seeded random text so that the
// compressed format does not flatter them.

// words returns n bytes of lower-case letters and spaces drawn from rng.
func words(rng *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz      "
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func mustChange(b *testing.B, d *crdt.Doc, at int64, fn func(tx *crdt.Tx) error) {
	b.Helper()
	if _, err := d.Change(time.Unix(at, 0), "", fn); err != nil {
		b.Fatal(err)
	}
}

// benchDoc is one of the documents the benchmarks load and save.
type benchDoc struct {
	name  string
	build func(b *testing.B) *crdt.Doc
}

var benchDocs = []benchDoc{
	// A typical small automerge-repo document: a dozen fields written over
	// a dozen changes, about 600 bytes saved.
	{"small", func(b *testing.B) *crdt.Doc { return mapDoc(b, 12, 12, 60) }},
	// A 1 MB document of big string values: 1000 changes overwriting 200
	// keys with 1.6 KB strings (few operations, many bytes).
	{"map1MB", func(b *testing.B) *crdt.Doc { return mapDoc(b, 1000, 200, 1600) }},
	// A collaborative text of 100,000 characters typed in 100 changes,
	// about 64 KB saved: one operation per character.
	{"text100k", func(b *testing.B) *crdt.Doc { return textDoc(b, 100, 1000) }},
}

// mapDoc makes changes changes, each setting one of keys keys to a string
// of size bytes.
func mapDoc(b *testing.B, changes, keys, size int) *crdt.Doc {
	rng := rand.New(rand.NewPCG(1, uint64(changes)))
	d, err := crdt.New("aa01")
	if err != nil {
		b.Fatal(err)
	}
	for i := range changes {
		mustChange(b, d, int64(i), func(tx *crdt.Tx) error {
			return tx.Set([]any{fmt.Sprintf("k%03d", i%keys)}, words(rng, size))
		})
	}
	return d
}

// textDoc appends per characters to a text in each of changes changes.
func textDoc(b *testing.B, changes, per int) *crdt.Doc {
	rng := rand.New(rand.NewPCG(2, uint64(changes)))
	d, err := crdt.New("aa02")
	if err != nil {
		b.Fatal(err)
	}
	for i := range changes {
		mustChange(b, d, int64(i), func(tx *crdt.Tx) error {
			return tx.Splice([]any{"text"}, i*per, 0, words(rng, per))
		})
	}
	return d
}

// built holds the documents already built, by name: the benchmark
// functions run once per b.N tried, and building text100k takes a while.
// Benchmarks run one at a time, and neither Save nor Load changes a Doc.
var built = map[string]*crdt.Doc{}

func (bd benchDoc) get(b *testing.B) *crdt.Doc {
	d := built[bd.name]
	if d == nil {
		d = bd.build(b)
		built[bd.name] = d
	}
	return d
}

// BenchmarkLoad measures crdt.Load of a saved document: what the engine
// pays for every document it loads from the store. MB/s is of saved bytes.
func BenchmarkLoad(b *testing.B) {
	for _, bd := range benchDocs {
		b.Run(bd.name, func(b *testing.B) {
			saved := bd.get(b).Save()
			b.SetBytes(int64(len(saved)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := crdt.Load(saved, "bb01"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "loads/s")
			b.ReportMetric(float64(len(saved)), "doc-bytes")
		})
	}
}

// BenchmarkSave measures Doc.Save (the engine compacts into a snapshot
// while the document is small, and whenever incrementals outweigh it).
func BenchmarkSave(b *testing.B) {
	for _, bd := range benchDocs {
		b.Run(bd.name, func(b *testing.B) {
			d := bd.get(b)
			n := len(d.Save())
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if len(d.Save()) != n {
					b.Fatal("save changed size")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "saves/s")
		})
	}
}

// syncUntilQuiet exchanges messages between two sync states until neither
// has anything to say.
func syncUntilQuiet(b *testing.B, x, y *crdt.SyncState) {
	b.Helper()
	for range 50 {
		mx, okx := x.Generate()
		if okx {
			if _, err := y.Receive(mx); err != nil {
				b.Fatal(err)
			}
		}
		my, oky := y.Generate()
		if oky {
			if _, err := x.Receive(my); err != nil {
				b.Fatal(err)
			}
		}
		if !okx && !oky {
			return
		}
	}
	b.Fatal("sync did not settle")
}

// copyDoc loads a copy of d that writes as actor.
func copyDoc(b *testing.B, d *crdt.Doc, actor crdt.ActorID) *crdt.Doc {
	b.Helper()
	c, err := crdt.Load(d.Save(), actor)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkGenerate measures SyncState.Generate, which the engine runs for
// every peer of a document whose heads changed (the fan-out set).
//
//   - uptodate: the peer has everything and we sent it our heads; Generate
//     must decide there is nothing to say. With many readers of a document
//     this is the common case and should be close to free.
//   - needs=N: the peer announced heads and a Bloom filter of what it has
//     (its first message), and lacks the last N of 100+N changes; the
//     message carries the N changes.
func BenchmarkGenerate(b *testing.B) {
	b.Run("uptodate", func(b *testing.B) {
		server := mapDoc(b, 100, 20, 40)
		peer := copyDoc(b, server, "cc01")
		ss, ps := crdt.NewSyncState(server), crdt.NewSyncState(peer)
		syncUntilQuiet(b, ss, ps)
		if _, ok := ss.Generate(); ok {
			b.Fatal("a synced state still has a message")
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, ok := ss.Generate(); ok {
				b.Fatal("a synced state still has a message")
			}
		}
	})
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("needs=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, uint64(n)))
			peer := mapDoc(b, 100, 20, 40)
			server := copyDoc(b, peer, "dd01")
			for i := range n {
				mustChange(b, server, int64(1000+i), func(tx *crdt.Tx) error {
					return tx.Set([]any{fmt.Sprintf("n%03d", i%20)}, words(rng, 40))
				})
			}
			first, ok := crdt.NewSyncState(peer).Generate()
			if !ok {
				b.Fatal("no first message")
			}
			msgBytes := 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				st := crdt.NewSyncState(server)
				if _, err := st.Receive(first); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				msg, ok := st.Generate()
				if !ok {
					b.Fatal("no message for a peer that lacks changes")
				}
				msgBytes = len(msg)
			}
			b.ReportMetric(float64(msgBytes), "msg-bytes")
		})
	}
}

// BenchmarkReceive measures SyncState.Receive of a sync message carrying
// one typical change (a title set and ten characters typed) into a
// document of 100 changes that is otherwise in sync with the writer: what
// the engine pays per change a writer sends.
//
// A chain of such messages is prepared untimed by a real exchange between
// the writer and a scout copy of the reader. The reader is reloaded from the base
// document every len(chain) messages, so that it does not grow with b.N.
func BenchmarkReceive(b *testing.B) {
	const chainLen = 64
	rng := rand.New(rand.NewPCG(4, 4))
	base := mapDoc(b, 100, 20, 40)
	saved := base.Save()
	writer := copyDoc(b, base, "ee01")
	scout := copyDoc(b, base, "ee02")
	ws, ss := crdt.NewSyncState(writer), crdt.NewSyncState(scout)
	syncUntilQuiet(b, ws, ss)
	chain := make([][]byte, chainLen)
	heads := make([]crdt.Heads, chainLen)
	msgBytes := 0
	for j := range chain {
		mustChange(b, writer, int64(2000+j), func(tx *crdt.Tx) error {
			if err := tx.Set([]any{"title"}, words(rng, 20)); err != nil {
				return err
			}
			return tx.Splice([]any{"body"}, j*10, 0, words(rng, 10))
		})
		msg := exchange(b, ws, ss, func() bool { return scout.Heads().Equal(writer.Heads()) })
		chain[j], heads[j] = msg, writer.Heads()
		msgBytes += len(msg)
	}

	var reader *crdt.Doc
	var st *crdt.SyncState
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % chainLen
		if j == 0 {
			b.StopTimer()
			var err error
			if reader, err = crdt.Load(saved, "ff01"); err != nil {
				b.Fatal(err)
			}
			st = crdt.NewSyncState(reader)
			b.StartTimer()
		}
		if _, err := st.Receive(chain[j]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if !reader.Heads().Equal(heads[(b.N-1)%chainLen]) {
		b.Fatal("the changes were not applied")
	}
	b.ReportMetric(float64(msgBytes)/chainLen, "msg-bytes")
}

// exchange runs the sync protocol from writer state w to reader state r
// until both are quiet, and returns the writer message after which done
// first held: the one that carried the change.
func exchange(b *testing.B, w, r *crdt.SyncState, done func() bool) []byte {
	b.Helper()
	var carried []byte
	for range 50 {
		mw, okw := w.Generate()
		if okw {
			receive(b, r, mw)
			if carried == nil && done() {
				carried = mw
			}
		}
		mr, okr := r.Generate()
		if okr {
			receive(b, w, mr)
		}
		if !okw && !okr {
			break
		}
	}
	if carried == nil {
		b.Fatal("no writer message carried the change")
	}
	return carried
}

func receive(b *testing.B, s *crdt.SyncState, msg []byte) {
	b.Helper()
	if _, err := s.Receive(msg); err != nil {
		b.Fatal(err)
	}
}
