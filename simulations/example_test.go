package simulations_test

import (
	"context"
	"fmt"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/simulations"
)

func ExampleRun() {
	res := simulations.Run(simulations.Options{Seed: 42})
	fmt.Println(res.Err == nil, res.Converged, res.Lost)
	// Output: true true 0
}

func ExampleWorld() {
	w, err := simulations.NewWorld(simulations.WorldConfig{Seed: 1, Relays: 1, Clients: 2})
	if err != nil {
		panic(err)
	}
	w.Connect("c1", "r1")
	w.Connect("c2", "r1")
	var id string
	err = w.Do("c1", func(ctx context.Context, h *simulations.Handle) (err error) {
		id, err = h.Docs.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"hello"}, "world") })
		return err
	})
	if err != nil {
		panic(err)
	}
	w.Ask("c2", id)
	if _, err := w.RunUntilQuiet(10_000); err != nil {
		panic(err)
	}
	states, err := w.CheckConverged([]string{id})
	if err != nil {
		panic(err)
	}
	fmt.Println(states[id].JSON)
	// Output: {"hello":"world"}
}
