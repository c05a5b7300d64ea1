// Command simulate runs the deterministic simulation of the engine over
// a range of seeds, or replays one seed with its step-by-step trace.
//
//	go run ./simulations/cmd/simulate -seeds 500 -start 1
//	go run ./simulations/cmd/simulate -seed 42 -v
//	go run ./simulations/cmd/simulate -plot docs/sim-convergence.svg
//
// A range ends with one summary line,
//
//	seeds=500 failed=0 converged=500 lost=0 max_steps_to_converge=…
//
// and the exit status is 1 when any seed failed. Each failure prints its
// seed and the command that replays it.
package main
