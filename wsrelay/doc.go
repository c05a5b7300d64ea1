// Package wsrelay serves the engine over WebSockets (gorilla/websocket):
// it upgrades requests on any path, runs one read pump and one write pump
// per connection with a bounded send queue, pings to drop dead peers,
// checks browser origins against an optional allow-list, and exposes
// Prometheus metrics. It holds no replication logic of its own.
package wsrelay
