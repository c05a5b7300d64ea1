package wire

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

var (
	// ErrInvalidDocumentID is returned for a string that is not the
	// bs58check encoding of a 1 to 64 byte document id.
	ErrInvalidDocumentID = errors.New("wire: invalid document id")
	// ErrInvalidURL is returned by ParseURL for a string that is not an
	// automerge URL.
	ErrInvalidURL = errors.New("wire: invalid automerge URL")
	// ErrInvalidHead is returned by DecodeHead for a string that is not the
	// bs58check encoding of a 32-byte change hash.
	ErrInvalidHead = errors.New("wire: invalid head")
)

// URLPrefix starts every automerge URL.
const URLPrefix = "automerge:"

// ParseDocumentID decodes a document id as automerge-repo writes it: the
// bs58check encoding (base58, bitcoin alphabet, with a 4-byte double-SHA-256
// checksum) of the binary id. Like automerge-repo it does not insist on 16
// bytes (other id factories exist), only on 1 to 64.
func ParseDocumentID(s string) ([]byte, error) {
	var buf [maxCheckPayload + checksumLen]byte
	b, ok := checkDecode(s, buf[:])
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrInvalidDocumentID, truncate(s))
	}
	return slices.Clone(b), nil
}

// validDocumentID reports whether s parses as a document id, without
// allocating.
func validDocumentID(s string) bool {
	var buf [maxCheckPayload + checksumLen]byte
	_, ok := checkDecode(s, buf[:])
	return ok
}

// FormatDocumentID returns the bs58check encoding of a binary document id.
// It does not check the length of b: ParseDocumentID accepts the result
// only when b holds 1 to 64 bytes.
func FormatDocumentID(b []byte) string {
	var stack [maxCheckString]byte
	return string(checkAppend(stack[:0], b))
}

// NewDocumentID returns a new document id the way automerge-repo's
// generateAutomergeUrl makes one: 16 bytes from r shaped as a UUIDv4,
// bs58check-encoded (27 or 28 characters). A nil r means crypto/rand.
func NewDocumentID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("wire: new document id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return FormatDocumentID(b[:]), nil
}

// EncodeHead returns the bs58check encoding of a change hash, the form
// automerge-repo 2.x uses for heads in URLs and in remote-heads-changed.
func EncodeHead(h [32]byte) string {
	var stack [maxCheckString]byte
	return string(checkAppend(stack[:0], h[:]))
}

// DecodeHead decodes a bs58check-encoded change hash. Anything but exactly
// 32 bytes is an error wrapping ErrInvalidHead.
func DecodeHead(s string) ([32]byte, error) {
	var buf [maxCheckPayload + checksumLen]byte
	b, ok := checkDecode(s, buf[:])
	if !ok || len(b) != 32 {
		return [32]byte{}, fmt.Errorf("%w: %q", ErrInvalidHead, truncate(s))
	}
	return [32]byte(b), nil
}

// URL is a parsed automerge URL: automerge:<documentId>[#<head>|<head>…].
type URL struct {
	// DocumentID is the bs58check document id.
	DocumentID string
	// Heads are the bs58check change hashes after '#', as written. Nil when
	// the URL has no '#'; empty (not nil) for a bare trailing '#', which
	// automerge-repo reads as "no heads".
	Heads []string
}

// ParseURL parses an automerge URL as automerge-repo 2.5 does: the prefix
// "automerge:", a valid document id, and optionally '#' followed by
// '|'-separated heads, each of which must decode with DecodeHead. More than
// one '#' is an error. Errors wrap ErrInvalidURL, and ErrInvalidDocumentID
// or ErrInvalidHead where that is the cause.
//
// The legacy UUID form and the sub-document paths of automerge-repo 2.6
// ("automerge:<id>/<path>") are not accepted.
func ParseURL(s string) (URL, error) {
	rest, ok := strings.CutPrefix(s, URLPrefix)
	if !ok {
		return URL{}, fmt.Errorf("%w: %q has no %q prefix", ErrInvalidURL, truncate(s), URLPrefix)
	}
	id, heads, hasHeads := strings.Cut(rest, "#")
	if hasHeads && strings.Contains(heads, "#") {
		return URL{}, fmt.Errorf("%w: %q has more than one heads section", ErrInvalidURL, truncate(s))
	}
	if !validDocumentID(id) {
		return URL{}, fmt.Errorf("%w: %w: %q", ErrInvalidURL, ErrInvalidDocumentID, truncate(id))
	}
	u := URL{DocumentID: id}
	if !hasHeads {
		return u, nil
	}
	u.Heads = []string{}
	if heads == "" {
		return u, nil
	}
	for h := range strings.SplitSeq(heads, "|") {
		if _, err := DecodeHead(h); err != nil {
			return URL{}, fmt.Errorf("%w: %w", ErrInvalidURL, err)
		}
		u.Heads = append(u.Heads, h)
	}
	return u, nil
}

// FormatURL returns the automerge URL of a document id. It does not
// validate id.
func FormatURL(id string) string { return URLPrefix + id }

// String formats u as automerge-repo's stringifyAutomergeUrl does: heads,
// when not nil, are sorted and joined with '|' after a '#'.
func (u URL) String() string {
	if u.Heads == nil {
		return FormatURL(u.DocumentID)
	}
	heads := slices.Clone(u.Heads)
	slices.Sort(heads)
	return FormatURL(u.DocumentID) + "#" + strings.Join(heads, "|")
}

// truncate shortens untrusted input quoted in an error message.
func truncate(s string) string {
	const limit = 100
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
