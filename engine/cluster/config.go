package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/amsync/amsync/engine/store"
)

// Sentinel errors.
var (
	// ErrConfig wraps every configuration error.
	ErrConfig = errors.New("cluster: invalid config")
	// ErrConnect wraps a failure to reach NATS or to set up the stream.
	ErrConnect = errors.New("cluster: cannot reach JetStream")
	// ErrPublish wraps a publish that JetStream did not acknowledge.
	ErrPublish = errors.New("cluster: publish not acknowledged")
	// ErrTooLarge: one automerge change is larger than a NATS message may
	// be (the server's max_payload).
	ErrTooLarge = errors.New("cluster: change larger than the NATS max payload")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("cluster: closed")
)

// Defaults.
const (
	DefaultStream        = "AMSYNC"
	DefaultSubjectPrefix = "amsync.doc."
)

// Config configures a Cluster. Zero fields take their defaults in validate.
type Config struct {
	// URL is the NATS server URL, or a comma-separated list of them
	// (nats://host:4222, tls://host:4222). Required.
	URL string
	// CredsFile is a NATS credentials file (user JWT and nkey seed).
	CredsFile string
	// TLSCA is a PEM file of the CA certificates that sign the NATS
	// servers' certificates; TLSCert and TLSKey are this relay's client
	// certificate and key, for servers that verify clients.
	TLSCA, TLSCert, TLSKey string
	// Stream is the JetStream stream name. Default "AMSYNC".
	Stream string
	// SubjectPrefix starts every document's subject; the stream holds
	// SubjectPrefix + ">". Default "amsync.doc.". It must end with ".".
	SubjectPrefix string
	// Replicas is the stream's replica count when this relay creates the
	// stream (an existing stream is left as it is). Default 1; use 3 on a
	// NATS cluster of three or more servers.
	Replicas int
	// MaxAge, when set, creates the stream with that retention: messages
	// older than it are dropped. See docs/operations.md before using it:
	// a relay that starts empty can only rebuild what the stream still
	// holds.
	MaxAge time.Duration
	// Name names this relay's NATS connection (shown by the NATS
	// monitoring endpoints). Default "amsync-relay".
	Name string
	// Store is the relay's own store, where the feed position is kept.
	// Required.
	Store store.Store
	// Logger; default slog.Default().
	Logger *slog.Logger
	// PublishTimeout bounds the wait for one PubAck. Default 10 s.
	PublishTimeout time.Duration
	// ConnectTimeout bounds connecting and setting up the stream in Open.
	// Default 10 s.
	ConnectTimeout time.Duration
	// MaxInFlight bounds the feed messages being applied at once. Default
	// 1024.
	MaxInFlight int
	// FlushInterval is how often the feed position is written to Store.
	// Default 1 s. After a crash at most this much of the feed is applied
	// again (harmless: applying a change twice is a no-op).
	FlushInterval time.Duration
	// SkipSeed turns off the seed: by default a relay that first joins (no
	// feed position in Store) publishes every document it already holds.
	SkipSeed bool
}

func (c *Config) validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return fmt.Errorf("%w: URL is required", ErrConfig)
	}
	if c.Store == nil {
		return fmt.Errorf("%w: Store is required", ErrConfig)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("%w: TLSCert and TLSKey go together", ErrConfig)
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if strings.ContainsAny(c.Stream, " \t.*>/\\") {
		return fmt.Errorf("%w: stream name %q", ErrConfig, c.Stream)
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if !strings.HasSuffix(c.SubjectPrefix, ".") || strings.ContainsAny(c.SubjectPrefix, " \t*>") || strings.HasPrefix(c.SubjectPrefix, ".") {
		return fmt.Errorf("%w: subject prefix %q must be dot-separated tokens ending with a dot", ErrConfig, c.SubjectPrefix)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("%w: replicas %d: want 1 to 5", ErrConfig, c.Replicas)
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("%w: MaxAge %v < 0", ErrConfig, c.MaxAge)
	}
	if c.Name == "" {
		c.Name = "amsync-relay"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.PublishTimeout < 0 || c.ConnectTimeout < 0 || c.MaxInFlight < 1 || c.FlushInterval < 0 {
		return fmt.Errorf("%w: negative timeout, interval or MaxInFlight", ErrConfig)
	}
	return nil
}
