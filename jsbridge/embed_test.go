package jsbridge_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/jsbridge"
	"github.com/amsync/amsync/wsrelay"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestServesTheBuiltFiles(t *testing.T) {
	h := jsbridge.Mux()
	for _, tc := range []struct {
		path, file, ctype string
		prefix            []byte
	}{
		{jsbridge.ScriptPath, "dist/jsbridge.js", "text/javascript; charset=utf-8", []byte("// @amsync/jsbridge")},
		{jsbridge.WasmPath, "dist/automerge.wasm", "application/wasm", []byte("\x00asm")},
	} {
		t.Run(tc.path, func(t *testing.T) {
			want, err := os.ReadFile(tc.file)
			require.NoError(t, err)
			resp := get(t, h, http.MethodGet, tc.path, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, body), "served bytes differ from %s", tc.file)
			assert.True(t, bytes.HasPrefix(body, tc.prefix))
			assert.Equal(t, tc.ctype, resp.Header.Get("Content-Type"))
			assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
			assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
			etag := resp.Header.Get("ETag")
			require.NotEmpty(t, etag)

			again := get(t, h, http.MethodGet, tc.path, map[string]string{"If-None-Match": etag})
			assert.Equal(t, http.StatusNotModified, again.StatusCode)
			head := get(t, h, http.MethodHead, tc.path, nil)
			assert.Equal(t, http.StatusOK, head.StatusCode)
			assert.Equal(t, fmt.Sprint(len(want)), head.Header.Get("Content-Length"))
		})
	}
}

func TestBundleLoadsTheWasmFromNextToItself(t *testing.T) {
	js, err := os.ReadFile("dist/jsbridge.js")
	require.NoError(t, err)
	assert.Contains(t, string(js), `new URL("automerge.wasm",import.meta.url)`)
	assert.Contains(t, string(js), "openStore")
	assert.Less(t, len(js), 400<<10, "the bundle must not inline the wasm")
}

func TestHandlerAnswers404ToOtherPaths(t *testing.T) {
	for _, p := range []string{"/", "/jsbridge.css", "/dist/", "/.."} {
		assert.Equal(t, http.StatusNotFound, get(t, jsbridge.Handler(), http.MethodGet, p, nil).StatusCode, p)
	}
	// The routes of Register are GET only.
	assert.Equal(t, http.StatusMethodNotAllowed, get(t, jsbridge.Mux(), http.MethodPost, jsbridge.ScriptPath, nil).StatusCode)
}

func TestRelayServesTheBridgeBesideItsOwnRoutes(t *testing.T) {
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{InMemory: true, Isolation: wsrelay.IsolationNone})
	require.NoError(t, err)
	defer r.Shutdown(context.Background())
	h := r.HandlerWith(jsbridge.Mux())
	assert.Equal(t, http.StatusOK, get(t, h, http.MethodGet, jsbridge.ScriptPath, nil).StatusCode)
	assert.Equal(t, http.StatusOK, get(t, h, http.MethodGet, jsbridge.WasmPath, nil).StatusCode)
	assert.Equal(t, http.StatusOK, get(t, h, http.MethodGet, "/healthz", nil).StatusCode)
	banner, err := io.ReadAll(get(t, h, http.MethodGet, "/", nil).Body)
	require.NoError(t, err)
	assert.Equal(t, "amsync relay is running\n", string(banner))
}

// An application server mounts the bridge on its own mux; pages then
// import it with `import { openStore } from "/jsbridge.js"`.
func ExampleRegister() {
	mux := http.NewServeMux()
	jsbridge.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, p := range []string{jsbridge.ScriptPath, jsbridge.WasmPath} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(p, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Output:
	// /jsbridge.js 200 text/javascript; charset=utf-8
	// /automerge.wasm 200 application/wasm
}
