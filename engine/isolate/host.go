package isolate

import (
	"bufio"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("isolate: invalid config")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("isolate: closed")

// Config configures a Host.
type Config struct {
	// Workers is the number of worker processes; documents are sharded
	// over them by id. Default GOMAXPROCS, at least 2 (a worker runs one
	// call at a time on one thread; more workers than cores add a Go
	// runtime's memory each and no throughput).
	Workers int
	// Command starts a worker. Default: this executable, re-executed with
	// EnvWorker=1 (the package's init turns it into a worker).
	Command []string
	// CallTimeout bounds one call into a worker: a worker still busy after
	// it is killed, and the call fails as a crash (so a document that takes
	// too long to load or sync is treated like one that aborts the core).
	// Default 30 s.
	CallTimeout time.Duration
	// Logger receives worker crashes and the worker's stderr. Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Workers == 0 {
		c.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if c.Workers < 1 {
		return fmt.Errorf("%w: Workers %d < 1", ErrConfig, c.Workers)
	}
	if len(c.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("%w: cannot find this executable to re-exec: %v", ErrConfig, err)
		}
		c.Command = []string{exe}
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.CallTimeout < 0 {
		return fmt.Errorf("%w: CallTimeout %v < 0", ErrConfig, c.CallTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Host is an engine.Core that runs every replica in a supervised worker
// process, so that an input which aborts the automerge core (a Rust panic
// with panic=abort) kills only a worker: the host, its connections and its
// store live on. A dead worker is restarted on the next call; the replicas
// it held are reported lost and reload from the store.
type Host struct {
	cfg     Config
	seed    maphash.Seed
	workers []*worker

	crashes  atomic.Int64
	restarts atomic.Int64
	calls    atomic.Int64
}

var _ engine.Core = (*Host)(nil)

// New validates cfg and returns a Host. Workers start on first use.
func New(cfg Config) (*Host, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range cfg.Workers {
		h.workers = append(h.workers, &worker{h: h, idx: i})
	}
	return h, nil
}

// Stats counts worker crashes, restarts and calls.
type Stats struct{ Crashes, Restarts, Calls int64 }

// Stats returns the host's counters.
func (h *Host) Stats() Stats {
	return Stats{Crashes: h.crashes.Load(), Restarts: h.restarts.Load(), Calls: h.calls.Load()}
}

// Close stops every worker.
func (h *Host) Close() error {
	for _, w := range h.workers {
		w.mu.Lock()
		w.closed = true
		w.stop()
		w.stopWatchdog()
		w.mu.Unlock()
	}
	return nil
}

// Load implements engine.Core.
func (h *Host) Load(id string, actor crdt.ActorID, chunks []store.Chunk) (engine.CoreReplica, error) {
	w := h.workers[maphash.String(h.seed, id)%uint64(len(h.workers))]
	gen, resp, err := w.call(-1, &request{Op: opLoad, Doc: id, Actor: string(actor), Chunks: chunks})
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, fmt.Errorf("%w: %s", crdt.ErrLoad, resp.Err)
	}
	return &replica{w: w, gen: gen, id: id, actor: actor}, nil
}

// worker is one worker process. Calls are serial: exactly one request is
// in flight, so when the process dies the request that killed it is known.
type worker struct {
	h   *Host
	idx int

	mu     sync.Mutex
	gen    int64 // incremented at every start
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	in     *bufio.Writer
	out    *bufio.Reader
	exited chan struct{}
	tail   *tailBuffer
	closed bool
	buf    []byte // request encoding buffer, reused under mu

	// The watchdog bounds calls with one long-lived timer per worker
	// instead of a timer per call (creating one took the runtime's timer
	// lock on every call: 7 % of the relay's CPU in the benchmark set).
	// A call records its deadline; the timer wakes at the earliest
	// deadline it may have to enforce, kills the process when the call it
	// finds has passed its deadline, and otherwise sleeps again.
	wmu      sync.Mutex
	watchdog *time.Timer
	seq      int64 // the call in flight, 0 when none
	deadline time.Time
	proc     *os.Process
	killed   int64 // the call the watchdog killed
}

// arm records the start of a call and returns its sequence number.
func (w *worker) arm() int64 {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.seq++
	if w.seq <= 0 {
		w.seq = 1
	}
	w.deadline = time.Now().Add(w.h.cfg.CallTimeout)
	w.proc = w.cmd.Process
	if w.watchdog == nil {
		w.watchdog = time.AfterFunc(w.h.cfg.CallTimeout, w.watch)
	}
	return w.seq
}

// disarm records the end of call seq and reports whether the watchdog
// killed the worker during it.
func (w *worker) disarm(seq int64) bool {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.proc = nil
	return w.killed == seq
}

// watch is the watchdog timer's function.
func (w *worker) watch() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.watchdog == nil {
		return // stopped
	}
	next := w.h.cfg.CallTimeout
	if w.proc != nil {
		if left := time.Until(w.deadline); left > 0 {
			next = left
		} else {
			w.killed = w.seq
			w.proc.Kill()
		}
	}
	w.watchdog.Reset(next)
}

// stopWatchdog ends the watchdog (Close).
func (w *worker) stopWatchdog() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.watchdog != nil {
		w.watchdog.Stop()
		w.watchdog = nil
	}
}

func (w *worker) start() error {
	cfg := w.h.cfg
	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	// GOTRACEBACK=none: when the core aborts, the Rust panic message is
	// what matters, not the Go runtime's dump of every goroutine.
	// GOMAXPROCS=1: a worker serves one call at a time, and one P spares
	// it the scheduler's cross-thread hand-offs on every request
	// (measured: about a quarter of the CPU of an isolated step).
	cmd.Env = append(os.Environ(), EnvWorker+"=1", "GOTRACEBACK=none", "GOMAXPROCS=1")
	// Our own pipes (not cmd.StdinPipe/StdoutPipe, so that Wait does not
	// close them under a reader), and blocking ones (not os.Pipe, whose
	// ends Go registers with its network poller): a call writes its
	// request and then sleeps in read(2) until the worker's answer wakes
	// it. Through the poller the same read is an EAGAIN, a park, an
	// epoll wake-up and a second read; on this kind of VM that was about a
	// third of a call's CPU. The call's time limit is a timer that kills
	// the worker, which ends a blocked read or write.
	childIn, stdin, err := blockingPipe()
	if err != nil {
		return err
	}
	stdout, childOut, err := blockingPipe()
	if err != nil {
		childIn.Close()
		stdin.Close()
		return err
	}
	cmd.Stdin, cmd.Stdout = childIn, childOut
	w.tail = &tailBuffer{log: cfg.Logger, worker: w.idx}
	cmd.Stderr = w.tail
	err = cmd.Start()
	childIn.Close()
	childOut.Close()
	if err != nil {
		stdin.Close()
		stdout.Close()
		return fmt.Errorf("isolate: start worker: %w", err)
	}
	w.gen++
	if w.gen > 1 {
		w.h.restarts.Add(1)
	}
	w.cmd, w.stdin, w.stdout = cmd, stdin, stdout
	w.in = bufio.NewWriterSize(stdin, 64<<10)
	w.out = bufio.NewReaderSize(stdout, 64<<10)
	w.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(cmd, w.exited)
	return nil
}

// stop ends the process and waits for it; the next call starts a new one.
func (w *worker) stop() {
	if w.cmd == nil {
		return
	}
	defer w.stdout.Close()
	w.stdin.Close()
	select {
	case <-w.exited:
	case <-time.After(time.Second):
		w.cmd.Process.Kill()
		<-w.exited
	}
	w.cmd = nil
}

// call sends one request and waits for its response. gen, when not -1, is
// the generation the caller's replica lives in: if the worker restarted
// since, the replica is gone (ErrReplicaLost). It returns the generation
// that served the call.
func (w *worker) call(gen int64, req *request) (int64, response, error) {
	w.h.calls.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, response{}, ErrClosed
	}
	if w.cmd == nil {
		if gen != -1 {
			return 0, response{}, engine.ErrReplicaLost
		}
		if err := w.start(); err != nil {
			return 0, response{}, err
		}
	}
	if gen != -1 && gen != w.gen {
		return 0, response{}, engine.ErrReplicaLost
	}
	var resp response
	seq := w.arm()
	w.buf = appendRequest(w.buf[:0], req)
	err := writeFrame(w.in, w.buf)
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not pin a large upload's buffer
	}
	var body []byte
	if err == nil {
		body, err = readFrame(w.out)
	}
	timedOut := w.disarm(seq)
	if timedOut && err == nil {
		// The limit passed and the worker was killed, even if the answer
		// made it: the call counts as timed out.
		err = os.ErrDeadlineExceeded
	}
	if err == nil {
		if resp, err = decodeResponse(body); err != nil {
			// The worker answered, but not in our format: not a crash of
			// the core. Restart it all the same; its state is unknown.
			err = fmt.Errorf("%w: %v", errFrame, err)
		} else {
			return w.gen, resp, nil
		}
	}
	// The worker died (or was killed) during this call.
	w.cmd.Process.Kill()
	<-w.exited
	w.stdin.Close()
	w.stdout.Close()
	state := w.cmd.ProcessState
	w.cmd = nil
	w.h.crashes.Add(1)
	reason := fmt.Sprintf("worker %d exited (%v)", w.idx, state)
	if timedOut {
		reason = fmt.Sprintf("worker %d killed after %v", w.idx, w.h.cfg.CallTimeout)
	}
	if t := w.tail.last(); t != "" {
		reason += ": " + t
	}
	w.h.cfg.Logger.Warn("automerge worker crashed", "worker", w.idx, "doc", req.Doc, "op", req.Op, "reason", reason)
	return 0, response{}, fmt.Errorf("%w: %s", engine.ErrCoreCrashed, reason)
}

