// Package isolate runs the automerge core out of harm's way: an engine.Core
// whose replicas live in supervised worker processes, re-executed from the
// host binary itself. The automerge core under automerge-go is Rust built
// with panic=abort, so a malformed sync message or document aborts the
// process that parses it; with this Core that process is a worker, and the
// relay, its connections and its store carry on. The engine then reloads
// the affected documents from the store, replays the batch input by input
// to find the one that aborts, and disconnects its sender.
//
// A binary that uses Host must import this package (its init turns the
// process into a worker when EnvWorker is set); nothing else is needed.
package isolate
