// Package crdt is the only package that imports automerge-go. It wraps
// automerge documents and sync states with deterministic inputs (the commit
// time and the actor id are arguments, never read from the clock or drawn at
// random inside), and with the hazards of the 2023 automerge core kept in
// one place: no Merge (it deadlocks on a→b / b→a and on a→a), heads checked
// after every incremental load (LoadIncremental never reports garbage).
//
// The Rust core under automerge-go is built with panic=abort: malformed
// input can abort the whole process. Callers that handle bytes from peers
// or from disk must validate them first (package crdt/amcheck) or run this
// package in an isolated worker process.
package crdt
