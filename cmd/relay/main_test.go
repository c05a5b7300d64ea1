package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/wire"
)

func TestServeFlagsAndEnv(t *testing.T) {
	env := map[string]string{"PORT": "4040", "DATA_DIR": "/tmp/x"}
	var o serveOptions
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	serveFlags(fs, &o, func(k string) string { return env[k] })
	require.NoError(t, fs.Parse(nil))
	assert.Equal(t, ":4040", o.addr)
	assert.Equal(t, "/tmp/x", o.data)

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	serveFlags(fs, &o, func(k string) string { return env[k] })
	require.NoError(t, fs.Parse([]string{"-addr", "127.0.0.1:1", "-data", "d"}))
	assert.Equal(t, "127.0.0.1:1", o.addr)
	assert.Equal(t, "d", o.data)

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	serveFlags(fs, &o, func(string) string { return "" })
	require.NoError(t, fs.Parse(nil))
	assert.Equal(t, ":3030", o.addr)
	assert.Equal(t, "./data", o.data)
}

func TestBadArgumentsExit2(t *testing.T) {
	var stderr bytes.Buffer
	assert.Equal(t, 2, run(context.Background(), []string{"-no-such-flag"}, io.Discard, &stderr))
	assert.Equal(t, 2, run(context.Background(), []string{"-log-level", "loud", "-data", t.TempDir()}, io.Discard, &stderr))
	assert.Equal(t, 2, run(context.Background(), []string{"extra-arg"}, io.Discard, &stderr))
	assert.Equal(t, 0, run(context.Background(), []string{"-h"}, io.Discard, &stderr))
}

func TestRelayBinaryEndpointsAndGracefulStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	bin := buildRelay(t)
	data := t.TempDir()
	p := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", data)
	base := "http://" + p.addr

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/")
	assert.Equal(t, 200, code)
	assert.Equal(t, 1, strings.Count(body, "\n"), "one line of text")
	code, _ = get("/healthz")
	assert.Equal(t, 200, code)

	// A WebSocket session: join and a request for an unknown document.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/any/path", nil)
	require.NoError(t, err)
	join, _ := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "t", SupportedProtocolVersions: []string{"1"}})
	require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, join))
	_, b, err := ws.ReadMessage()
	require.NoError(t, err)
	peer, err := wire.Decode(b)
	require.NoError(t, err)
	storageID := peer.PeerMetadata.StorageID
	require.NotEmpty(t, storageID)

	code, body = get("/metrics")
	assert.Equal(t, 200, code)
	for _, name := range []string{"amsync_connections 1", "amsync_messages_received_total", "amsync_store_apply_seconds", "amsync_documents_loaded", "amsync_connection_errors_total", "process_resident_memory_bytes"} {
		assert.True(t, strings.Contains(body, name), "metrics lack %q", name)
	}

	start := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		require.NoError(t, err, "exit status 0 on SIGTERM\n%s", p.stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("relay did not exit within 10 s of SIGTERM\n%s", p.stderr)
	}
	t.Logf("graceful stop took %v", time.Since(start))
	// The client saw a close, not a hang.
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = ws.ReadMessage()
	require.Error(t, err)

	// Restart on the same directory: same storage id.
	p2 := startRelay(t, bin, "-addr", "127.0.0.1:0", "-data", data)
	ws2, _, err := websocket.DefaultDialer.Dial("ws://"+p2.addr, nil)
	require.NoError(t, err)
	require.NoError(t, ws2.WriteMessage(websocket.BinaryMessage, join))
	_, b, err = ws2.ReadMessage()
	require.NoError(t, err)
	peer2, err := wire.Decode(b)
	require.NoError(t, err)
	assert.Equal(t, storageID, peer2.PeerMetadata.StorageID, "storage id is stable across restarts")
	p2.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p2.exited:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no exit on SIGINT")
	}
}
