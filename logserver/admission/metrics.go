package admission

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/budget"
)

// Submission statuses (label status of attestor_rekor_submissions_total).
// A submission counts once as admitted, rejected, queued or unavailable
// when its budget is decided, and an admitted one once more as logged,
// failed or uncertain when it is answered:
//
//	admitted     charged to the budget and handed to the log
//	rejected     over budget: 429
//	queued       over budget, queued on request (Prefer: respond-async): 202
//	unavailable  the budget store (database) failed, or the queue refused: 503
//	logged       admitted and logged: 201
//	failed       admitted, not logged (400, 409, 413, 503, …): refunded
//	uncertain    admitted, answered 504: may still be logged, not refunded
const (
	StatusAdmitted    = "admitted"
	StatusRejected    = "rejected"
	StatusQueued      = "queued"
	StatusUnavailable = "unavailable"
	StatusLogged      = "logged"
	StatusFailed      = "failed"
	StatusUncertain   = "uncertain"
)

// Metrics are the seed's submission metrics. They count only with budgets
// enabled (a submission's tier is decided only then).
type Metrics struct {
	submissions *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	remaining   *prometheus.GaugeVec
	utilization *prometheus.GaugeVec
	rejected    prometheus.Counter
}

// NewMetrics registers the metrics on reg:
//
//	attestor_rekor_submissions_total{tier,status}   counter (statuses above)
//	attestor_rekor_submission_latency_seconds{tier} histogram: admitted submissions, from arrival to answer
//	attestor_rekor_budget_remaining{tenant}         gauge: graph submissions left in the tenant's current hour
//	attestor_rekor_budget_utilization{tenant}       gauge 0..1: share of the tenant's hourly graph limit used
//	attestor_rekor_submissions_rejected             counter: submissions refused over budget (429)
//
// The budget gauges are set at each graph submission of the tenant (the
// last decision seen by this replica); unlimited tenants have none.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "attestor_rekor_submissions_total",
			Help: "Entry submissions by budget tier and status (admitted, rejected, queued, unavailable, logged, failed, uncertain)."}, []string{"tier", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "attestor_rekor_submission_latency_seconds",
			Help:    "Latency of admitted entry submissions, from arrival to answer, by tier.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"tier"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "attestor_rekor_budget_remaining",
			Help: "Graph submissions left in the tenant's current hourly window."}, []string{"tenant"}),
		utilization: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "attestor_rekor_budget_utilization",
			Help: "Share (0..1) of the tenant's hourly graph limit used in the current window."}, []string{"tenant"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "attestor_rekor_submissions_rejected",
			Help: "Entry submissions refused over budget (429)."}),
	}
	reg.MustRegister(m.submissions, m.latency, m.remaining, m.utilization, m.rejected)
	for _, tier := range []string{budget.TierGraph, budget.TierEdge} {
		for _, s := range []string{StatusAdmitted, StatusRejected, StatusQueued, StatusUnavailable, StatusLogged, StatusFailed, StatusUncertain} {
			m.submissions.WithLabelValues(tier, s)
		}
		m.latency.WithLabelValues(tier)
	}
	return m
}

// Count counts one submission of tier with status.
func (m *Metrics) Count(tier, status string) {
	m.submissions.WithLabelValues(tier, status).Inc()
	if status == StatusRejected {
		m.rejected.Inc()
	}
}

// Budget records tenant's graph budget: remaining of hourly left.
func (m *Metrics) Budget(tenant string, remaining, hourly int64) {
	if remaining == budget.Unlimited || hourly <= 0 {
		return
	}
	m.remaining.WithLabelValues(tenant).Set(float64(remaining))
	m.utilization.WithLabelValues(tenant).Set(float64(hourly-remaining) / float64(hourly))
}
