package crdt

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt/amcheck"
)

var t0 = time.Unix(1700000000, 0)

func newDoc(t *testing.T, actor ActorID) *Doc {
	d, err := New(actor)
	require.NoError(t, err)
	return d
}

func set(t *testing.T, d *Doc, path []any, v any) {
	_, err := d.Change(t0, "", func(tx *Tx) error { return tx.Set(path, v) })
	require.NoError(t, err)
}

func TestValuesRoundTrip(t *testing.T) {
	d := newDoc(t, "01")
	_, err := d.Change(t0, "init", func(tx *Tx) error {
		return tx.Set(nil, map[string]any{
			"s": "str", "i": int64(-3), "f": 1.5, "b": true, "n": nil, "bytes": []byte{1, 2},
			"list": []any{"a", map[string]any{"x": int64(1)}}, "text": Text("hi"), "count": Counter(5),
			"nested": map[string]any{"deep": []any{int64(1), int64(2)}},
		})
	})
	require.NoError(t, err)
	require.NoError(t, func() error {
		_, err := d.Change(t0, "", func(tx *Tx) error {
			if err := tx.Increment([]any{"count"}, 2); err != nil {
				return err
			}
			if err := tx.Splice([]any{"text"}, 2, 0, " there"); err != nil {
				return err
			}
			return tx.Insert([]any{"list"}, 0, "first")
		})
		return err
	}())
	v, err := d.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"s": "str", "i": int64(-3), "f": 1.5, "b": true, "n": nil, "bytes": []byte{1, 2},
		"list": []any{"first", "a", map[string]any{"x": int64(1)}}, "text": "hi there", "count": int64(7),
		"nested": map[string]any{"deep": []any{int64(1), int64(2)}},
	}, v)

	loaded, err := Load(d.Save(), "02")
	require.NoError(t, err)
	assert.Equal(t, d.Heads(), loaded.Heads())
	v2, err := loaded.Value()
	require.NoError(t, err)
	assert.Equal(t, v, v2)
}

func TestDeterministicChanges(t *testing.T) {
	mk := func() Heads {
		d := newDoc(t, "0a0b")
		set(t, d, []any{"m"}, map[string]any{"z": "1", "a": "2", "k": []any{"x"}})
		return d.Heads()
	}
	assert.Equal(t, mk(), mk(), "same inputs, same change hash")
}

func TestFailedChangeRollsBack(t *testing.T) {
	d := newDoc(t, "01")
	set(t, d, []any{"keep"}, "yes")
	peer := newDoc(t, "02")
	ps := NewSyncState(peer)
	ds := NewSyncState(d)
	before := d.Heads()
	_, err := d.Change(t0, "", func(tx *Tx) error {
		if err := tx.Set([]any{"junk"}, "no"); err != nil {
			return err
		}
		return errors.New("refused")
	})
	require.ErrorIs(t, err, ErrChange)
	assert.Equal(t, before, d.Heads())
	v, err := d.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"keep": "yes"}, v)
	// The next change does not carry the rolled back operation, and sync
	// states made before the rollback still work.
	set(t, d, []any{"after"}, int64(1))
	syncPair(t, ds, ps)
	pv, err := peer.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"keep": "yes", "after": int64(1)}, pv)
}

func syncPair(t *testing.T, a, b *SyncState) {
	for range 20 {
		m1, ok1 := a.Generate()
		if ok1 {
			_, err := b.Receive(m1)
			require.NoError(t, err)
		}
		m2, ok2 := b.Generate()
		if ok2 {
			_, err := a.Receive(m2)
			require.NoError(t, err)
		}
		if !ok1 && !ok2 {
			return
		}
	}
	t.Fatal("sync did not settle")
}

