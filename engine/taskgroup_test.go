package engine

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTaskGroupAllowsAddWhileWaiting(t *testing.T) {
	var g taskGroup
	require.NoError(t, g.Wait(context.Background()), "nothing running")

	g.Add(1)
	waited := make(chan error, 1)
	go func() { waited <- g.Wait(context.Background()) }()
	// A task that starts while Close waits is legal (a WaitGroup would
	// be misused here).
	g.Add(1)
	g.Done()
	select {
	case <-waited:
		t.Fatal("Wait returned with a task still running")
	default:
	}
	g.Done()
	require.NoError(t, <-waited)

	ctx, cancel := context.WithCancel(context.Background())
	g.Add(1)
	cancel()
	assert.ErrorIs(t, g.Wait(ctx), context.Canceled)
	g.Done()
	require.NoError(t, g.Wait(context.Background()))
}
