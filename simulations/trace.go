package simulations

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"time"
)

// tracer records every step of a World. Each line is hashed, so that two
// runs of a seed can be compared byte for byte; lines are written out only
// when a writer is set (replay with -v), and the last few are kept for the
// failure report.
type tracer struct {
	w     *World
	h     hash.Hash
	out   io.Writer
	tail  []string
	next  int
	lines int
}

const traceTail = 40

func newTracer(w *World, out io.Writer) *tracer {
	return &tracer{w: w, h: sha256.New(), out: out, tail: make([]string, 0, traceTail)}
}

func (t *tracer) logf(format string, args ...any) {
	line := fmt.Sprintf("%7d %9s "+format, append([]any{t.w.steps, t.w.elapsed()}, args...)...)
	t.h.Write([]byte(line))
	t.h.Write([]byte{'\n'})
	t.lines++
	if t.out != nil {
		fmt.Fprintln(t.out, line)
	}
	if len(t.tail) < traceTail {
		t.tail = append(t.tail, line)
	} else {
		t.tail[t.next] = line
		t.next = (t.next + 1) % traceTail
	}
}

// lastLines returns the most recent trace lines, oldest first.
func (t *tracer) lastLines() []string {
	if len(t.tail) < traceTail {
		return append([]string(nil), t.tail...)
	}
	return append(append([]string(nil), t.tail[t.next:]...), t.tail[:t.next]...)
}

func (t *tracer) sum() [32]byte {
	var s [32]byte
	copy(s[:], t.h.Sum(nil))
	return s
}

// elapsed formats the virtual time since the start of the run.
func (w *World) elapsed() string {
	d := w.now.Sub(epoch)
	return fmt.Sprintf("%.3fs", d.Seconds())
}

// traceHandler turns an engine's slog records into trace lines, without
// wall-clock time, so that the engine's own logs are part of the trace.
type traceHandler struct {
	w     *World
	node  string
	attrs []slog.Attr
}

func (h *traceHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.w.tr.logf("%s log %s %q%s", h.node, r.Level, r.Message, b.String())
	return nil
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{w: h.w, node: h.node, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *traceHandler) WithGroup(string) slog.Handler { return h }

// epoch is the virtual time at which every run starts.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
