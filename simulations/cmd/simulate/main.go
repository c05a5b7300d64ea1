package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/amsync/amsync/simulations"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seeds := fs.Int("seeds", 100, "number of seeds to run")
	start := fs.Uint64("start", 1, "first seed of the range")
	seed := fs.Uint64("seed", 0, "run this one seed (with -v: print its trace)")
	verbose := fs.Bool("v", false, "print every step of the run")
	parallel := fs.Int("parallel", max(1, runtime.NumCPU()/2), "seeds run at once")
	plot := fs.String("plot", "", "write an SVG of steps-to-converge against fault rate to this file, from -seeds seeds")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if *plot != "" {
		n := *seeds
		if !set["seeds"] {
			n = 300
		}
		return writePlot(*plot, *start, n, *parallel, stdout, stderr)
	}
	first, count := *start, *seeds
	if set["seed"] {
		first, count = *seed, 1
	}
	var trace io.Writer
	if *verbose {
		trace = stdout
	}
	sum := simulations.NewSummary()
	runRange(first, count, *parallel, trace, func(r simulations.Result) {
		sum.Add(r)
		if r.Err != nil {
			fmt.Fprintf(stdout, "FAIL seed=%d: %v\n", r.Seed, r.Err)
			b, known := simulations.Known(r.Err)
			if known {
				fmt.Fprintf(stdout, "  known engine bug: %s\n", b.Summary)
			}
			if !*verbose && !known {
				for _, l := range r.LastTrace {
					fmt.Fprintf(stdout, "    %s\n", l)
				}
			}
			fmt.Fprintf(stdout, "  replay: %s\n", simulations.ReplayCommand(r.Seed))
		} else if count == 1 {
			fmt.Fprintf(stdout, "seed=%d ok: %d steps, %d to converge, %d changes, %d acks, %d frames (budget %d), %.1f faults/min\n",
				r.Seed, r.Stats.Steps, r.StepsToConverge, r.Stats.Changes, r.Stats.Acks, r.Stats.Frames, r.FrameBudget, r.FaultRate)
		}
	})
	if count > 1 {
		fmt.Fprintln(stdout, sum.Details())
	}
	fmt.Fprintln(stdout, sum.Line())
	if sum.Failed > 0 {
		return 1
	}
	return 0
}

// runRange runs seeds first…first+count-1, parallel at a time, and calls
// report with each result in seed order, as soon as it and every earlier
// seed are done.
func runRange(first uint64, count, parallel int, trace io.Writer, report func(simulations.Result)) {
	if trace != nil {
		parallel = 1
	}
	type indexed struct {
		i int
		r simulations.Result
	}
	next := make(chan int)
	done := make(chan indexed)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				done <- indexed{i, simulations.Run(simulations.Options{Seed: first + uint64(i), Trace: trace})}
			}
		}()
	}
	go func() {
		for i := range count {
			next <- i
		}
		close(next)
		wg.Wait()
		close(done)
	}()
	pending := map[int]simulations.Result{}
	want := 0
	for d := range done {
		pending[d.i] = d.r
		for {
			r, ok := pending[want]
			if !ok {
				break
			}
			delete(pending, want)
			report(r)
			want++
		}
	}
}

func writePlot(path string, first uint64, count, parallel int, stdout, stderr io.Writer) int {
	var results []simulations.Result
	sum := simulations.NewSummary()
	runRange(first, count, parallel, nil, func(r simulations.Result) {
		results = append(results, r)
		sum.Add(r)
		if r.Err != nil {
			fmt.Fprintf(stdout, "FAIL seed=%d: %v\n  replay: %s\n", r.Seed, r.Err, simulations.ReplayCommand(r.Seed))
		}
	})
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := simulations.WriteConvergencePlot(f, results); err != nil {
		f.Close()
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	fmt.Fprintln(stdout, sum.Details())
	fmt.Fprintln(stdout, sum.Line())
	if sum.Failed > 0 {
		return 1
	}
	return 0
}
