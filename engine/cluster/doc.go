// Package cluster replicates a relay's documents through NATS JetStream, so
// that several relays serve the same documents.
//
// Every relay publishes the changes its clients make to one stream (default
// "AMSYNC"), one subject per document ("amsync.doc.<documentId>"), and reads
// the whole stream back through ONE ordered consumer, whatever the number of
// documents. A Cluster is the engine's Replicator: a change is published,
// and JetStream has answered with its PubAck (so it is stored as the
// stream's replicas setting says), before the relay writes it to its own
// store and before any client hears it acknowledged. What the consumer
// delivers goes to Engine.ApplyRemote: it is applied to the document when
// the document is loaded or open on this relay (and synced to its clients),
// or written to the store as it is otherwise.
//
// Each relay keeps, in its own store, the stream sequence up to which it has
// applied everything (its feed position). A restart resumes from there; a
// relay with an empty data directory replays the stream from the start. A
// relay reports Ready, and accepts clients, only once it has applied the
// stream as it was when it started, so it never answers doc-unavailable for
// a document it simply has not read yet.
//
// A relay that joins a cluster with documents of its own (no feed position
// in its store yet) first publishes each of them whole, so that the cluster
// has everything that relay could acknowledge.
package cluster
