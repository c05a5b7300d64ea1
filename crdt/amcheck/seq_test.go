package amcheck

import (
	"testing"

	"github.com/automerge/automerge-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cloneTracker returns an independent copy of t.
func cloneTracker(t *Tracker) *Tracker {
	c := &Tracker{sim: newSeqSim(t.sim.docMode, t.sim.stream)}
	for h := range t.sim.known {
		c.sim.known[h] = struct{}{}
	}
	for a, n := range t.sim.count {
		c.sim.count[a] = n
	}
	for r, k := range t.sim.objects {
		c.sim.objects[r] = k
	}
	c.sim.pending = append(c.sim.pending, t.sim.pending...)
	return c
}

// rechange re-encodes change chunk b with a new seq and, if deps is not
// nil, new deps (and a correct checksum).
func rechange(t testing.TB, b []byte, seq uint64, deps []ChangeHash) []byte {
	t.Helper()
	body := chunkBodyOf(t, b)
	r := newReader(body, 0)
	_, err := r.hashes("deps")
	require.NoError(t, err)
	depsEnd := r.off
	_, err = r.lenBytes("actor")
	require.NoError(t, err)
	actorEnd := r.off
	_, err = r.uleb("seq")
	require.NoError(t, err)
	var nb []byte
	if deps != nil {
		nb = uvarint(nb, uint64(len(deps)))
		for _, d := range deps {
			nb = append(nb, d[:]...)
		}
	} else {
		nb = append(nb, body[:depsEnd]...)
	}
	nb = append(nb, body[depsEnd:actorEnd]...)
	nb = uvarint(nb, seq)
	nb = append(nb, body[r.off:]...)
	return wrapChunk(ChunkChange, nb)
}

func heads(d *automerge.Doc) []ChangeHash {
	var hs []ChangeHash
	for _, h := range d.Heads() {
		hs = append(hs, ChangeHash(h))
	}
	return hs
}

func mustChange(t testing.TB, b []byte) *Change {
	t.Helper()
	c, err := ParseChange(b, Limits{})
	require.NoError(t, err)
	return c
}

// mixedKeyProbe builds a victim document whose object 1@Z is a non-empty
// list, and a well-formed change (on the victim's heads) that sets a map key
// in object 1@Z: it was made in another history where 1@Z is a map.
func mixedKeyProbe(t testing.TB) (victim, change []byte) {
	t.Helper()
	const z = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
	v := automerge.New()
	require.NoError(t, v.SetActorID(z))
	require.NoError(t, v.RootMap().Set("m", []any{int64(1)}))
	_, err := v.Commit("")
	require.NoError(t, err)

	w := automerge.New()
	require.NoError(t, w.SetActorID(z))
	require.NoError(t, w.RootMap().Set("m", map[string]any{"a": int64(1)}))
	_, err = w.Commit("")
	require.NoError(t, err)
	before := w.Heads()
	require.NoError(t, w.SetActorID("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"))
	require.NoError(t, w.Path("m", "b").Set(int64(2)))
	_, err = w.Commit("")
	require.NoError(t, err)
	news, err := w.Changes(before...)
	require.NoError(t, err)
	require.Len(t, news, 1)
	return v.Save(), rechange(t, news[0].Save(), 1, heads(v))
}

// trackerOf seeds a tracker with every change of a saved document.
func trackerOf(t testing.TB, saved []byte) *Tracker {
	t.Helper()
	d, err := automerge.Load(saved)
	require.NoError(t, err)
	return trackerFor(t, d)
}

func TestTrackerSeqGaps(t *testing.T) {
	d := automerge.New()
	require.NoError(t, d.SetActorID("0123456789abcdef0123456789abcdef"))
	var raw [][]byte
	for i := 0; i < 4; i++ {
		require.NoError(t, d.RootMap().Set("k", int64(i)))
		_, err := d.Commit("")
		require.NoError(t, err)
	}
	chs, err := d.Changes()
	require.NoError(t, err)
	var parsed []*Change
	for _, c := range chs {
		raw = append(raw, c.Save())
		parsed = append(parsed, mustChange(t, c.Save()))
	}

	// In order, out of order within one batch, and across batches with the
	// core's queue in between: all fine.
	require.NoError(t, NewTracker().Admit(parsed))
	tr := NewTracker()
	require.NoError(t, tr.Admit([]*Change{parsed[3], parsed[1], parsed[2], parsed[0]}))
	assert.Equal(t, 4, tr.Len())
	tr = NewTracker()
	require.NoError(t, tr.Admit([]*Change{parsed[2], parsed[1]}))
	assert.Equal(t, 2, tr.Pending())
	require.NoError(t, tr.Admit([]*Change{parsed[0]}))
	assert.Equal(t, 0, tr.Pending())
	assert.Equal(t, 3, tr.Len())

	// seq 3 on the heads of a document that has only the actor's change 1:
	// well-formed, but the core would abort at automerge.rs:916.
	gap := mustChange(t, rechange(t, raw[0], 3, []ChangeHash{parsed[0].Hash}))
	tr = NewTracker()
	tr.Known(parsed[0])
	err = tr.Admit([]*Change{gap})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "automerge.rs:916")
	assert.Equal(t, 1, tr.Len(), "a rejected Admit leaves the tracker unchanged")

	// A gap that only shows once a queued change becomes ready.
	tr = NewTracker()
	require.NoError(t, tr.Admit([]*Change{gap}))
	err = tr.Admit([]*Change{parsed[0]})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Equal(t, 0, tr.Len())
	assert.Equal(t, 1, tr.Pending())

	// Reusing a seq: the core rejects it (DuplicateSeqNumber); so do we.
	dup := mustChange(t, rechange(t, raw[1], 1, []ChangeHash{}))
	tr = NewTracker()
	tr.Known(parsed[0])
	require.ErrorIs(t, tr.Admit([]*Change{dup}), ErrMalformed)
}