// replica is a document loaded in one worker generation.
type replica struct {
	w     *worker
	gen   int64
	id    string
	actor crdt.ActorID
}

var _ engine.CoreReplica = (*replica)(nil)

func (r *replica) Step(in engine.ReplicaInput) (engine.ReplicaOutput, error) {
	if len(in.Changes) > 0 {
		raw, errs, err := r.localChanges(in.Changes)
		if err != nil {
			return engine.ReplicaOutput{}, err
		}
		in.Changes = nil
		in.RawChanges = append(raw, in.RawChanges...)
		out, err := r.step(in)
		// Changes whose function failed made no raw change: report their
		// errors in place.
		merged := make([]error, 0, len(errs))
		k := 0
		for _, e := range errs {
			if e != nil {
				merged = append(merged, e)
				continue
			}
			if k < len(out.ChangeErrors) {
				merged = append(merged, out.ChangeErrors[k])
			} else {
				merged = append(merged, nil)
			}
			k++
		}
		out.ChangeErrors = merged
		return out, err
	}
	return r.step(in)
}

func (r *replica) step(in engine.ReplicaInput) (engine.ReplicaOutput, error) {
	_, resp, err := r.w.call(r.gen, &request{Op: opStep, Doc: r.id, In: in})
	if err != nil {
		return engine.ReplicaOutput{}, err
	}
	if resp.Err != "" || resp.Out == nil {
		return engine.ReplicaOutput{}, fmt.Errorf("isolate: step: %s", resp.Err)
	}
	return fromWire(resp.Out), nil
}

