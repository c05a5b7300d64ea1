// Package storetest is the conformance suite for store.Store: every
// implementation runs Run (or RunOptions, for persistent stores) from its
// tests, so that the engine can rely on one set of semantics whichever store
// backs it.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemStore() })
//	}
package storetest
