package simulations

// Faults is the World's profile of per-frame and per-write faults. The
// probabilities are per frame sent on a client or relay connection, and
// per write batch (store Apply).
type Faults struct {
	// Lose: the frame is lost; the connection is cut shortly after, as a
	// TCP connection that loses data never delivers what follows.
	Lose float64
	// Duplicate: the frame is delivered twice, then the connection is cut.
	Duplicate float64
	// Reorder: the frame overtakes the one sent before it, then the
	// connection is cut.
	Reorder float64
	// CrashBeforeWrite: the process dies in Apply, before the batch is
	// written.
	CrashBeforeWrite float64
	// CrashAfterWrite: the process dies in Apply, after the batch is
	// written (the engine never learns that it is durable).
	CrashAfterWrite float64
	// WriteError: Apply fails and writes nothing.
	WriteError float64

	w *World
}

// SetFaults installs a fault profile (nil: a healthy network and disks).
func (w *World) SetFaults(f *Faults) {
	if f != nil {
		c := *f
		c.w = w
		f = &c
	}
	w.faults = f
}

type frameFault int

const (
	frameOK frameFault = iota
	frameLose
	frameDuplicate
	frameReorder
)

func (f *Faults) frame() frameFault {
	switch f.pick(f.Lose, f.Duplicate, f.Reorder) {
	case 0:
		return frameLose
	case 1:
		return frameDuplicate
	case 2:
		return frameReorder
	}
	return frameOK
}

func (f *Faults) disk(*Node) DiskAction {
	switch f.pick(f.CrashBeforeWrite, f.CrashAfterWrite, f.WriteError) {
	case 0:
		return DiskCrashBefore
	case 1:
		return DiskCrashAfter
	case 2:
		return DiskError
	}
	return DiskWrite
}

// pick draws which of the faults with probabilities ps happens, or -1 for
// none. It draws from the generator only when some fault may happen.
func (f *Faults) pick(ps ...float64) int {
	var sum float64
	for _, p := range ps {
		sum += p
	}
	if sum == 0 {
		return -1
	}
	r := f.w.rng.Float64()
	var acc float64
	for i, p := range ps {
		acc += p
		if r < acc {
			return i
		}
	}
	return -1
}
