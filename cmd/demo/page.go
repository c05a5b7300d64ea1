package main

import (
	_ "embed"
	"net/http"

	"github.com/amsync/amsync/jsbridge"
)

// The demo page (a shared todo list on /jsbridge.js) and its service
// worker, which caches the page, the bridge and the wasm so that the page
// opens while the server is down.
var (
	//go:embed index.html
	indexHTML []byte
	//go:embed sw.js
	serviceWorker []byte
)

// appRoutes are the demo application's own HTTP routes: the page at /, its
// service worker, and the browser bridge (/jsbridge.js, /automerge.wasm).
func appRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	jsbridge.Register(mux)
	mux.HandleFunc("GET /{$}", static(indexHTML, "text/html; charset=utf-8"))
	mux.HandleFunc("GET /sw.js", static(serviceWorker, "text/javascript; charset=utf-8"))
	return mux
}

func static(body []byte, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(body)
	}
}
