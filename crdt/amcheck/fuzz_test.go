package amcheck

import (
	"errors"
	"testing"
)

// fuzzCorpus is a small set of real inputs shared by the fuzz targets.
var fuzzCorpus corpus

func seedCorpus(f *testing.F) corpus {
	f.Helper()
	if fuzzCorpus.docs == nil {
		fuzzCorpus = genCorpus(f, 500, 8)
	}
	return fuzzCorpus
}

// checkErr fails unless err is nil or wraps exactly one sentinel.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !isSentinel(err) {
		t.Fatalf("error wraps no sentinel: %v", err)
	}
}

func isSentinel(err error) bool {
	return errors.Is(err, ErrMalformed) != errors.Is(err, ErrLimit)
}

func FuzzParseSyncMessage(f *testing.F) {
	c := seedCorpus(f)
	for _, b := range c.syncs {
		f.Add(b)
	}
	f.Add(readTestdata(f, "min-bloom-div0.bin"))
	f.Add(readTestdata(f, "sync-wrapping-loadchanges-oob762.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for pass := 0; pass < 2; pass++ {
			if pass == 1 {
				// Recompute the chunk checksums, as an attacker would, so
				// the fuzzer reaches the change decoders.
				b = append([]byte(nil), b...)
				fixSyncChecksums(b)
			}
			m, err := ParseSyncMessage(b, Limits{})
			checkErr(t, err)
			if err != nil {
				continue
			}
			if m.Version == SyncV1 && len(m.Decoded) != len(m.Changes) {
				t.Fatalf("%d changes but %d decoded", len(m.Changes), len(m.Decoded))
			}
			for i, ch := range m.Decoded {
				again, err := ParseChange(m.Changes[i], Limits{})
				if err != nil || again.Hash != ch.Hash {
					t.Fatalf("change %d of an accepted message does not re-parse: %v", i, err)
				}
			}
		}
	})
}

func FuzzParseChange(f *testing.F) {
	c := seedCorpus(f)
	for _, b := range c.changes {
		f.Add(b)
	}
	f.Add(readTestdata(f, "min-loadchanges-oob762.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for pass := 0; pass < 2; pass++ {
			if pass == 1 {
				b = append([]byte(nil), b...)
				fixChunkChecksums(b)
			}
			ch, err := ParseChange(b, Limits{})
			checkErr(t, err)
			if err != nil {
				continue
			}
			if ch.Seq == 0 || ch.StartOp == 0 || ch.StartOp+uint64(ch.Ops) > 1<<32 {
				t.Fatalf("accepted change with seq %d start %d ops %d", ch.Seq, ch.StartOp, ch.Ops)
			}
			// A fresh tracker applies a change without deps at once (so its
			// seq must be 1, which the parser enforces) and queues the rest.
			if err := NewTracker().Admit([]*Change{ch}); err != nil {
				t.Fatalf("fresh tracker rejects an accepted change: %v", err)
			}
		}
	})
}

func FuzzParseDocument(f *testing.F) {
	c := seedCorpus(f)
	for _, b := range c.docs {
		f.Add(b)
	}
	f.Add(readTestdata(f, "min-load-unknownaction.bin"))
	f.Add(readTestdata(f, "escape-mixed-keys-doc.bin"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for pass := 0; pass < 2; pass++ {
			if pass == 1 {
				b = append([]byte(nil), b...)
				fixChunkChecksums(b)
			}
			d, err := ParseDocument(b, Limits{MaxOps: 1 << 20, MaxDecompressedBytes: 16 << 20})
			checkErr(t, err)
			if err != nil {
				continue
			}
			n := 0
			for _, ch := range d.Chunks {
				n += len(ch.Raw)
			}
			if n != len(b) {
				t.Fatalf("chunks cover %d of %d bytes", n, len(b))
			}
		}
	})
}
