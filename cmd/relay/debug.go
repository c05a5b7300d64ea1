package main

import (
	"net/http"
	"net/http/pprof"
)

// debugMux serves Go's profiler for -debug-addr. It is built on its own
// mux, not http.DefaultServeMux, so the profiler is reachable only on the
// debug listener and never on the relay's public address.
func debugMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}
