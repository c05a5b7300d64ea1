// Package natstest runs an embedded NATS server with JetStream for tests of
// clustered relays: one process, loopback only, its store in a temporary
// directory.
package natstest
