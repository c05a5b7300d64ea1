package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/wsrelay"
)

func TestServesThePageTheBridgeAndTheRelayRoutes(t *testing.T) {
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{InMemory: true, Isolation: wsrelay.IsolationNone})
	require.NoError(t, err)
	defer r.Shutdown(context.Background())
	h := r.HandlerWith(appRoutes())
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `from "/jsbridge.js"`},
		{"/sw.js", "text/javascript; charset=utf-8", `"/jsbridge.js", "/automerge.wasm"`},
		{"/jsbridge.js", "text/javascript; charset=utf-8", "openStore"},
		{"/automerge.wasm", "application/wasm", "\x00asm"},
		{"/healthz", "text/plain; charset=utf-8", "ok"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		resp := rec.Result()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, tc.path)
		assert.Equal(t, tc.ctype, resp.Header.Get("Content-Type"), tc.path)
		assert.Contains(t, string(body), tc.contains, tc.path)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nothing-here", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}
