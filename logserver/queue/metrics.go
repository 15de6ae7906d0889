package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tiers the depth gauge always shows (0 when empty), besides any other
// tier found in the table.
var knownTiers = []string{"graph", "edge"}

type metrics struct {
	success, retries, failed, enqueued, budgetWaits prometheus.Counter
	alreadyLogged                                   prometheus.Counter
	rejectedFull, rejectedInvalid                   prometheus.Counter
	latency                                         prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Store) (*metrics, error) {
	m := &metrics{
		success: prometheus.NewCounter(prometheus.CounterOpts{Name: "attestor_rekor_success_total",
			Help: "Queued entries logged by this replica's drainer (an entry found already logged counts once, when recorded)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "attestor_rekor_retry_total",
			Help: "Failed submissions of queued entries rescheduled with backoff."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_queue_failed_total",
			Help: "Queued entries marked failed (refused by the log, or attempts exhausted)."}),
		alreadyLogged: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_queue_already_logged_total",
			Help: "Queued entries the log already held (its 409: a replay after a crash, or the same entry written directly), recorded as logged."}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_queue_enqueued_total",
			Help: "Submissions accepted into the pending queue (202)."}),
		budgetWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_queue_budget_waits_total",
			Help: "Queued entries put back because their tenant's budget was spent (no attempt counted)."}),
		rejectedFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_queue_rejected_full_total",
			Help: "Submissions refused with 503 because the queue was full."}),
		rejectedInvalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "logserver_queue_rejected_invalid_total",
			Help: "Submissions to the queue refused as invalid (the write endpoint's 4xx)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rekor_inclusion_latency",
			Help:    "Seconds from enqueue to logged, for queued entries.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 18)}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.success, m.alreadyLogged, m.retries, m.failed, m.enqueued, m.budgetWaits,
		m.rejectedFull, m.rejectedInvalid, m.latency, &depth{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// depth is attestor_rekor_queue_depth{tier}: pending rows, read from the
// database at scrape time, so that every replica reports the same value.
type depth struct{ s *Store }

var depthDesc = prometheus.NewDesc("attestor_rekor_queue_depth",
	"Pending rows of the queue per tier (from the database: the same on every replica).", []string{"tier"}, nil)

func (d *depth) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc }

func (d *depth) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := d.s.Depth(ctx)
	if err != nil {
		// No sample rather than a failed scrape: the other metrics stay
		// visible while the database is away (the alert on the service's
		// health covers that).
		return
	}
	for _, t := range knownTiers {
		if _, ok := n[t]; !ok {
			n[t] = 0
		}
	}
	for t, v := range n {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(v), t)
	}
}
