package sqlsink

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	batches   *prometheus.CounterVec
	batchSize prometheus.Histogram
	latency   prometheus.Histogram
	lingered  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Sink) *metrics {
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "etcdsql_sink_batches_total",
			Help: "SQL transactions written by the sink, by result."}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "etcdsql_sink_batch_changes",
			Help: "Key changes per SQL transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "etcdsql_sink_batch_duration_seconds",
			Help: "Time to write one SQL transaction.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lingered: prometheus.NewCounter(prometheus.CounterOpts{Name: "etcdsql_sink_linger_seconds_total",
			Help: "Time sync batches were held back for entries proposed but not yet applied, so that they share a commit."}),
	}
	if reg != nil {
		reg.MustRegister(m.batches, m.batchSize, m.latency, m.lingered,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_sink_revision", Help: "The last revision stored in the database."},
				func() float64 { return float64(s.SunkRevision()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_sink_healthy", Help: "Whether the database takes writes (1) or not (0)."},
				func() float64 {
					if s.Healthy() == nil {
						return 1
					}
					return 0
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_sink_permanent_failure",
				Help: "Whether the database refuses an entry's data, which retries cannot change (1), or not (0)."},
				func() float64 {
					if s.Refused() != nil {
						return 1
					}
					return 0
				}),
		)
	}
	return m
}

func (m *metrics) observeBatch(changes int, d time.Duration, err error) {
	if err != nil {
		m.batches.WithLabelValues("error").Inc()
		return
	}
	m.batches.WithLabelValues("ok").Inc()
	m.batchSize.Observe(float64(changes))
	m.latency.Observe(d.Seconds())
}
