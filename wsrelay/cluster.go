package wsrelay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amsync/amsync/engine/cluster"
)

// Ready reports whether the relay serves clients: always on its own; in a
// cluster once it has caught up with the stream.
func (r *Relay) Ready() bool { return r.Cluster == nil || r.Cluster.Ready() }

// WaitReady returns once Ready, or with ctx's error.
func (r *Relay) WaitReady(ctx context.Context) error {
	if r.Cluster == nil {
		return nil
	}
	return r.Cluster.WaitReady(ctx)
}

func (r *Relay) closeCluster() {
	if r.Cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.Cluster.Close(ctx)
}

func registerCluster(reg *prometheus.Registry, c *cluster.Cluster) {
	counter := func(name, help string, f func(cluster.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "amsync", Subsystem: "cluster", Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) })
	}
	reg.MustRegister(
		counter("published_total", "Changes published to JetStream and acknowledged (PubAck).", func(s cluster.Stats) int64 { return s.Published }),
		counter("publish_errors_total", "Publishes JetStream did not acknowledge (the changes were not acknowledged to clients).", func(s cluster.Stats) int64 { return s.PublishErrors }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "amsync", Subsystem: "cluster", Name: "publish_seconds_total",
			Help: "Time spent waiting for PubAcks."},
			func() float64 { return c.Stats().PublishTime.Seconds() }),
		counter("applied_total", "Stream messages applied here.", func(s cluster.Stats) int64 { return s.Applied }),
		counter("rejected_total", "Stream messages skipped as invalid.", func(s cluster.Stats) int64 { return s.Rejected }),
		counter("retries_total", "Stream messages applied again after a failed write.", func(s cluster.Stats) int64 { return s.Retries }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "amsync", Subsystem: "cluster", Name: "position",
			Help: "Stream sequence up to which every message is applied here."},
			func() float64 { return float64(c.Stats().Position) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "amsync", Subsystem: "cluster", Name: "ready",
			Help: "1 once the relay has caught up with the stream and accepts clients."},
			func() float64 {
				if c.Ready() {
					return 1
				}
				return 0
			}),
	)
}
