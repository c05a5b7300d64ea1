// Package simulations runs the real engine — its document actors, sync
// logic, pending-change tracking and storage code, on in-memory stores —
// through a simulated, faulty network, deterministically from one seed.
//
// A World holds relays and clients (each an engine.Engine on its own
// store.MemStore, the simulated disk), the links between them and a
// virtual clock. One generator drives everything: which queued document
// task runs next, which frame is delivered, when time advances, every
// fault and every workload decision. Frames are the engine's own
// wire-encoded bytes, fed to Session.HandleFrame. The embedding API
// (Change, Read, Find, Create, and the records model on top) blocks until
// a document task runs, so each call runs on a helper goroutine that the
// World resumes only at points where it knows the call has been answered:
// the World and a helper never run at the same time.
//
// Run draws a fault profile from a seed (swarm testing), runs a workload
// of records and shared-document edits under it, heals the network and
// checks the invariants:
//
//	res := simulations.Run(simulations.Options{Seed: 42})
//	if res.Err != nil {
//		fmt.Println(res.Err)
//		fmt.Println(simulations.ReplayCommand(res.Seed))
//	}
//
// Scenario tests script a World directly (see scenario_test.go); the
// simulate command (cmd/simulate) runs seed ranges and replays one with a
// step-by-step trace. docs/simulations.md describes what is modelled.
package simulations
