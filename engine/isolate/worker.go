package isolate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
)

// EnvWorker is set in a worker process's environment. A binary that
// imports this package and is started with it set runs as a worker
// (from this package's init) instead of running its main.
const EnvWorker = "AMSYNC_CORE_WORKER"

// EnvWorkerCPUProfile, when set in the host's environment to a directory,
// makes every worker write a CPU profile of its life to
// DIR/worker-PID.pprof (written when the host stops it cleanly). It is for
// profiling the isolated core, which -debug-addr (the host process only)
// cannot see.
const EnvWorkerCPUProfile = "AMSYNC_WORKER_CPUPROFILE"

func init() {
	if os.Getenv(EnvWorker) == "1" {
		stop := startProfile(os.Getenv(EnvWorkerCPUProfile))
		code := serve(os.Stdin, os.Stdout)
		stop()
		os.Exit(code)
	}
}

// startProfile starts a CPU profile into dir when dir is set, and returns
// the function that ends it.
func startProfile(dir string) func() {
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.pprof", os.Getpid())))
	if err != nil {
		fmt.Fprintf(os.Stderr, "isolate worker: cpu profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "isolate worker: cpu profile: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// serve is the worker's loop: one request in, one response out, until the
// host closes stdin. The automerge core may abort the process at any
// point; the host then sees EOF and knows which request did it.
func serve(in io.Reader, out io.Writer) int {
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriterSize(out, 64<<10)
	docs := map[string]*engine.Replica{}
	var buf []byte
	for {
		body, err := readFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintf(os.Stderr, "isolate worker: %v\n", err)
			return 3
		}
		req, err := decodeRequest(body)
		if err != nil {
			fmt.Fprintf(os.Stderr, "isolate worker: %v\n", err)
			return 3
		}
		resp := handle(docs, &req)
		buf = appendResponse(buf[:0], &resp)
		if err := writeFrame(w, buf); err != nil {
			fmt.Fprintf(os.Stderr, "isolate worker: %v\n", err)
			return 3
		}
	}
}

func handle(docs map[string]*engine.Replica, req *request) response {
	switch req.Op {
	case opLoad:
		rep, err := engine.LoadReplica(req.Doc, crdt.ActorID(req.Actor), req.Chunks)
		if err != nil {
			return response{Err: err.Error()}
		}
		docs[req.Doc] = rep
		return response{}
	case opDrop:
		delete(docs, req.Doc)
		return response{}
	}
	rep := docs[req.Doc]
	if rep == nil {
		return response{Err: "isolate: document not loaded in this worker"}
	}
	switch req.Op {
	case opStep:
		o, err := rep.Step(req.In)
		if err != nil {
			return response{Err: err.Error()}
		}
		return response{Out: toWire(o)}
	case opSyncStates:
		return response{States: rep.SyncStates()}
	case opSave:
		return response{Data: rep.Doc().Save()}
	}
	return response{Err: fmt.Sprintf("isolate: unknown op %d", req.Op)}
}

func toWire(o engine.ReplicaOutput) *output {
	w := &output{
		Saves: o.Saves, Messages: o.Messages,
		HeadsChanged: o.HeadsChanged, Empty: o.Empty, SavedBytes: o.SavedBytes,
		Published: o.Published,
	}
	for _, e := range o.RemoteErrors {
		s := ""
		if e != nil {
			s = e.Error()
		}
		w.RemoteErrors = append(w.RemoteErrors, s)
	}
	for _, r := range o.Rejected {
		w.Rejected = append(w.Rejected, rejected{Peer: r.Peer, Err: r.Err.Error()})
	}
	for _, e := range o.ChangeErrors {
		s := ""
		if e != nil {
			s = e.Error()
		}
		w.ChangeErrors = append(w.ChangeErrors, s)
	}
	w.Heads = hashes(o.Heads)
	if len(o.TheirHeads) > 0 {
		w.TheirHeads = make(map[engine.PeerKey][][32]byte, len(o.TheirHeads))
		for k, hs := range o.TheirHeads {
			w.TheirHeads[k] = hashes(hs)
		}
	}
	return w
}

func fromWire(w *output) engine.ReplicaOutput {
	o := engine.ReplicaOutput{
		Saves: w.Saves, Messages: w.Messages,
		HeadsChanged: w.HeadsChanged, Empty: w.Empty, SavedBytes: w.SavedBytes,
		Published: w.Published,
	}
	for _, s := range w.RemoteErrors {
		var err error
		if s != "" {
			err = fmt.Errorf("%w: %s", crdt.ErrLoad, s)
		}
		o.RemoteErrors = append(o.RemoteErrors, err)
	}
	for _, r := range w.Rejected {
		msg := strings.TrimPrefix(r.Err, engine.ErrRejected.Error()+": ")
		o.Rejected = append(o.Rejected, engine.Rejected{Peer: r.Peer, Err: fmt.Errorf("%w: %s", engine.ErrRejected, msg)})
	}
	for _, s := range w.ChangeErrors {
		var err error
		if s != "" {
			err = fmt.Errorf("%w: %s", crdt.ErrChange, s)
		}
		o.ChangeErrors = append(o.ChangeErrors, err)
	}
	o.Heads = heads(w.Heads)
	if len(w.TheirHeads) > 0 {
		o.TheirHeads = make(map[engine.PeerKey]crdt.Heads, len(w.TheirHeads))
		for k, hs := range w.TheirHeads {
			o.TheirHeads[k] = heads(hs)
		}
	}
	return o
}

func hashes(hs crdt.Heads) [][32]byte {
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

func heads(hs [][32]byte) crdt.Heads {
	out := make(crdt.Heads, len(hs))
	for i, h := range hs {
		out[i] = crdt.Hash(h)
	}
	return out
}
