package export

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the export job (daemon mode serves them at /metrics).
type Metrics struct {
	Registry    *prometheus.Registry
	lastSuccess prometheus.Gauge
	failures    *prometheus.CounterVec
	lag         prometheus.Gauge
	logSize     prometheus.Gauge
	mirrorSize  prometheus.Gauge
	tiles       prometheus.Counter
	last        time.Time
	seenLog     int64
	mirrored    int64
}

// seen records the size of the log's newest verified checkpoint.
func (m *Metrics) seen(size int64) {
	m.seenLog = size
	m.logSize.Set(float64(size))
}

// NewMetrics registers the export metrics in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_export_last_success_timestamp_seconds",
		Help: "Unix time of the last successful export."})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mirror_export_failures_total",
		Help: "Failed exports by reason: fetch, verify, inconsistent, other."}, []string{"reason"})
	m.lag = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_export_lag_entries",
		Help: "Entries in the log's last seen checkpoint that the newest snapshot lacks."})
	m.logSize = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_export_log_size",
		Help: "Tree size of the log's last verified checkpoint."})
	m.mirrorSize = prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_export_snapshot_size",
		Help: "Tree size of the newest snapshot."})
	m.tiles = prometheus.NewCounter(prometheus.CounterOpts{Name: "mirror_export_tiles_fetched_total",
		Help: "Tiles and entry bundles downloaded."})
	since := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mirror_export_seconds_since_success",
		Help: "Seconds since the last successful export (0 before the first)."}, func() float64 {
		if m.last.IsZero() {
			return 0
		}
		return time.Since(m.last).Seconds()
	})
	for _, r := range []string{"fetch", "verify", "inconsistent", "other"} {
		m.failures.WithLabelValues(r)
	}
	m.Registry.MustRegister(m.lastSuccess, m.failures, m.lag, m.logSize, m.mirrorSize, m.tiles, since)
	return m
}

func (m *Metrics) observe(now time.Time, res *Result, err error) {
	if err == nil {
		m.last = now
		m.lastSuccess.Set(float64(now.Unix()))
		m.mirrored = res.Snapshot.Size
		m.mirrorSize.Set(float64(res.Snapshot.Size))
		m.lag.Set(float64(max(m.seenLog-m.mirrored, 0)))
		return
	}
	m.lag.Set(float64(max(m.seenLog-m.mirrored, 0)))
	var inc *InconsistentError
	var v *VerifyError
	var f *FetchError
	switch {
	case errors.As(err, &inc):
		m.failures.WithLabelValues("inconsistent").Inc()
	case errors.As(err, &v):
		m.failures.WithLabelValues("verify").Inc()
	case errors.As(err, &f):
		m.failures.WithLabelValues("fetch").Inc()
	default:
		m.failures.WithLabelValues("other").Inc()
	}
}
