package wsrelay_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/peer"
	"github.com/amsync/amsync/wsrelay"
)

func TestRecordHooksSeeThePrincipal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secret := []byte("hook-secret")
	j := &wsrelay.JWT{Secret: secret}
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{InMemory: true, Isolation: wsrelay.IsolationNone, Server: wsrelay.Config{Authenticate: j.Authenticate}})
	require.NoError(t, err)
	ts := httptest.NewServer(r.Handler())
	defer func() { ts.Close(); r.Shutdown(context.Background()) }()
	seen := make(chan []string, 4)
	r.Records.Hook("todos", func(ctx context.Context, h *records.Hook) error {
		seen <- h.Principals
		return nil
	})
	require.NoError(t, r.Records.RunHooks(ctx, nil))

	tok, err := wsrelay.SignHS256(secret, map[string]any{"sub": "alice"})
	require.NoError(t, err)
	p, err := peer.Open(peer.Config{URL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/?token=" + tok})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Records().Collection("todos").Put(ctx, map[string]any{"title": "milk"})
	require.NoError(t, err)
	select {
	case who := <-seen:
		assert.Equal(t, []string{"alice"}, who)
	case <-ctx.Done():
		t.Fatal("the hook never ran")
	}
}
