package jsbridge

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed dist/*
var dist embed.FS

// Paths the bridge is served at. The bundle loads the wasm from next to
// itself, so both must stay in one directory.
const (
	ScriptPath = "/jsbridge.js"
	WasmPath   = "/automerge.wasm"
)

// file is one embedded file with what its responses need.
type file struct {
	body  []byte
	ctype string
	etag  string
}

var files = load()

func load() map[string]file {
	types := map[string]string{
		path.Base(ScriptPath): "text/javascript; charset=utf-8",
		path.Base(WasmPath):   "application/wasm",
	}
	out := make(map[string]file, len(types))
	for name, ctype := range types {
		b, err := fs.ReadFile(dist, "dist/"+name)
		if err != nil {
			// The build embeds dist/*: a missing file is a broken checkout.
			panic("jsbridge: embedded " + name + " is missing: " + err.Error())
		}
		sum := sha256.Sum256(b)
		out[name] = file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	return out
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
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
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