// localChanges runs change functions (Go closures, which cannot cross the
// process boundary) on a copy of the document rebuilt here from what the
// worker saved, and returns the raw changes they made. The copy is built
// from bytes the worker's core itself produced.
func (r *replica) localChanges(chs []engine.LocalChange) ([][]byte, []error, error) {
	doc, err := r.snapshot()
	if err != nil {
		return nil, nil, err
	}
	var raws [][]byte
	errs := make([]error, len(chs))
	for i, c := range chs {
		before := doc.Heads()
		if _, err := doc.Change(c.At, c.Message, c.Fn); err != nil {
			errs[i] = err
			continue
		}
		raw, err := doc.ChangesSince(before)
		if err != nil {
			errs[i] = err
			continue
		}
		raws = append(raws, raw)
	}
	return raws, errs, nil
}

func (r *replica) snapshot() (*crdt.Doc, error) {
	_, resp, err := r.w.call(r.gen, &request{Op: opSave, Doc: r.id})
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, fmt.Errorf("isolate: save: %s", resp.Err)
	}
	return crdt.Load(resp.Data, r.actor)
}

func (r *replica) SyncStates() (map[engine.PeerKey][]byte, error) {
	_, resp, err := r.w.call(r.gen, &request{Op: opSyncStates, Doc: r.id})
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, fmt.Errorf("isolate: sync states: %s", resp.Err)
	}
	return resp.States, nil
}

func (r *replica) Read(fn func(doc *crdt.Doc) error) (crdt.Heads, error) {
	doc, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	return doc.Heads(), fn(doc)
}

func (r *replica) Close() {
	r.w.call(r.gen, &request{Op: opDrop, Doc: r.id})
}

// tailBuffer logs a worker's stderr line by line at debug level and keeps
// its first lines: a Rust panic message names the failing assertion.
type tailBuffer struct {
	log    *slog.Logger
	worker int
	mu     sync.Mutex
	buf    strings.Builder
	lines  []string
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	s := t.buf.String()
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		line := s[:i]
		s = s[i+1:]
		t.log.Debug("automerge worker stderr", "worker", t.worker, "line", line)
		// The first lines of a crash carry the Rust panic message.
		if len(t.lines) < 3 && strings.TrimSpace(line) != "" {
			t.lines = append(t.lines, line)
		}
	}
	t.buf.Reset()
	t.buf.WriteString(s)
	return len(p), nil
}

func (t *tailBuffer) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

// blockingPipe returns a pipe whose ends Go does not register with its
// network poller: reads and writes are plain blocking system calls.
func blockingPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("isolate: pipe: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}
