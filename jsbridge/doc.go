// Package jsbridge serves the browser bridge: the ES module /jsbridge.js
// (records in IndexedDB, synced through the relay; built from jsbridge/src
// by jsbridge/build.mjs) and the automerge core it loads, /automerge.wasm.
// Both are embedded in the Go binary, so serving them needs no Node at run
// time. docs/jsbridge.md describes the JavaScript API.
package jsbridge
