package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrBadStorageID is returned by EnsureStorageID when the stored storage id
// is empty or not UTF-8 text. It is not replaced silently: peers keep sync
// states keyed by it, and a new id would make them start over.
var ErrBadStorageID = errors.New("store: stored storage id is empty or not UTF-8")

// EnsureStorageID returns the storage id held under ["storage-adapter-id"].
// When there is none it draws a random UUIDv4 from r (crypto/rand when r is
// nil), stores it with a durable Apply and only then returns it, so that an
// id is never advertised before it is persisted.
//
// Call it once at startup, before the id is used: two concurrent first
// calls on an empty store may each create an id, and the last write wins.
func EnsureStorageID(ctx context.Context, s Store, r io.Reader) (string, error) {
	k := StorageIDStoreKey()
	b, err := s.Load(ctx, k)
	if err != nil {
		return "", fmt.Errorf("store: load storage id: %w", err)
	}
	if b != nil {
		if len(b) == 0 || !utf8.Valid(b) {
			return "", fmt.Errorf("%w: %q", ErrBadStorageID, b)
		}
		return string(b), nil
	}
	if r == nil {
		r = rand.Reader
	}
	id, err := NewUUIDv4(r)
	if err != nil {
		return "", err
	}
	if err := s.Apply(ctx, []Op{{Key: k, Data: []byte(id)}}); err != nil {
		return "", fmt.Errorf("store: save storage id: %w", err)
	}
	return id, nil
}

// NewUUIDv4 reads 16 bytes from r and formats them as a random (version 4,
// RFC 9562 variant) UUID in its 36-character lowercase text form, the form
// automerge-repo uses for storage ids.
func NewUUIDv4(r io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return "", fmt.Errorf("store: read random bytes for uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:]), nil
}
