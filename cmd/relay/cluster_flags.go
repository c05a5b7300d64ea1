package main

import (
	"flag"
	"time"

	"github.com/amsync/amsync/engine/cluster"
)

// clusterOptions are the serve flags that join a cluster of relays through
// NATS JetStream (package engine/cluster).
type clusterOptions struct {
	url      string
	creds    string
	tlsCA    string
	tlsCert  string
	tlsKey   string
	stream   string
	prefix   string
	replicas int
	maxAge   time.Duration
}

func clusterFlags(fs *flag.FlagSet, o *clusterOptions, getenv func(string) string) {
	fs.StringVar(&o.url, "nats", getenv("NATS_URL"), "join a cluster of relays through this NATS server (nats://host:4222; comma-separated for several; env NATS_URL). Every relay of the cluster serves every document; a change is acknowledged once JetStream stored it")
	fs.StringVar(&o.creds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed)")
	fs.StringVar(&o.tlsCA, "nats-tls-ca", "", "PEM file of the CA that signs the NATS servers' certificates")
	fs.StringVar(&o.tlsCert, "nats-tls-cert", "", "PEM client certificate for NATS servers that verify clients (needs -nats-tls-key)")
	fs.StringVar(&o.tlsKey, "nats-tls-key", "", "PEM private key for -nats-tls-cert")
	fs.StringVar(&o.stream, "nats-stream", cluster.DefaultStream, "JetStream stream holding the cluster's changes")
	fs.StringVar(&o.prefix, "nats-subject-prefix", cluster.DefaultSubjectPrefix, "subject prefix of the stream (one subject per document after it)")
	fs.IntVar(&o.replicas, "nats-replicas", 1, "stream replicas when this relay creates the stream (3 on a NATS cluster of 3 or more servers); an existing stream is left as it is")
	fs.DurationVar(&o.maxAge, "nats-max-age", 0, "when this relay creates the stream: drop messages older than this (0 keeps them; see docs/operations.md, Cluster, before setting it)")
}

// config is the cluster configuration, or nil without -nats.
func (o clusterOptions) config() *cluster.Config {
	if o.url == "" {
		return nil
	}
	return &cluster.Config{
		URL:           o.url,
		CredsFile:     o.creds,
		TLSCA:         o.tlsCA,
		TLSCert:       o.tlsCert,
		TLSKey:        o.tlsKey,
		Stream:        o.stream,
		SubjectPrefix: o.prefix,
		Replicas:      o.replicas,
		MaxAge:        o.maxAge,
	}
}