func TestSyncAndResume(t *testing.T) {
	a, b := newDoc(t, "0a"), newDoc(t, "0b")
	set(t, a, []any{"a"}, int64(1))
	set(t, b, []any{"b"}, int64(2))
	sa, sb := NewSyncState(a), NewSyncState(b)
	syncPair(t, sa, sb)
	assert.Equal(t, a.Heads(), b.Heads())

	// Persist, edit, resume from the persisted states.
	ea, eb := sa.Encode(), sb.Encode()
	set(t, a, []any{"a"}, int64(3))
	ra, err := LoadSyncState(a, ea)
	require.NoError(t, err)
	rb, err := LoadSyncState(b, eb)
	require.NoError(t, err)
	syncPair(t, ra, rb)
	v, err := b.Value()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": int64(3), "b": int64(2)}, v)

	_, err = LoadSyncState(a, []byte{0xff})
	require.ErrorIs(t, err, ErrSync)
	_, err = NewSyncState(a).Receive([]byte{0x42, 0xff})
	require.ErrorIs(t, err, ErrSync)
}

func TestIncrementalChunksLoadAfterSnapshot(t *testing.T) {
	d := newDoc(t, "01")
	set(t, d, []any{"a"}, "1")
	snap := d.Save()
	h1 := d.Heads()
	set(t, d, []any{"b"}, "2")
	inc1, err := d.ChangesSince(h1)
	require.NoError(t, err)
	h2 := d.Heads()
	set(t, d, []any{"c"}, "3")
	inc2, err := d.ChangesSince(h2)
	require.NoError(t, err)

	all := append(append(append([]byte{}, snap...), inc1...), inc2...)
	l, err := Load(all, "")
	require.NoError(t, err)
	assert.Equal(t, d.Heads(), l.Heads())

	l2, err := Load(snap, "")
	require.NoError(t, err)
	require.NoError(t, l2.ApplyChanges(append(inc1, inc2...)))
	assert.Equal(t, d.Heads(), l2.Heads())
	assert.True(t, l2.HasChange(d.Heads()[0]))
}

func TestHeadsKeyMatchesAutomergeRepo(t *testing.T) {
	d := newDoc(t, "01")
	set(t, d, []any{"a"}, "1")
	other := newDoc(t, "02")
	set(t, other, []any{"b"}, "1")
	require.NoError(t, d.ApplyChanges(mustChanges(t, other)))
	hs := d.Heads()
	require.Len(t, hs, 2)
	sum := sha256.Sum256([]byte(hs[0].String() + hs[1].String()))
	assert.Equal(t, hex.EncodeToString(sum[:]), hs.Key())
}

func mustChanges(t *testing.T, d *Doc) []byte {
	b, err := d.ChangesSince(nil)
	require.NoError(t, err)
	return b
}

func TestActorValidation(t *testing.T) {
	_, err := New("xyz")
	require.ErrorIs(t, err, ErrInvalidActor)
	_, err = New("")
	require.ErrorIs(t, err, ErrInvalidActor)
	_, err = Load([]byte("garbage"), "")
	require.ErrorIs(t, err, ErrLoad)
}

func ExampleDoc_Change() {
	d, _ := New("0102")
	d.Change(time.Unix(0, 0), "add a todo", func(tx *Tx) error {
		return tx.Set([]any{"todos"}, []any{map[string]any{"title": "milk", "done": false}})
	})
	v, _ := d.Value()
	fmt.Println(v)
	// Output: map[todos:[map[done:false title:milk]]]
}

func TestHeadsMessageIsAcceptedAndAnnouncesHeads(t *testing.T) {
	a := newDoc(t, "0a")
	set(t, a, []any{"k"}, "v")
	b, err := Load(a.Save(), "0b")
	require.NoError(t, err)
	sb := NewSyncState(b)
	_, err = amcheck.ParseSyncMessage(HeadsMessage(a.Heads()), amcheck.Limits{})
	require.NoError(t, err, "the validator accepts it")
	heads, err := sb.Receive(HeadsMessage(a.Heads()))
	require.NoError(t, err)
	assert.Equal(t, a.Heads(), heads)
	// In sync: nothing more to say on either side.
	_, ok := sb.Generate()
	assert.False(t, ok)
	// A later change on b is then sent in full, not just announced.
	set(t, b, []any{"k2"}, "v2")
	msg, ok := sb.Generate()
	require.True(t, ok)
	sa := NewSyncState(a)
	_, err = sa.Receive(msg)
	require.NoError(t, err)
	assert.Equal(t, b.Heads(), a.Heads())
}
