package jsbridge

import (
	"crypto/sha256"
	_ "embed" // the built files
	"encoding/hex"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// The built files, as strings: they stay in the binary's read-only data,
// untouched (and not in memory) until served. Every process of a binary
// that links this package, the relay's worker processes included, pays
// nothing for them at start-up.
var (
	//go:embed dist/jsbridge.js
	script string
	//go:embed dist/automerge.wasm
	wasm string
)

// Paths the bridge is served at. The bundle loads the wasm from next to
// itself, so both must stay in one directory.
const (
	ScriptPath = "/jsbridge.js"
	WasmPath   = "/automerge.wasm"
)

// file is one embedded file with what its responses need.
type file struct {
	body  string
	ctype string
	etag  func() string
}

func newFile(body, ctype string) file {
	return file{body: body, ctype: ctype, etag: sync.OnceValue(func() string {
		sum := sha256.Sum256([]byte(body))
		return `"` + hex.EncodeToString(sum[:12]) + `"`
	})}
}

var files = map[string]file{
	path.Base(ScriptPath): newFile(script, "text/javascript; charset=utf-8"),
	path.Base(WasmPath):   newFile(wasm, "application/wasm"),
}

// Handler serves the embedded files by the last element of the request
// path (jsbridge.js, automerge.wasm) and answers 404 to anything else. The
// responses carry an ETag and "Cache-Control: no-cache" (browsers
// revalidate, and get 304 until the binary changes), and allow any origin
// to load them.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[path.Base(r.URL.Path)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag())
		h.Set("Cache-Control", "no-cache")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(f.body))
	})
}

// Register adds GET ScriptPath and GET WasmPath to mux.
func Register(mux *http.ServeMux) {
	h := Handler()
	mux.Handle("GET "+ScriptPath, h)
	mux.Handle("GET "+WasmPath, h)
}

// Mux returns a new ServeMux with the routes of Register, for
// wsrelay.Relay.HandlerWith.
func Mux() *http.ServeMux {
	mux := http.NewServeMux()
	Register(mux)
	return mux
}
