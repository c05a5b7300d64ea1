package engine

import (
	"sync/atomic"
	"time"
)

// Stats are the engine's counters, updated atomically as it runs.
type Stats struct {
	SessionsOpen   atomic.Int64
	DocsActive     atomic.Int64 // documents with an actor (loaded or with peers)
	DocsLoaded     atomic.Int64 // documents whose replica is in memory
	DocLoads       atomic.Int64
	Evictions      atomic.Int64
	FramesIn       atomic.Int64
	FramesOut      atomic.Int64
	BytesIn        atomic.Int64
	BytesOut       atomic.Int64
	ProtocolErrors atomic.Int64
	SendErrors     atomic.Int64
	StoreErrors    atomic.Int64
	Saves          atomic.Int64
	SaveNanos      atomic.Int64
	CoreCrashes    atomic.Int64
	Refused        atomic.Int64 // messages refused: read-only changes, document caps
	Published      atomic.Int64 // Replicator.Publish calls that succeeded
	PublishErrors  atomic.Int64
	PublishNanos   atomic.Int64
	RemoteApplied  atomic.Int64 // ApplyRemote inputs applied to a loaded replica
	RemoteStored   atomic.Int64 // ApplyRemote inputs written to the store without loading the document
	RemoteSkipped  atomic.Int64 // ApplyRemote inputs this engine had published itself
	AcksDeferred   atomic.Int64 // acknowledgements held back to the document's next step (deferAck)
}

// StatsSnapshot is a copy of Stats at one moment.
type StatsSnapshot struct {
	SessionsOpen, DocsActive, DocsLoaded, DocLoads, Evictions int64
	FramesIn, FramesOut, BytesIn, BytesOut                    int64
	ProtocolErrors, SendErrors, StoreErrors                   int64
	Saves, CoreCrashes, Refused                               int64
	SaveTime                                                  time.Duration
	Published, PublishErrors                                  int64
	PublishTime                                               time.Duration
	RemoteApplied, RemoteStored, RemoteSkipped                int64
	AcksDeferred                                              int64
}

func (s *Stats) observeSave(d time.Duration) { s.SaveNanos.Add(int64(d)) }

func (s *Stats) snapshot() StatsSnapshot {
	return StatsSnapshot{
		SessionsOpen: s.SessionsOpen.Load(), DocsActive: s.DocsActive.Load(), DocsLoaded: s.DocsLoaded.Load(),
		DocLoads: s.DocLoads.Load(), Evictions: s.Evictions.Load(),
		FramesIn: s.FramesIn.Load(), FramesOut: s.FramesOut.Load(), BytesIn: s.BytesIn.Load(), BytesOut: s.BytesOut.Load(),
		ProtocolErrors: s.ProtocolErrors.Load(), SendErrors: s.SendErrors.Load(), StoreErrors: s.StoreErrors.Load(),
		Saves: s.Saves.Load(), CoreCrashes: s.CoreCrashes.Load(), Refused: s.Refused.Load(), SaveTime: time.Duration(s.SaveNanos.Load()),
		Published: s.Published.Load(), PublishErrors: s.PublishErrors.Load(), PublishTime: time.Duration(s.PublishNanos.Load()),
		RemoteApplied: s.RemoteApplied.Load(), RemoteStored: s.RemoteStored.Load(), RemoteSkipped: s.RemoteSkipped.Load(),
		AcksDeferred: s.AcksDeferred.Load(),
	}
}
