package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/signer/entitlement"
)

// stellaMetrics are the metrics of issue 18; alert rules on them are in
// signer/alerts.
type stellaMetrics struct {
	decisions   *prometheus.CounterVec // endpoint, tenant, decision, reason
	quotaHits   *prometheus.CounterVec // tenant, quota
	keyUsage    *prometheus.CounterVec // key, tenant
	entitlement *prometheus.CounterVec // tenant, result
	bypass      *prometheus.CounterVec // tenant
	storeUp     prometheus.Gauge
	release     *prometheus.CounterVec // verdict
	verifyCalls *prometheus.CounterVec // verdict
	approvals   prometheus.Counter
}

func newStellaMetrics(s *Server) *stellaMetrics {
	m := &stellaMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_decisions_total",
			Help: "Decisions by endpoint, tenant, decision (signed, refused, failed) and reason (the error code, ok when signed)."},
			[]string{"endpoint", "tenant", "decision", "reason"}),
		quotaHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_quota_hits_total",
			Help: "Requests refused by a quota: rate, concurrency, payload_size (tenant limits) or plan (entitlement plan)."},
			[]string{"tenant", "quota"}),
		keyUsage: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_key_usage_total",
			Help: "Signatures returned by key and tenant (key usage distribution)."}, []string{"key", "tenant"}),
		entitlement: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_entitlement_decisions_total",
			Help: "Entitlement checks by tenant and result: live, cached, bypass, denied, quota, unavailable."}, []string{"tenant", "result"}),
		bypass: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_entitlement_bypass_total",
			Help: "Requests signed under the emergency entitlement bypass."}, []string{"tenant"}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "signer_entitlement_store_up",
			Help: "1 when the last entitlement store query answered, 0 when it failed."}),
		release: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_release_verifications_total",
			Help: "Release verifications of producer scanner images at sign time by outcome: trusted, allow-listed, approved, untrusted, missing, error."},
			[]string{"verdict"}),
		verifyCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signer_verify_referrers_requests_total",
			Help: "GET verify/referrers answers by verdict."}, []string{"verdict"}),
		approvals: prometheus.NewCounter(prometheus.CounterOpts{Name: "signer_release_approvals_total",
			Help: "Manual approvals of scanner images recorded."}),
	}
	m.storeUp.Set(1)
	s.m.reg.MustRegister(m.decisions, m.quotaHits, m.keyUsage, m.entitlement, m.bypass, m.storeUp, m.release, m.verifyCalls, m.approvals,
		&bypassCollector{s}, &keyWindowCollector{s})
	return m
}

func (m *stellaMetrics) observeEntitlement(o entitlement.Outcome) {
	m.entitlement.WithLabelValues(o.Tenant, o.Result).Inc()
	if o.Result == entitlement.Bypassed {
		m.bypass.WithLabelValues(o.Tenant).Inc()
	}
	switch {
	case o.StoreErr != nil:
		m.storeUp.Set(0)
	case o.Result == entitlement.Live || o.Result == "denied" || o.Result == "quota":
		m.storeUp.Set(1)
	}
}

var (
	bypassDesc = prometheus.NewDesc("signer_entitlement_bypass_active",
		"1 while an emergency entitlement bypass is configured and not past its end.", nil, nil)
	notAfterDesc = prometheus.NewDesc("signer_key_version_not_after_timestamp_seconds",
		"End of a key version's validity window (Unix time); absent when unbounded.", []string{"key", "version"}, nil)
)

// bypassCollector reports whether the emergency bypass is on.
type bypassCollector struct{ s *Server }

func (c *bypassCollector) Describe(ch chan<- *prometheus.Desc) { ch <- bypassDesc }
func (c *bypassCollector) Collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if c.s.st != nil && c.s.st.ent != nil {
		if until, ok := c.s.st.ent.BypassConfigured(); ok && c.s.now().Before(until) {
			v = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(bypassDesc, prometheus.GaugeValue, v)
}

// keyWindowCollector publishes the end of every key version's window, for
// the key exhaustion alert.
type keyWindowCollector struct{ s *Server }

func (c *keyWindowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- notAfterDesc }
func (c *keyWindowCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.s.cfg.Keys {
		for _, v := range k.Versions {
			if v.NotAfter.IsZero() {
				continue
			}
			ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, float64(v.NotAfter.UnixNano())/float64(time.Second),
				k.Name, strconv.Itoa(v.Version))
		}
	}
}
