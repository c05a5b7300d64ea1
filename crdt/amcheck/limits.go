package amcheck

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, with a message naming the field and the byte offset at fault.
var (
	// ErrMalformed reports input that is not valid automerge binary data, or
	// that is valid but known to crash the automerge 0.5.0 core.
	ErrMalformed = errors.New("amcheck: malformed input")
	// ErrLimit reports well-formed input that exceeds one of the Limits.
	ErrLimit = errors.New("amcheck: limit exceeded")
)

// Limits bounds the size of the input and the work the automerge core would
// do on it. A zero or negative field takes its value from DefaultLimits, so
// Limits{} is the defaults and a caller can override one field at a time.
type Limits struct {
	// MaxMessageBytes bounds the length of one sync message.
	MaxMessageBytes int
	// MaxChangesPerMessage bounds the number of change entries in one sync
	// message.
	MaxChangesPerMessage int
	// MaxOpsPerChange bounds the number of ops in one change chunk.
	MaxOpsPerChange int
	// MaxDocumentBytes bounds the length of a saved document (all chunks).
	MaxDocumentBytes int
	// MaxOps bounds the work of one call: the total number of ops, of
	// changes, and of pred/succ/deps entries, each counted separately, over
	// all chunks of a document or all changes of a sync message. RLE lets a
	// few bytes stand for millions of ops; this is the bound on that
	// expansion.
	MaxOps int
	// MaxDecompressedBytes bounds the total number of bytes inflated from
	// deflate-compressed chunks and columns in one call.
	MaxDecompressedBytes int
}

// Default limit values, sized for a server that holds many documents.
const (
	DefaultMaxMessageBytes      = 64 << 20
	DefaultMaxChangesPerMessage = 100_000
	DefaultMaxOpsPerChange      = 1_000_000
	DefaultMaxDocumentBytes     = 256 << 20
	DefaultMaxOps               = 10_000_000
	DefaultMaxDecompressedBytes = 256 << 20
)

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes:      DefaultMaxMessageBytes,
		MaxChangesPerMessage: DefaultMaxChangesPerMessage,
		MaxOpsPerChange:      DefaultMaxOpsPerChange,
		MaxDocumentBytes:     DefaultMaxDocumentBytes,
		MaxOps:               DefaultMaxOps,
		MaxDecompressedBytes: DefaultMaxDecompressedBytes,
	}
}

// withDefaults returns l with every non-positive field replaced by its
// default.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	fill := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&l.MaxMessageBytes, d.MaxMessageBytes)
	fill(&l.MaxChangesPerMessage, d.MaxChangesPerMessage)
	fill(&l.MaxOpsPerChange, d.MaxOpsPerChange)
	fill(&l.MaxDocumentBytes, d.MaxDocumentBytes)
	fill(&l.MaxOps, d.MaxOps)
	fill(&l.MaxDecompressedBytes, d.MaxDecompressedBytes)
	return l
}

// budget tracks the work of one top-level call against its Limits.
type budget struct {
	lim          Limits
	ops          int
	changes      int
	groupEntries int
	inflated     int
}

func newBudget(lim Limits) *budget { return &budget{lim: lim.withDefaults()} }

func (b *budget) addOps(n int, off int) error {
	b.ops += n
	if n < 0 || b.ops > b.lim.MaxOps {
		return limitf(off, "total ops %d exceed MaxOps %d", b.ops, b.lim.MaxOps)
	}
	return nil
}

func (b *budget) addChanges(n int, off int) error {
	b.changes += n
	if n < 0 || b.changes > b.lim.MaxOps {
		return limitf(off, "total changes %d exceed MaxOps %d", b.changes, b.lim.MaxOps)
	}
	return nil
}

func (b *budget) addGroupEntries(n uint64, off int) error {
	if n > uint64(b.lim.MaxOps) {
		return limitf(off, "pred/succ/deps entries exceed MaxOps %d", b.lim.MaxOps)
	}
	b.groupEntries += int(n)
	if b.groupEntries > b.lim.MaxOps {
		return limitf(off, "pred/succ/deps entries %d exceed MaxOps %d", b.groupEntries, b.lim.MaxOps)
	}
	return nil
}

// inflate reserves room for up to max more decompressed bytes and returns
// how many may be produced.
func (b *budget) inflateRoom() int { return b.lim.MaxDecompressedBytes - b.inflated }

func malformedf(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s (offset %d)", ErrMalformed, fmt.Sprintf(format, args...), off)
}

func limitf(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s (offset %d)", ErrLimit, fmt.Sprintf(format, args...), off)
}
