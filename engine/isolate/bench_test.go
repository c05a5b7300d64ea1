package isolate_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/isolate"
	"github.com/amsync/amsync/engine/store"
)

// The raw cost of crash isolation: one Replica step through a worker
// process (CBOR request over the worker's stdin, the step, CBOR response
// over its stdout) against the same step in process. The test binary is
// re-executed as the worker: this package's init serves when EnvWorker is
// set. The end-to-end cost under load is in engine's BenchmarkPush and
// BenchmarkFanOut (core=isolated).

const benchDoc = "25gQkE3hoP2bJikoQWmNSo2vm1CY"

// newCore returns the in-process core, or a Host with one worker that is
// stopped when the benchmark function returns.
func newCore(b *testing.B, kind string) engine.Core {
	if kind == "inprocess" {
		return engine.InProcess{}
	}
	h, err := isolate.New(isolate.Config{Workers: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// saveChunks turns a step's puts into the chunks a store would return.
func saveChunks(out engine.ReplicaOutput) []store.Chunk {
	var chunks []store.Chunk
	for _, op := range out.Saves {
		if !op.Delete {
			chunks = append(chunks, store.Chunk{Key: op.Key, Data: op.Data})
		}
	}
	return chunks
}

// oneKBMessage returns a sync message carrying one change of about 1 KB
// (a string of 1,000 seeded random letters), as a peer sends it to a
// replica that has announced it has nothing.
func oneKBMessage(b *testing.B) []byte {
	rng := rand.New(rand.NewPCG(5, 5))
	text := make([]byte, 1000)
	for i := range text {
		text[i] = byte('a' + rng.IntN(26))
	}
	d, err := crdt.New("c1")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.Change(time.Unix(1, 0), "", func(tx *crdt.Tx) error { return tx.Set([]any{"text"}, string(text)) }); err != nil {
		b.Fatal(err)
	}
	client := crdt.NewSyncState(d)
	empty, err := crdt.New("c2")
	if err != nil {
		b.Fatal(err)
	}
	server := crdt.NewSyncState(empty)
	for range 10 {
		msg, ok := client.Generate()
		if !ok {
			break
		}
		if _, err := server.Receive(msg); err != nil {
			b.Fatal(err)
		}
		if empty.Heads().Equal(d.Heads()) {
			return msg
		}
		if reply, ok := server.Generate(); ok {
			if _, err := client.Receive(reply); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Fatal("no message carried the change")
	return nil
}

// BenchmarkStep measures CoreReplica.Step with one attached peer:
//
//   - empty: a step with no input, the floor of a call (in process it
//     still reads the heads twice).
//   - sync1KB: a step receiving a 1 KB sync message whose change the
//     replica already has (after the first iteration), then generating the
//     reply: the automerge work of a typical message, plus its bytes across
//     the pipe both ways.
//
// µs/op is the wall time of one call and cpu-µs/op the CPU time of the
// test process and the worker together; the isolated minus the in-process
// figure is the per-call price of isolation.
func BenchmarkStep(b *testing.B) {
	msg := oneKBMessage(b)
	for _, kind := range []string{"inprocess", "isolated"} {
		for _, load := range []string{"empty", "sync1KB"} {
			b.Run(fmt.Sprintf("core=%s/%s", kind, load), func(b *testing.B) {
				core := newCore(b, kind)
				r, err := core.Load(benchDoc, "aa", nil)
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				attach := engine.ReplicaInput{Attach: []engine.PeerInit{{Peer: "p1"}}}
				if _, err := r.Step(attach); err != nil {
					b.Fatal(err)
				}
				in := engine.ReplicaInput{}
				if load == "sync1KB" {
					in.Receive = []engine.PeerData{{Peer: "p1", Data: msg}}
					b.SetBytes(int64(len(msg)))
				}
				// The first step applies the change and saves it.
				if _, err := r.Step(in); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				cpu := cpuTime()
				b.ResetTimer()
				for range b.N {
					out, err := r.Step(in)
					if err != nil {
						b.Fatal(err)
					}
					if len(out.Rejected) > 0 {
						b.Fatal(out.Rejected[0].Err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
				b.ReportMetric(float64(cpuTime()-cpu)/1e3/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// BenchmarkLoad measures Core.Load of a stored ~1 KB document (its
// chunks cross the pipe and the document is loaded in the worker), as the
// engine does for every document it activates.
func BenchmarkLoad(b *testing.B) {
	msg := oneKBMessage(b)
	for _, kind := range []string{"inprocess", "isolated"} {
		b.Run("core="+kind, func(b *testing.B) {
			core := newCore(b, kind)
			// Build the stored chunks through a replica, as the engine does.
			r, err := engine.LoadReplica(benchDoc, "aa", nil)
			if err != nil {
				b.Fatal(err)
			}
			out, err := r.Step(engine.ReplicaInput{
				Attach:  []engine.PeerInit{{Peer: "p1"}},
				Receive: []engine.PeerData{{Peer: "p1", Data: msg}},
			})
			if err != nil || len(out.Saves) == 0 {
				b.Fatalf("no saves (%v)", err)
			}
			chunks := saveChunks(out)
			size := 0
			for _, c := range chunks {
				size += len(c.Data)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			cpu := cpuTime()
			b.ResetTimer()
			var rep engine.CoreReplica
			for range b.N {
				// A worker keeps one replica per document id: each load
				// replaces the last.
				if rep, err = core.Load(benchDoc, "aa", chunks); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
			b.ReportMetric(float64(cpuTime()-cpu)/1e3/float64(b.N), "cpu-µs/op")
			rep.Close()
		})
	}
}

// cpuTime is the user and system CPU time of this process and of its live
// child processes (the worker). Children are read from /proc/<pid>/stat,
// in clock ticks of 10 ms (USER_HZ is 100 on Linux): good to a few percent
// over a benchmark of a second; 0 where there is no /proc.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	t := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	var ticks int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields are counted after the command name's closing parenthesis:
		// f[1] is ppid, f[11] utime, f[12] stime.
		i := bytes.LastIndexByte(raw, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(raw[i+1:]))
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return t + time.Duration(ticks)*10*time.Millisecond
}
