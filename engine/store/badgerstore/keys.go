package badgerstore

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/amsync/amsync/engine/store"
)

// nsStore is the first byte of every encoded store.Key.
const nsStore = 0x01

// maxKeyBytes is Badger's key size limit (txn.go maxKeySize).
const maxKeyBytes = 65000

// ErrCorruptKey is returned when a key read from Badger is not in the
// encoding this package writes.
var ErrCorruptKey = errors.New("badgerstore: corrupt key on disk")

// encodeKey encodes k (already validated) as nsStore, then each component
// followed by NUL. A prefix p encodes to a byte prefix of exactly the keys
// that have p as a component-wise prefix.
func encodeKey(k store.Key) []byte {
	n := 1
	for _, c := range k {
		n += len(c) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, nsStore)
	for _, c := range k {
		b = append(b, c...)
		b = append(b, 0)
	}
	return b
}

// decodeKey is the inverse of encodeKey.
func decodeKey(b []byte) (store.Key, error) {
	if len(b) < 3 || b[0] != nsStore || b[len(b)-1] != 0 {
		return nil, fmt.Errorf("%w: %q", ErrCorruptKey, b)
	}
	body := b[1 : len(b)-1]
	k := make(store.Key, 0, bytes.Count(body, []byte{0})+1)
	for c := range bytes.SplitSeq(body, []byte{0}) {
		if len(c) == 0 {
			return nil, fmt.Errorf("%w: empty component in %q", ErrCorruptKey, b)
		}
		k = append(k, string(c))
	}
	return k, nil
}

// firstComponent returns the first component of an encoded key without
// allocating, or nil when the key is malformed.
func firstComponent(b []byte) []byte {
	if len(b) < 3 || b[0] != nsStore {
		return nil
	}
	i := bytes.IndexByte(b[1:], 0)
	if i <= 0 {
		return nil
	}
	return b[1 : 1+i]
}