func TestTrackerMixedKeys(t *testing.T) {
	victim, change := mixedKeyProbe(t)
	c := mustChange(t, change) // well-formed on its own
	err := trackerOf(t, victim).Admit([]*Change{c})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "op_set.rs:447")

	// Within one document the parser sees every object's type.
	doc := append(append([]byte{}, victim...), change...)
	_, err = ParseDocument(doc, Limits{})
	require.ErrorIs(t, err, ErrMalformed)
}

func TestParseDocumentSeqs(t *testing.T) {
	d := automerge.New()
	require.NoError(t, d.SetActorID("0123456789abcdef0123456789abcdef"))
	require.NoError(t, d.RootMap().Set("k", int64(0)))
	_, err := d.Commit("")
	require.NoError(t, err)
	snapshot := d.Save()
	var incs [][]byte
	for i := 1; i < 4; i++ {
		require.NoError(t, d.RootMap().Set("k", int64(i)))
		_, err := d.Commit("")
		require.NoError(t, err)
		incs = append(incs, d.SaveIncremental())
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// Incrementals in any order (storage loads them by key), duplicated,
	// or already contained in a later snapshot: all load fine.
	for name, b := range map[string][]byte{
		"in order":          cat(snapshot, incs[0], incs[1], incs[2]),
		"reversed":          cat(snapshot, incs[2], incs[1], incs[0]),
		"duplicated":        cat(snapshot, incs[0], incs[0], incs[1]),
		"stale incremental": cat(d.Save(), incs[1]),
		"changes only":      cat(incs[1], incs[0]),
	} {
		_, err := ParseDocument(b, Limits{})
		require.NoError(t, err, name)
	}
	// A gap: the actor's change 3 right after a snapshot with change 1.
	chs, err := d.Changes()
	require.NoError(t, err)
	gap := rechange(t, chs[1].Save(), 3, nil)
	_, err = ParseDocument(cat(snapshot, gap), Limits{})
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "automerge.rs:916")
}
