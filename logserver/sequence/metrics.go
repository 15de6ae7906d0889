package sequence

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the write path's Prometheus metrics.
type Metrics struct {
	treeSize         prometheus.Gauge
	integrated       prometheus.Counter
	duplicates       prometheus.Counter
	errors           *prometheus.CounterVec
	stopped          *prometheus.GaugeVec
	overloaded       prometheus.Counter
	addLatency       prometheus.Histogram
	queueLatency     prometheus.Histogram
	integrateLatency prometheus.Histogram
	publishLatency   prometheus.Histogram
	batchSize        prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with r (if not nil).
func NewMetrics(r prometheus.Registerer) *Metrics {
	lat := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help,
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	}
	m := &Metrics{
		treeSize:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "logserver_tree_size", Help: "Size of the published tree head."}),
		integrated: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_entries_integrated_total", Help: "Entries integrated and published."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_entries_duplicate_total", Help: "Submissions refused as duplicates."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_write_path_errors_total",
			Help: "Write path failures by stage (queue, integrate, read, sign, store), transient and fatal."}, []string{"stage"}),
		stopped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_write_path_stopped",
			Help: "1 once publishing stopped for good at that stage (integrity, a head inconsistent with a published one, a lost lease): page. /readyz says why."}, []string{"stage"}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_entries_overloaded_total",
			Help: "Submissions refused at once because the writes in flight were at their bounds."}),
		addLatency:       lat("logserver_add_seconds", "Time from admission to published entry."),
		queueLatency:     lat("logserver_queue_seconds", "Time of one batched queue transaction."),
		integrateLatency: lat("logserver_integrate_seconds", "Time of one sequencing pass that integrated leaves."),
		publishLatency:   lat("logserver_publish_seconds", "Time to read, sign and store one integrated batch."),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "logserver_queue_batch_leaves",
			Help: "Leaves per queue transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
	}
	for _, s := range []string{"queue", "integrate", "read", "sign", "store"} {
		m.errors.WithLabelValues(s)
		m.stopped.WithLabelValues(s)
	}
	if r != nil {
		r.MustRegister(m.treeSize, m.integrated, m.duplicates, m.errors, m.stopped, m.overloaded, m.addLatency, m.queueLatency,
			m.integrateLatency, m.publishLatency, m.batchSize)
	}
	return m
}
