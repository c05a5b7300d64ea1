package crdt

import (
	"fmt"
	"maps"
	"slices"

	"github.com/automerge/automerge-go"
)

// Tx is the set of operations a change function may make. Paths are map
// keys (string) and list indices (int) from the document root.
type Tx struct {
	d *Doc
}

// Set puts a value at path. Plain Go values are accepted: map[string]any
// becomes a map, []any a list, Text a collaborative text, Counter a counter,
// and scalars (string, bool, integers, floats, []byte, time.Time, nil).
// Map keys are written in sorted order so that the same call always makes
// the same change bytes (deterministic simulations depend on it).
func (tx *Tx) Set(path []any, value any) error {
	if len(path) == 0 {
		m, ok := value.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: the root can only be set to a map", ErrChange)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := tx.Set([]any{k}, m[k]); err != nil {
				return err
			}
		}
		return nil
	}
	p := tx.d.am.Path(path...)
	var err error
	switch x := value.(type) {
	case map[string]any:
		if err = p.Set(automerge.NewMap()); err == nil {
			for _, k := range slices.Sorted(maps.Keys(x)) {
				if err := tx.Set(append(slices.Clip(path), k), x[k]); err != nil {
					return err
				}
			}
		}
	case []any:
		if err = p.Set(automerge.NewList()); err == nil {
			for i, e := range x {
				if err := tx.Insert(path, i, e); err != nil {
					return err
				}
			}
		}
	case Text:
		err = p.Set(automerge.NewText(string(x)))
	case Counter:
		err = p.Set(automerge.NewCounter(int64(x)))
	default:
		err = p.Set(value)
	}
	if err != nil {
		return fmt.Errorf("%w: set %v: %v", ErrChange, path, err)
	}
	return nil
}

// Delete removes the map key or list element at path.
func (tx *Tx) Delete(path []any) error {
	if len(path) == 0 {
		return fmt.Errorf("%w: cannot delete the root", ErrChange)
	}
	if err := tx.d.am.Path(path...).Delete(); err != nil {
		return fmt.Errorf("%w: delete %v: %v", ErrChange, path, err)
	}
	return nil
}

// Increment adds delta to the counter at path, creating it when absent.
func (tx *Tx) Increment(path []any, delta int64) error {
	if err := tx.d.am.Path(path...).Counter().Inc(delta); err != nil {
		return fmt.Errorf("%w: increment %v: %v", ErrChange, path, err)
	}
	return nil
}

// Splice edits the text at path: deletes del code points at pos and
// inserts s there, creating the text when absent.
func (tx *Tx) Splice(path []any, pos, del int, s string) error {
	if err := tx.d.am.Path(path...).Text().Splice(pos, del, s); err != nil {
		return fmt.Errorf("%w: splice %v: %v", ErrChange, path, err)
	}
	return nil
}

// Insert inserts values into the list at path before index idx, creating
// the list when absent. Nested maps and lists are written as Set writes them.
func (tx *Tx) Insert(path []any, idx int, values ...any) error {
	l := tx.d.am.Path(path...).List()
	for i, v := range values {
		var err error
		switch v.(type) {
		case map[string]any, []any, Text, Counter:
			if err = l.Insert(idx+i, nil); err == nil {
				err = tx.Set(append(slices.Clip(path), idx+i), v)
			}
		default:
			err = l.Insert(idx+i, v)
		}
		if err != nil {
			return fmt.Errorf("%w: insert %v: %v", ErrChange, path, err)
		}
	}
	return nil
}

// Get reads the value at path as plain Go values (see Doc.Value); nil when
// absent.
func (tx *Tx) Get(path []any) (any, error) {
	v, err := tx.d.am.Path(path...).Get()
	if err != nil {
		return nil, fmt.Errorf("%w: get %v: %v", ErrChange, path, err)
	}
	return plain(v)
}

// Text marks a string to be stored as collaborative text rather than as an
// atomic string value.
type Text string

// Counter marks an integer to be stored as a counter.
type Counter int64
