package main

import (
	"context"
	"time"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/records"
)

// todoHook gives a new todo its server-generated fields: "no", the next
// number of the "todos" sequence, and "createdAt" (milliseconds since the
// epoch). It is idempotent: a todo that has a number keeps it.
func todoHook(rs *records.Store, now func() time.Time) records.HookFunc {
	return func(ctx context.Context, h *records.Hook) error {
		if _, ok := h.Record.Fields["no"]; ok {
			return nil
		}
		n, err := rs.Next(ctx, "todos")
		if err != nil {
			return err
		}
		at := now().UnixMilli()
		return h.Update(ctx, func(tx *crdt.Tx) error {
			cur, err := tx.Get([]any{"no"})
			if err != nil || cur != nil {
				return err // numbered meanwhile: the number n stays unused
			}
			if err := tx.Set([]any{"no"}, n); err != nil {
				return err
			}
			return tx.Set([]any{"createdAt"}, at)
		})
	}
}
