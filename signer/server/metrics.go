package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the service's Prometheus metrics, in their own registry.
type metrics struct {
	reg *prometheus.Registry

	signLatency     *prometheus.HistogramVec // key, tenant, endpoint: the signing operation only
	reqLatency      *prometheus.HistogramVec // endpoint, status: the whole request, audit included
	requests        *prometheus.CounterVec   // endpoint, tenant, code
	signatures      *prometheus.CounterVec   // key, version
	poolWait        prometheus.Histogram
	pkcs11Errors    *prometheus.CounterVec // code
	rejections      *prometheus.CounterVec // tenant, reason (auth, quota, policy, input)
	unauthenticated *prometheus.CounterVec // endpoint, code
	inFlight        prometheus.Gauge
	auditBatch      prometheus.Histogram
	auditCommit     prometheus.Histogram
	auditErrors     prometheus.Counter
	keyActive       *prometheus.GaugeVec // key, version
	ready           prometheus.Gauge
	lastChkptSign   prometheus.Gauge
}

var latencyBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 2.5}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		signLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signer_sign_duration_seconds", Help: "Time spent signing one request (all its signatures), by key, tenant and endpoint.",
			Buckets: latencyBuckets}, []string{"key", "tenant", "endpoint"}),
		reqLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signer_request_duration_seconds", Help: "Whole request time including the audit commit.",
			Buckets: latencyBuckets}, []string{"endpoint", "status"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signer_requests_total", Help: "Requests by endpoint, tenant and result code (\"ok\" when signed)."},
			[]string{"endpoint", "tenant", "code"}),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signer_signatures_total", Help: "Signatures returned, by key and version."}, []string{"key", "version"}),
		poolWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signer_pkcs11_pool_wait_seconds", Help: "Time a signature waited for a PKCS#11 session.",
			Buckets: append([]float64{1e-6, 10e-6}, latencyBuckets...)}),
		pkcs11Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signer_pkcs11_errors_total", Help: "Failed signatures by PKCS#11 return code."}, []string{"code"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signer_rejections_total", Help: "Refused requests by tenant and reason (the error code)."},
			[]string{"tenant", "reason"}),
		unauthenticated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signer_unauthenticated_total", Help: "Requests refused before authentication (not audited), by endpoint and code (unauthenticated: 401, unauthenticated_rate_limited: 429)."},
			[]string{"endpoint", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signer_requests_in_flight", Help: "Signing requests in progress."}),
		auditBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signer_audit_batch_rows", Help: "Rows per audit INSERT (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		auditCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signer_audit_commit_seconds", Help: "Time of one audit INSERT.", Buckets: latencyBuckets}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signer_audit_errors_total", Help: "Failed audit INSERTs (their requests were answered 503)."}),
		keyActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signer_key_version_active", Help: "1 when the key version is inside its validity window."},
			[]string{"key", "version"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signer_ready", Help: "1 when the last readiness check passed."}),
		lastChkptSign: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signer_last_checkpoint_signature_timestamp_seconds", Help: "Unix time of the last checkpoint signed."}),
	}
	m.reg.MustRegister(m.signLatency, m.reqLatency, m.requests, m.signatures, m.poolWait, m.pkcs11Errors,
		m.rejections, m.unauthenticated, m.inFlight, m.auditBatch, m.auditCommit, m.auditErrors, m.keyActive, m.ready, m.lastChkptSign,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
