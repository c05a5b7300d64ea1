package simulations

import "errors"

// KnownBug is an engine bug the simulator found that is reported and not
// fixed yet. docs/simulations.md describes each, with a seed and a trace.
type KnownBug struct {
	// Err is the failure class (one of this package's sentinel errors)
	// that the bug produces.
	Err error
	// Summary says what goes wrong in the engine.
	Summary string
}

// KnownBugs lists them: a seed failing with one is still a failure for the
// simulate command, which names the bug, while TestSeeds logs it instead
// of failing (give each entry a reproduction test that fails once the bug
// is fixed, then remove both). The three bugs found so far are fixed; see
// regression_test.go.
var KnownBugs []KnownBug

// Known returns the known bug a failure belongs to.
func Known(err error) (KnownBug, bool) {
	for _, b := range KnownBugs {
		if errors.Is(err, b.Err) {
			return b, true
		}
	}
	return KnownBug{}, false
}
