package rekorv1

import "github.com/prometheus/client_golang/prometheus"

type metricsRegisterer = prometheus.Registerer

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "logserver_http_requests_total",
			Help: "Rekor API requests by operation and HTTP status."}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "logserver_http_request_seconds",
			Help:    "Rekor API request latency by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"operation"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.latency)
	}
	return m
}
