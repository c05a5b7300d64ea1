// Package engine is the replication core of amsync: an automerge-repo
// compatible sync peer that owns no sockets and no disk of its own.
//
// The engine is a full automerge peer for every document: it keeps one sync
// state per (peer, document), applies the changes peers send, and answers
// each peer with a sync message generated from that peer's own state. A
// change from one peer reaches every other peer that has the document open.
//
// Three layers, from pure to driven:
//
//   - Replica is the automerge side of one document. Step(ReplicaInput)
//     returns ReplicaOutput: store writes and sync messages as data. It does
//     no I/O, so it can run in-process, in an isolated worker process, or
//     under a simulation.
//   - A document actor (one per active document) drains its queue in
//     batches: one Replica step, one durable Store.Apply, then the messages.
//     Documents run in parallel; a huge document stalls only itself.
//   - Session is the handshake state machine of one connection (join, peer,
//     error) and routes its messages to document actors.
//
// The caller's loop (wsrelay does this; simulations do it with virtual
// time and a deterministic task queue):
//
//	eng, _ := engine.New(engine.Config{Store: st})
//	sess := eng.Open(conn)          // conn implements engine.Conn
//	for frame := range frames {     // one binary WebSocket frame each
//		if err := sess.HandleFrame(frame); err != nil {
//			break                   // the session already sent error + close
//		}
//	}
//	sess.Closed()
//	// every few seconds: eng.Tick(now) evicts idle documents
//
// The durability rule: a step's writes reach the store, which returns only
// once they are synced, before any message of that step is handed to a
// Conn. A peer therefore never sees heads the engine could still lose.
// With a Replicator (Config.Replicator; package engine/cluster shares
// documents between relays through NATS JetStream) the step's new changes
// are published, and acknowledged there, before that write.
package engine
