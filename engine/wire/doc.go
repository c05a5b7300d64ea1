// Package wire encodes and decodes the automerge-repo WebSocket protocol
// (version "1"): one CBOR map per binary frame, with the message types join,
// peer, error, leave, sync, request, doc-unavailable, ephemeral,
// remote-subscription-change and remote-heads-changed. It also parses and
// formats automerge-repo document ids (bs58check).
package wire
