package witnessing

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one add-checkpoint request (label "outcome" of
// logserver_witness_requests_total).
const (
	OutcomeOK           = "ok"           // 200 with a valid cosignature
	OutcomeConflict     = "conflict"     // 409: resent from the size the witness reported
	OutcomeRejected     = "rejected"     // 400, 403, 404 and other 4xx: configuration mismatch
	OutcomeInconsistent = "inconsistent" // 422: the witness says our tree is inconsistent (page!)
	OutcomeRateLimited  = "rate_limited" // 429
	OutcomeUnavailable  = "unavailable"  // network error, timeout, 5xx
	OutcomeBadResponse  = "bad_response" // 200 without a valid cosignature, malformed 409
	OutcomeAhead        = "ahead"        // 409 with a size larger than the log's (fork? rolled-back database?)
	OutcomeError        = "error"        // our side: proof, request building
)

var allOutcomes = []string{OutcomeOK, OutcomeConflict, OutcomeRejected, OutcomeInconsistent,
	OutcomeRateLimited, OutcomeUnavailable, OutcomeBadResponse, OutcomeAhead, OutcomeError}

type metrics struct {
	requests      *prometheus.CounterVec
	cosignedSize  *prometheus.GaugeVec
	up            *prometheus.GaugeVec
	ahead         *prometheus.GaugeVec
	quorumMet     prometheus.Gauge
	publishedSize prometheus.Gauge
	headSize      prometheus.Gauge
	publishErrors *prometheus.CounterVec
	age           prometheus.GaugeFunc

	publishedAt atomic.Int64 // Unix nanoseconds of the latest publication (or of start)
}

func newMetrics(r prometheus.Registerer, witnesses []string) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_witness_requests_total",
			Help: "add-checkpoint requests to each witness by outcome (ok, conflict, rejected, inconsistent, rate_limited, unavailable, bad_response, ahead, error)."},
			[]string{"witness", "outcome"}),
		cosignedSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_witness_cosigned_tree_size",
			Help: "Largest tree size each witness cosigned for this log (policy witness name)."}, []string{"witness"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_witness_up",
			Help: "1 if the last add-checkpoint exchange with the witness produced a valid cosignature, else 0."}, []string{"witness"}),
		ahead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_witness_ahead",
			Help: "1 while the witness reports a tree larger than the log's (a fork, a rolled-back log database, or another log with our key): page."}, []string{"witness"}),
		quorumMet: prometheus.NewGauge(prometheus.GaugeOpts{Name: "logserver_witness_quorum_met",
			Help: "1 if the checkpoint fed in the last round met the tlog-policy quorum, else 0."}),
		publishedSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "logserver_witness_published_tree_size",
			Help: "Tree size of the C2SP checkpoint served at /checkpoint."}),
		headSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "logserver_witness_head_tree_size",
			Help: "Newest tree size handed to witnessing; minus published_tree_size it is the witnessing lag."}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_witness_publish_errors_total",
			Help: "Failures to sign (stage=sign) or store (stage=store) a C2SP checkpoint."}, []string{"stage"}),
	}
	m.publishedAt.Store(time.Now().UnixNano())
	m.age = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logserver_witness_checkpoint_age_seconds",
		Help: "Seconds since the C2SP checkpoint served at /checkpoint was published (since process start if none yet)."},
		func() float64 { return time.Since(time.Unix(0, m.publishedAt.Load())).Seconds() })
	for _, w := range witnesses {
		for _, o := range allOutcomes {
			m.requests.WithLabelValues(w, o)
		}
		m.cosignedSize.WithLabelValues(w)
		m.up.WithLabelValues(w)
		m.ahead.WithLabelValues(w)
	}
	m.publishErrors.WithLabelValues("sign")
	m.publishErrors.WithLabelValues("store")
	if r != nil {
		r.MustRegister(m.requests, m.cosignedSize, m.up, m.ahead, m.quorumMet, m.publishedSize, m.headSize, m.publishErrors, m.age)
	}
	return m
}
