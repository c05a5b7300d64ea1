package simulations

import (
	"errors"
	"fmt"
)

// Summary accumulates the results of a seed range.
type Summary struct {
	// Lost counts acknowledged changes found missing: every one the final
	// check finds, and one for a run that stopped at a loss it saw during
	// the run.
	Seeds, Failed, Converged, Lost int
	MaxStepsToConverge             int
	// MaxStepsSeed is the seed that took the most steps to converge.
	MaxStepsSeed uint64
	// KnownFailed counts failures that belong to a KnownBug.
	KnownFailed int
	// Changes, Acks and Frames add up every run's counters.
	Changes, Acks, Frames int
	// MaxFrameUse is the largest share of its frame budget a run used.
	MaxFrameUse float64
	// MaxFaultRate is the harshest run's injected faults per minute.
	MaxFaultRate float64
	// RelayGaps adds up Result.RelayGaps; SeedsWithRelayGaps counts the
	// runs with any.
	RelayGaps, SeedsWithRelayGaps int
}

// NewSummary returns an empty summary.
func NewSummary() *Summary { return &Summary{} }

// Add counts one result.
func (s *Summary) Add(r Result) {
	s.Seeds++
	if r.Err != nil {
		s.Failed++
		if _, ok := Known(r.Err); ok {
			s.KnownFailed++
		}
	}
	if r.Converged {
		s.Converged++
	}
	// A run stops at the first loss it sees during the run (ErrLost):
	// that is one acknowledged change lost, even though the final ledger
	// check never ran.
	lost := r.Lost
	if lost == 0 && errors.Is(r.Err, ErrLost) {
		lost = 1
	}
	s.Lost += lost
	if r.Converged && r.StepsToConverge > s.MaxStepsToConverge {
		s.MaxStepsToConverge = r.StepsToConverge
		s.MaxStepsSeed = r.Seed
	}
	s.Changes += r.Stats.Changes
	s.Acks += r.Stats.Acks
	s.Frames += r.Stats.Frames
	if r.FrameBudget > 0 {
		s.MaxFrameUse = max(s.MaxFrameUse, float64(r.Stats.Frames)/float64(r.FrameBudget))
	}
	s.MaxFaultRate = max(s.MaxFaultRate, r.FaultRate)
	s.RelayGaps += r.RelayGaps
	if r.RelayGaps > 0 {
		s.SeedsWithRelayGaps++
	}
}

// Line is the one-line summary the simulate command ends with.
func (s *Summary) Line() string {
	return fmt.Sprintf("seeds=%d failed=%d converged=%d lost=%d max_steps_to_converge=%d", s.Seeds, s.Failed, s.Converged, s.Lost, s.MaxStepsToConverge)
}

// Details is a line of the other totals.
func (s *Summary) Details() string {
	return fmt.Sprintf("stats: known_engine_bug_failures=%d changes=%d acks=%d frames=%d max_frame_budget_use=%.2f max_faults_per_min=%.0f relay_gaps=%d (in %d seeds) slowest_seed=%d",
		s.KnownFailed, s.Changes, s.Acks, s.Frames, s.MaxFrameUse, s.MaxFaultRate, s.RelayGaps, s.SeedsWithRelayGaps, s.MaxStepsSeed)
}
