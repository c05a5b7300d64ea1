// Package peer is the Go client of a relay: a local store (Badger on disk,
// or memory) that works fully offline, and a connection that syncs it with
// the relay whenever it can, redialling with exponential backoff and full
// jitter. Every change is durable locally at once; Pending lists the
// documents whose changes the relay has not acknowledged yet, and
// WaitSynced waits until there are none. Package records builds the records
// API on top of it.
package peer
