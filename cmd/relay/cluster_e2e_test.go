package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine/cluster/natstest"
	"github.com/amsync/amsync/peer"
)

// startClusterProc starts the relay binary joined to the NATS server at
// natsURL and waits until it answers /readyz (caught up).
func startClusterProc(t *testing.T, bin, natsURL string) *proc {
	t.Helper()
	p := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-nats", natsURL)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond, "relay not ready:\n%s", p.stderr)
	return p
}

// Relay processes share documents through NATS; one is SIGKILLed while a
// client writes through it: the client fails over to the other relay,
// and every change it heard acknowledged is on that relay and on a relay
// started afterwards with an empty data directory.
func TestClusterKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills relay binaries")
	}
	bin := buildRelay(t)
	ns := natstest.Start(t)
	r1 := startClusterProc(t, bin, ns.ClientURL())
	r2 := startClusterProc(t, bin, ns.ClientURL())
	quiet := slog.New(slog.DiscardHandler)
	open := func(urls ...string) *peer.Peer {
		p, err := peer.Open(peer.Config{URL: urls[0], URLs: urls[1:], Logger: quiet, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	writer := open("ws://"+r1.addr, "ws://"+r2.addr)
	doc, err := writer.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"k0"}, int64(0)) })
	require.NoError(t, err)

	var acked atomic.Int64 // k0..k(acked-1) acknowledged
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			_, err := writer.Change(ctx, doc, func(tx *crdt.Tx) error { return tx.Set([]any{fmt.Sprintf("k%d", i)}, i) })
			if err == nil {
				err = writer.WaitSynced(ctx)
			}
			if err != nil {
				done <- err
				return
			}
			acked.Store(i + 1)
		}
	}()
	require.Eventually(t, func() bool { return acked.Load() >= 20 }, 30*time.Second, time.Millisecond)
	r1.kill9(t)
	atKill := acked.Load()
	require.Eventually(t, func() bool { return acked.Load() >= atKill+20 }, 30*time.Second, time.Millisecond,
		"the writer did not fail over:\n%s", r2.stderr)
	close(stop)
	require.NoError(t, <-done)
	final := acked.Load()

	r3 := startClusterProc(t, bin, ns.ClientURL())
	for _, r := range []*proc{r2, r3} {
		reader := open("ws://" + r.addr)
		require.NoError(t, reader.Find(ctx, doc))
		require.Eventually(t, func() bool {
			var n int
			_ = reader.Read(ctx, doc, func(d *crdt.Doc) error {
				v, err := d.Value()
				n = len(v)
				return err
			})
			return n >= int(final)
		}, 20*time.Second, 5*time.Millisecond)
		var v map[string]any
		require.NoError(t, reader.Read(ctx, doc, func(d *crdt.Doc) error {
			var err error
			v, err = d.Value()
			return err
		}))
		for i := range final {
			assert.Equal(t, i, v[fmt.Sprintf("k%d", i)], "relay %s: acknowledged k%d", r.addr, i)
		}
	}
	t.Logf("kill -9 after %d acknowledged changes; %d acknowledged in all, every one on the surviving and on a new empty relay", atKill, final)
}
