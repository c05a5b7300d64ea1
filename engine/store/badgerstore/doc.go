// Package badgerstore is the durable store.Store of the relay, on Badger v4.
// It is the only package that imports Badger.
//
// Every Apply is atomic and fsynced before it returns (Badger's SyncWrites).
// To keep many documents saving at once from paying one fsync each, Apply
// calls that arrive while a write is in progress are coalesced by a single
// committer goroutine into one Badger transaction and one fsync (group
// commit); each caller still gets its own result.
//
// Keys are encoded so that Badger's bytewise order and prefix scans are the
// component-wise order and prefixes of store.Key: a namespace byte 0x01,
// then every component followed by a NUL byte (which store.Key forbids
// inside components). [doc] is then a prefix of [doc, "snapshot", h] but not
// of [doc2, ...]. The namespace byte keeps user keys away from Badger's
// reserved "!badger!" prefix and leaves room for other key spaces.
//
//	s, err := badgerstore.Open(badgerstore.Config{Dir: dir, Logger: log})
//	...
//	defer s.Close()
//	id, err := store.EnsureStorageID(ctx, s, nil)
//	err = s.Apply(ctx, []store.Op{{Key: store.SnapshotKey(doc, h), Data: b}})
//
// Values of ValueThreshold bytes or more live in Badger's value log, whose
// space is reclaimed only by RunGC; call it periodically (Size reports the
// value log's size).
package badgerstore
