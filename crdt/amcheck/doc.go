// Package amcheck validates automerge binary data (sync messages, change
// chunks and saved documents) in pure Go, before the bytes reach the Rust
// automerge core that automerge-go links.
//
// Its one job: reject every input that is malformed, that is known to make
// the automerge 0.5.0 core panic (which aborts the process, as the core is
// built with panic=abort), or that would cost the core more work than the
// configured Limits allow. It never imports automerge-go, so it runs where the
// core is absent; crdt/ may import it.
//
// The checks mirror the decoders of automerge 0.5.0 (rust/automerge/src/
// storage, columnar, sync) and are deliberately stricter where a real
// encoder never produces the construct (overlong LEB128 in headers, trailing
// bytes, unknown value types, op ids out of causal order). Every rejection
// wraps ErrMalformed or ErrLimit with the field and byte offset at fault.
//
// What the parsers cannot check alone are facts that depend on the
// receiving document's state: whether a change's seq follows the changes
// the document holds for its actor, and whether an op's key kind matches
// the type of an existing object. The 0.5.0 core trusts both and aborts on
// a mismatch (automerge.rs:916, op_set.rs:447). Tracker mirrors that state
// for one document; the caller that owns the document must feed it.
// ParseDocument runs the same checks across the chunks of one saved
// document, which is self-contained.
package amcheck
