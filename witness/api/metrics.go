package api

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the witness's Prometheus metrics.
type Metrics struct {
	gatherer      prometheus.Gatherer
	requests      *prometheus.CounterVec
	cosignSeconds prometheus.Histogram
	treeSize      *prometheus.GaugeVec
}

// NewMetrics registers the witness metrics on reg:
//
//	witness_add_checkpoint_requests_total{outcome}  add-checkpoint requests by outcome
//	witness_cosign_duration_seconds                  read-to-durable latency of accepted requests
//	witness_log_tree_size{origin}                    size of the latest cosigned checkpoint
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		gatherer: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "witness_add_checkpoint_requests_total",
			Help: "add-checkpoint requests by outcome.",
		}, []string{"outcome"}),
		cosignSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "witness_cosign_duration_seconds",
			Help:    "Time from request to durable cosignature, for accepted add-checkpoint requests.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		treeSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "witness_log_tree_size",
			Help: "Size of the latest checkpoint cosigned for each log.",
		}, []string{"origin"}),
	}
	reg.MustRegister(m.requests, m.cosignSeconds, m.treeSize)
	for _, o := range []string{OutcomeOK, OutcomeMalformed, OutcomeTooLarge, OutcomeUnknownLog, OutcomeForbidden,
		OutcomeConflict, OutcomeInconsistent, OutcomeRateLimited, OutcomeUnavailable, OutcomeError} {
		m.requests.WithLabelValues(o)
	}
	return m
}

// SetTreeSize records the latest cosigned size of a log (used at start-up).
func (m *Metrics) SetTreeSize(origin string, size uint64) {
	m.treeSize.WithLabelValues(origin).Set(float64(size))
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}
