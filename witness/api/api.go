// Package api serves the witness over HTTP:
//
//	POST <submission prefix>/add-checkpoint           c2sp.org/tlog-witness
//	GET  <monitoring prefix>/<hex SHA-256(origin)>/checkpoint
//	GET  /healthz   the process serves HTTP
//	GET  /readyz    the store answers, the cosigning key is reachable (the
//	                signer service, if it holds the key) and the server is
//	                not shutting down
//	GET  /metrics   Prometheus (unless served on a separate listener)
//
// The monitoring GET serves the last cosigned checkpoint of a log even after
// the log is disabled (it remains evidence of what the witness saw).
//
// statusOf is the one place mapping errors to HTTP statuses. The body of an
// add-checkpoint request is capped at MaxBodyBytes (413 above it); a
// response is written only after the witness has made its state durable.
package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// DefaultMaxBodyBytes caps add-checkpoint bodies: 63 proof lines take under
// 3 KiB, and signed-note verifiers must accept 16 signatures, which for
// post-quantum keys approach 7 KiB each in base64; 256 KiB leaves a wide
// margin for extension lines and extra signatures.
const DefaultMaxBodyBytes = 256 << 10

// Outcome labels of witness_add_checkpoint_requests_total.
const (
	OutcomeOK           = "ok"
	OutcomeMalformed    = "malformed"
	OutcomeTooLarge     = "too_large"
	OutcomeUnknownLog   = "unknown_log"
	OutcomeForbidden    = "forbidden"
	OutcomeConflict     = "conflict"
	OutcomeInconsistent = "inconsistent"
	OutcomeRateLimited  = "rate_limited"
	OutcomeUnavailable  = "unavailable"
	OutcomeError        = "error"
)

// Config holds what the handler needs.
type Config struct {
	Witness          *tlogwitness.Witness
	Metrics          *Metrics
	Logger           *slog.Logger
	SubmissionPrefix string // e.g. "" or "/witness"; no trailing slash
	MonitoringPrefix string
	MaxBodyBytes     int64 // 0: DefaultMaxBodyBytes
	ServeMetrics     bool  // serve /metrics on this handler
}

// Server is the HTTP handler of the witness.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	draining atomic.Bool
}

// New returns the witness HTTP handler.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST "+cfg.SubmissionPrefix+"/add-checkpoint", s.addCheckpoint)
	s.mux.HandleFunc("GET "+cfg.MonitoringPrefix+"/{originhash}/checkpoint", s.latest)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.ServeMetrics {
		s.mux.Handle("GET /metrics", cfg.Metrics.Handler())
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Drain makes /readyz fail, so load balancers stop sending traffic before
// shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := s.cfg.Witness.Ready(r.Context()); err != nil {
		s.cfg.Logger.WarnContext(r.Context(), "not ready", slog.Any("error", err))
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

func (s *Server) addCheckpoint(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if err != nil && !errors.As(err, &tooBig) {
		// Truncated body or ReadTimeout: the client's fault, not ours.
		err = fmt.Errorf("%w: reading body: %v", tlogwitness.ErrMalformed, err)
	}
	var res tlogwitness.Cosigned
	if err == nil {
		var req c2sp.AddCheckpoint
		if req, err = c2sp.ParseAddCheckpoint(body); err == nil {
			res, err = s.cfg.Witness.AddCheckpoint(r.Context(), req)
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.DebugContext(r.Context(), "cosigned", slog.String("origin", res.Origin), slog.Uint64("size", res.Size),
		slog.Bool("reused", res.Reused))
	s.cfg.Metrics.requests.WithLabelValues(OutcomeOK).Inc()
	s.cfg.Metrics.cosignSeconds.Observe(time.Since(start).Seconds())
	s.cfg.Metrics.treeSize.WithLabelValues(res.Origin).Set(float64(res.Size))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(res.Signature)
}

func (s *Server) latest(w http.ResponseWriter, r *http.Request) {
	h := r.PathValue("originhash")
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != 32 || strings.ToLower(h) != h {
		http.Error(w, "not a lowercase hex SHA-256 origin hash", http.StatusNotFound)
		return
	}
	c, err := s.cfg.Witness.Latest([32]byte(raw))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(c)
}

// fail writes the error response and counts the outcome.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, outcome := statusOf(err)
	if r.Method == http.MethodPost {
		s.cfg.Metrics.requests.WithLabelValues(outcome).Inc()
	}
	var conflict *tlogwitness.ConflictError
	var limited *tlogwitness.RateLimitError
	var unavailable *cosig.UnavailableError
	switch {
	case errors.As(err, &conflict):
		w.Header().Set("Content-Type", c2sp.SizeContentType)
		w.WriteHeader(code)
		w.Write(c2sp.FormatSizeBody(conflict.Size))
		return
	case errors.As(err, &limited):
		setRetryAfter(w, limited.RetryAfter)
	case errors.As(err, &unavailable):
		setRetryAfter(w, unavailable.RetryAfter)
		s.cfg.Logger.WarnContext(r.Context(), "cannot cosign: the cosigning key is unavailable", slog.Any("error", err))
		http.Error(w, "cosigning key temporarily unavailable", code)
		return
	case code == http.StatusServiceUnavailable:
		setRetryAfter(w, cosig.DefaultRetryAfter)
	}
	if code == http.StatusInternalServerError {
		s.cfg.Logger.ErrorContext(r.Context(), "request failed", slog.String("path", r.URL.Path), slog.Any("error", err))
		http.Error(w, "internal error", code)
		return
	}
	s.cfg.Logger.DebugContext(r.Context(), "request refused", slog.String("path", r.URL.Path),
		slog.Int("status", code), slog.Any("error", err))
	http.Error(w, err.Error(), code)
}

// setRetryAfter sets Retry-After in whole seconds, at least 1.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10))
}

// statusOf maps an error of this service to its HTTP status and outcome label.
func statusOf(err error) (int, string) {
	var conflict *tlogwitness.ConflictError
	var limited *tlogwitness.RateLimitError
	var tooBig *http.MaxBytesError
	var unavailable *cosig.UnavailableError
	switch {
	case errors.As(err, &unavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, OutcomeUnavailable
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, OutcomeTooLarge
	case errors.Is(err, tlogwitness.ErrMalformed), errors.Is(err, tlogwitness.ErrOldSize):
		return http.StatusBadRequest, OutcomeMalformed
	case errors.Is(err, tlogwitness.ErrUnknownLog), errors.Is(err, tlogwitness.ErrNoCheckpoint):
		return http.StatusNotFound, OutcomeUnknownLog
	case errors.Is(err, tlogwitness.ErrUntrusted), errors.Is(err, tlogwitness.ErrBadSignature):
		return http.StatusForbidden, OutcomeForbidden
	case errors.As(err, &conflict):
		return http.StatusConflict, OutcomeConflict
	case errors.Is(err, tlogwitness.ErrInconsistent):
		return http.StatusUnprocessableEntity, OutcomeInconsistent
	case errors.As(err, &limited):
		return http.StatusTooManyRequests, OutcomeRateLimited
	default:
		return http.StatusInternalServerError, OutcomeError
	}
}
