package rpc

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	watchStreams      prometheus.Gauge
	watchers          prometheus.Gauge
	compactedWatchers prometheus.Counter
	eventsSent        prometheus.Counter
	handled           *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	// passwordWaits counts authentications waiting for a bcrypt slot.
	passwordWaits prometheus.Gauge
	// snapshots counts Maintenance.Snapshot calls by result;
	// snapshotSeconds times the ones sent whole; snapshotBytes counts
	// the database bytes sent.
	snapshots       *prometheus.CounterVec
	snapshotSeconds prometheus.Histogram
	snapshotBytes   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		watchStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcd_debugging_mvcc_watch_stream_total", Help: "Open watch streams."}),
		watchers:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcd_debugging_mvcc_watcher_total", Help: "Open watchers."}),
		compactedWatchers: prometheus.NewCounter(prometheus.CounterOpts{Name: "etcdsql_watchers_compacted_total",
			Help: "Watchers cancelled because compaction passed their position."}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "etcdsql_watch_events_sent_total", Help: "Events sent to watchers."}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_handled_total", Help: "Unary RPCs completed, by method and code."},
			[]string{"grpc_method", "grpc_code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "etcdsql_grpc_duration_seconds", Help: "Unary RPC latency.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"grpc_method"}),
		passwordWaits: prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcdsql_auth_password_checks_waiting",
			Help: "Authentications waiting for one of the member's bcrypt slots (one per core)."}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "etcdsql_snapshots_total",
			Help: "Maintenance.Snapshot calls, by result (sent, canceled by the client, failed)."}, []string{"result"}),
		snapshotSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "etcdsql_snapshot_duration_seconds",
			Help: "Time to build and send a snapshot.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		snapshotBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "etcdsql_snapshot_sent_bytes_total",
			Help: "Backend file bytes sent by Maintenance.Snapshot."}),
	}
	if reg != nil {
		reg.MustRegister(m.watchStreams, m.watchers, m.compactedWatchers, m.eventsSent, m.handled, m.latency, m.passwordWaits,
			m.snapshots, m.snapshotSeconds, m.snapshotBytes)
	}
	return m
}

func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.handled.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}
