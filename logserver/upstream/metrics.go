package upstream

import "github.com/prometheus/client_golang/prometheus"

// metrics are the outbox's, labelled log="v1"|"v2". The gauges are counted
// from the database (so every replica reports the shared outbox).
type metrics struct {
	pending     *prometheus.GaugeVec
	failed      *prometheus.GaugeVec
	oldest      *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	forwarded   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	full        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	l := []string{"log"}
	m := &metrics{
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_upstream_pending_entries",
			Help: "Entries waiting for the upstream log (transparency_pending)."}, l),
		failed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_upstream_failed_entries",
			Help: "Entries the upstream refused (or whose answer did not verify), kept for the operator."}, l),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_upstream_oldest_pending_age_seconds",
			Help: "Age of the oldest entry waiting for the upstream; 0 when none waits."}, l),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_upstream_last_success_timestamp_seconds",
			Help: "When this process last had an entry taken by the upstream (Unix seconds)."}, l),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_upstream_forwarded_total",
			Help: "Entries the upstream took (201, or 409 for one it already had), verified."}, l),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_upstream_attempt_failures_total",
			Help: "Failed upstream submissions by reason: unavailable (network, 5xx), rate_limited (429), refused (other 4xx), unverified (the answer did not verify)."},
			[]string{"log", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_upstream_dropped_total",
			Help: "Outbox rows dropped because their entry never reached the local log within the grace."}, l),
		full: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_upstream_outbox_full_total",
			Help: "Local writes answered 503 because the outbox was full."}, l),
	}
	reg.MustRegister(m.pending, m.failed, m.oldest, m.lastSuccess, m.forwarded, m.failures, m.dropped, m.full)
	return m
}
