package amcheck

// Sync message type bytes.
const (
	// SyncV1 is the first byte of the original sync message, the only one
	// automerge 0.5.0 understands.
	SyncV1 byte = 0x42
	// SyncV2 is the first byte of the newer message whose changes entry may
	// carry a whole document. automerge 0.5.0 rejects it cleanly
	// (ReadMessageError::WrongType), so it never reaches the core's state.
	SyncV2 byte = 0x43
)

// Bloom filter bounds. The 0.5.0 core allocates and loops num_probes times
// per probed hash (sync/bloom.rs get_probes) and computes the modulus as the
// u32 value 8*len(bits), which wraps to zero for 2^29 bytes of bits.
const (
	maxBloomProbes   = 64
	maxBloomBitBytes = 1<<29 - 1
)

// SyncMessage is a validated sync message.
type SyncMessage struct {
	// Version is the type byte, SyncV1 or SyncV2.
	Version byte
	// Heads are the sender's heads.
	Heads []ChangeHash
	// Need are the hashes the sender asks for.
	Need []ChangeHash
	// Have summarizes what the sender has.
	Have []Have
	// Changes are the change entries, sub-slices of the input. For SyncV1
	// each is one change chunk; for SyncV2 each is a sequence of chunks to
	// load incrementally.
	Changes [][]byte
	// Decoded are the headers of the changes of a SyncV1 message, one per
	// entry of Changes.
	Decoded []*Change
	// Flags is the raw trailing flags section sent by newer automerge
	// versions (a length-prefixed byte string), or nil if absent.
	Flags []byte
}

// Have is one "have" entry of a sync message.
type Have struct {
	// LastSync are the heads the sender last synced with the recipient.
	LastSync []ChangeHash
	// Bloom is the sender's filter of the changes since LastSync.
	Bloom BloomFilter
}

// BloomFilter is a validated sync bloom filter. The zero value (no entries)
// is what an empty filter encodes to.
type BloomFilter struct {
	NumEntries   uint32
	BitsPerEntry uint32
	NumProbes    uint32
	Bits         []byte
}

// ParseSyncMessage validates a sync message and every change it carries.
func ParseSyncMessage(b []byte, lim Limits) (*SyncMessage, error) {
	bud := newBudget(lim)
	if len(b) > bud.lim.MaxMessageBytes {
		return nil, limitf(0, "message of %d bytes exceeds MaxMessageBytes %d", len(b), bud.lim.MaxMessageBytes)
	}
	r := newReader(b, 0)
	v, err := r.byte1("message type")
	if err != nil {
		return nil, err
	}
	if v != SyncV1 && v != SyncV2 {
		return nil, malformedf(0, "unknown sync message type 0x%02x", v)
	}
	m := &SyncMessage{Version: v}
	if m.Heads, err = r.hashes("heads"); err != nil {
		return nil, err
	}
	if m.Need, err = r.hashes("need"); err != nil {
		return nil, err
	}
	// A have entry is at least two bytes (two zero counts).
	nHave, err := r.count("have", 2)
	if err != nil {
		return nil, err
	}
	for i := 0; i < nHave; i++ {
		var h Have
		if h.LastSync, err = r.hashes("have last sync"); err != nil {
			return nil, err
		}
		bb, err := r.lenBytes("bloom filter")
		if err != nil {
			return nil, err
		}
		if h.Bloom, err = parseBloom(bb, r.pos()-len(bb)); err != nil {
			return nil, err
		}
		m.Have = append(m.Have, h)
	}
	nPos := r.pos()
	nChanges, err := r.count("changes", 1)
	if err != nil {
		return nil, err
	}
	if nChanges > bud.lim.MaxChangesPerMessage {
		return nil, limitf(nPos, "%d changes exceed MaxChangesPerMessage %d", nChanges, bud.lim.MaxChangesPerMessage)
	}
	for i := 0; i < nChanges; i++ {
		cb, err := r.lenBytes("change")
		if err != nil {
			return nil, err
		}
		pos := r.pos() - len(cb)
		m.Changes = append(m.Changes, cb)
		if v == SyncV1 {
			// The 0.5.0 core parses each entry as one uncompressed change
			// without checking the chunk type.
			ch, err := parseChangeChunk(cb, pos, bud, false)
			if err != nil {
				return nil, err
			}
			if err := bud.addChanges(1, pos); err != nil {
				return nil, err
			}
			m.Decoded = append(m.Decoded, ch)
			continue
		}
		if len(cb) == 0 {
			return nil, malformedf(pos, "empty changes entry")
		}
		if err := parseChunks(cb, pos, bud, &Document{}); err != nil {
			return nil, err
		}
	}
	if !r.empty() {
		// Newer versions append a length-prefixed flags section, which the
		// 0.5.0 core ignores.
		f, err := r.lenBytes("flags")
		if err != nil {
			return nil, err
		}
		m.Flags = f
		if !r.empty() {
			return nil, r.errf("%d bytes after the flags section", r.remaining())
		}
	}
	return m, nil
}

// parseBloom validates an encoded bloom filter that starts at absolute
// offset base.
func parseBloom(b []byte, base int) (BloomFilter, error) {
	var f BloomFilter
	if len(b) == 0 {
		return f, nil
	}
	r := newReader(b, base)
	var err error
	if f.NumEntries, err = r.uleb32("bloom entries"); err != nil {
		return f, err
	}
	if f.BitsPerEntry, err = r.uleb32("bloom bits per entry"); err != nil {
		return f, err
	}
	if f.NumProbes, err = r.uleb32("bloom probes"); err != nil {
		return f, err
	}
	// contains_hash takes every probe modulo 8*len(bits). The length is
	// ceil(entries*bitsPerEntry/8), so with entries > 0 and bitsPerEntry == 0
	// the modulus is zero and the core panics (bloom.rs:74).
	if f.NumEntries > 0 && f.BitsPerEntry == 0 {
		return f, malformedf(base, "bloom filter with %d entries and 0 bits per entry (division by zero in the core)", f.NumEntries)
	}
	if f.NumProbes > maxBloomProbes || (f.NumEntries > 0 && f.NumProbes == 0) {
		return f, malformedf(base, "bloom filter with %d probes (want 1..%d)", f.NumProbes, maxBloomProbes)
	}
	nBytes := (uint64(f.NumEntries)*uint64(f.BitsPerEntry) + 7) / 8
	if nBytes > maxBloomBitBytes {
		return f, malformedf(base, "bloom filter of %d bytes (the core's u32 modulus would wrap)", nBytes)
	}
	if f.Bits, err = r.take(nBytes, "bloom bits"); err != nil {
		return f, err
	}
	if !r.empty() {
		return f, r.errf("%d bytes after the bloom filter bits", r.remaining())
	}
	return f, nil
}
