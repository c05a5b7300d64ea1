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
	if f.Lose+f.Duplicate+f.Reorder == 0 {
		return frameOK
	}
	r := f.w.rng.Float64()
	switch {
	case r < f.Lose:
		return frameLose
	case r < f.Lose+f.Duplicate:
		return frameDuplicate
	case r < f.Lose+f.Duplicate+f.Reorder:
		return frameReorder
	}
	return frameOK
}

func (f *Faults) disk(*Node) DiskAction {
	if f.CrashBeforeWrite+f.CrashAfterWrite+f.WriteError == 0 {
		return DiskWrite
	}
	r := f.w.rng.Float64()
	switch {
	case r < f.CrashBeforeWrite:
		return DiskCrashBefore
	case r < f.CrashBeforeWrite+f.CrashAfterWrite:
		return DiskCrashAfter
	case r < f.CrashBeforeWrite+f.CrashAfterWrite+f.WriteError:
		return DiskError
	}
	return DiskWrite
}
