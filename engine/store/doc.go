// Package store defines the storage interface of the replication engine: a
// durable, hierarchical byte key-value store laid out as automerge-repo lays
// out its storage adapters (snapshot, incremental and sync-state chunks per
// document, plus the storage id), and an in-memory implementation for tests
// and simulations. The conformance suite in storetest is run against every
// implementation.
package store
