package amcheck_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/amsync/amsync/crdt/amcheck"
	"github.com/automerge/automerge-go"
)

// A relay checks every sync message before it reaches the automerge core.
func ExampleParseSyncMessage() {
	// An empty v1 message: no heads, need, have or changes.
	m, err := amcheck.ParseSyncMessage([]byte{0x42, 0, 0, 0, 0}, amcheck.Limits{})
	fmt.Println(m.Version == amcheck.SyncV1, len(m.Changes), err)

	// A 44-byte message whose bloom filter makes the 0.5.0 core divide by
	// zero.
	crasher, err := os.ReadFile("testdata/min-bloom-div0.bin")
	if err != nil {
		panic(err)
	}
	_, err = amcheck.ParseSyncMessage(crasher, amcheck.Limits{})
	fmt.Println(errors.Is(err, amcheck.ErrMalformed))
	fmt.Println(err)
	// Output:
	// true 0 <nil>
	// true
	// amcheck: malformed input: bloom filter with 1 entries and 0 bits per entry (division by zero in the core) (offset 38)
}

// Limits bound the work a document may cost the core; unset fields keep
// their defaults.
func ExampleLimits() {
	lim := amcheck.Limits{MaxOps: 1000}
	full := amcheck.DefaultLimits()
	fmt.Println(lim.MaxOps, full.MaxOps, full.MaxMessageBytes>>20)
	// Output:
	// 1000 10000000 64
}

// A Tracker mirrors the document the core holds, for the checks that need
// its state. Here two changes arrive in reverse order: the core queues the
// first until its dependency arrives, and so does the tracker.
func ExampleTracker() {
	d := automerge.New()
	if err := d.SetActorID("0123456789abcdef0123456789abcdef"); err != nil {
		panic(err)
	}
	for i := 0; i < 2; i++ {
		if err := d.RootMap().Set("n", int64(i)); err != nil {
			panic(err)
		}
		if _, err := d.Commit(""); err != nil {
			panic(err)
		}
	}
	chs, err := d.Changes()
	if err != nil {
		panic(err)
	}
	tr := amcheck.NewTracker()
	for i := len(chs) - 1; i >= 0; i-- {
		c, err := amcheck.ParseChange(chs[i].Save(), amcheck.Limits{})
		if err != nil {
			panic(err)
		}
		err = tr.Admit([]*amcheck.Change{c})
		fmt.Println(c.Seq, err, tr.Len(), tr.Pending())
	}
	// Output:
	// 2 <nil> 0 1
	// 1 <nil> 2 0
}
