package simulations_test

import (
	"flag"
	"io"
	"os"
)

var (
	flagSeeds = flag.Int("sim.seeds", 0, "seeds for TestSeeds (default 100, 40 with -short)")
	flagStart = flag.Uint64("sim.start", 1, "first seed for TestSeeds")
	flagTrace = flag.Bool("sim.trace", false, "print the full trace of scenario worlds")
)

func traceOut() io.Writer {
	if *flagTrace {
		return os.Stdout
	}
	return nil
}
