// Package records is the records model on top of automerge documents: a
// record is one document in a named collection, created offline with a
// client-made id; each collection has an index document whose id every
// client derives from the collection's name, so that clients discover
// records they were never told about. Deletion is a tombstone that syncs.
// Server hooks add server-generated fields when clients' changes arrive.
//
// The same model is used by the relay's embedding API (over
// *engine.Engine), the Go peer (package peer) and the browser bridge
// (jsbridge/); docs/records.md specifies it for plain automerge-repo
// clients too.
package records
