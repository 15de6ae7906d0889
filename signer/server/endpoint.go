package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/audit"
)

// call is one signing request on its way through the pipeline. Handlers
// fill rec with what they learn (key, payload type, subjects…) as they go,
// so that refusals are audited with as much detail as was known.
type call struct {
	p    *principal
	body []byte
	rec  audit.Record
	// signTook is the time spent signing (set by handlers that signed).
	signTook time.Duration
	st       stellaCall
}

// handlerFunc decodes c.body, checks, signs and returns the answer.
type handlerFunc func(ctx context.Context, c *call) (any, error)

// endpoint wraps a signing handler with the common pipeline (see the
// package documentation).
func (s *Server) endpoint(name, scope string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.m.inFlight.Inc()
		defer s.m.inFlight.Dec()
		p, err := s.auth.authenticate(r)
		if err != nil {
			s.refuseUnauthenticated(w, r, name, err)
			return
		}
		c := &call{p: p, rec: audit.Record{Time: start, RequestID: newRequestID(), Endpoint: name, RemoteAddr: r.RemoteAddr,
			Tenant: p.tenant.cfg.Name, Caller: p.caller, AuthMethod: p.method}}
		c.st.traceID = traceID(r)
		w.Header().Set("X-Trace-Id", c.st.traceID)
		resp, err := s.run(r, c, scope, h)

		status, code, after := classify(err)
		c.rec.Status = status
		c.rec.Latency = time.Since(start)
		switch {
		case err == nil:
			c.rec.Decision = audit.Signed
		case status >= 500:
			c.rec.Decision, c.rec.Reason, c.rec.Detail = audit.Failed, code, err.Error()
			c.rec.PKCS11Code = pkcs11Code(err)
		default:
			c.rec.Decision, c.rec.Reason, c.rec.Detail = audit.Refused, code, err.Error()
		}
		// The decision is committed before anything is answered.
		if aerr := s.audit.Write(r.Context(), c.rec); aerr != nil {
			s.log.ErrorContext(r.Context(), "audit write failed; withholding the answer",
				slog.String("request_id", c.rec.RequestID), slog.Any("error", aerr))
			err, resp = fmt.Errorf("%w: %v", ErrAuditUnavailable, aerr), nil
			status, code, after = classify(err)
		}
		tenantName := c.rec.Tenant
		if err != nil {
			if code := pkcs11Code(err); code != "" {
				s.m.pkcs11Errors.WithLabelValues(code).Inc()
			}
			if status < 500 {
				s.m.rejections.WithLabelValues(tenantName, code).Inc()
			}
			if after > 0 {
				w.Header().Set("Retry-After", retryAfterHeader(after))
			}
			s.log.InfoContext(r.Context(), "signer refused", slog.String("endpoint", name), slog.String("tenant", tenantName),
				slog.String("request_id", c.rec.RequestID), slog.Int("status", status), slog.String("code", code), slog.Any("error", err))
			writeJSON(w, status, api.Error{Code: code, Message: err.Error(), RequestID: c.rec.RequestID})
		} else {
			s.m.signLatency.WithLabelValues(c.rec.KeyName, tenantName, name).Observe(c.signTook.Seconds())
			code = "ok"
			w.Header().Set("X-Request-Id", c.rec.RequestID)
			writeJSON(w, status, resp)
		}
		s.observeDecision(r.Context(), name, c, status, code)
		s.m.requests.WithLabelValues(name, tenantName, code).Inc()
		s.m.reqLatency.WithLabelValues(name, fmt.Sprint(status)).Observe(time.Since(start).Seconds())
	})
}

// refuseUnauthenticated answers a request whose credentials were missing
// or unknown. It writes no audit row (a caller who cannot authenticate
// must not be able to grow the trail or take audit commits away from the
// tenants): such requests are counted in signer_unauthenticated_total and
// logged at most once per unauthenticated.log_interval, with the number
// of requests not logged since. Past the global unauthenticated budget
// they get 429 with Retry-After instead of 401.
func (s *Server) refuseUnauthenticated(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	if res := s.unauth.limiter.Reserve(); !res.OK() || res.Delay() > 0 {
		after := time.Second
		if res.OK() {
			after = res.Delay()
			res.Cancel()
		}
		err = &retryError{fmt.Errorf("%w: %w", ErrUnauthThrottled, err), after}
	}
	status, code, after := classify(err)
	rid := newRequestID()
	s.m.unauthenticated.WithLabelValues(endpoint, code).Inc()
	s.unauth.logf(r.Context(), s.log, endpoint, r.RemoteAddr, rid, status, err)
	if after > 0 {
		w.Header().Set("Retry-After", retryAfterHeader(after))
	}
	writeJSON(w, status, api.Error{Code: code, Message: err.Error(), RequestID: rid})
	s.m.requests.WithLabelValues(endpoint, "", code).Inc()
}

// run is the part of the pipeline after authentication and before the
// handler's own work.
func (s *Server) run(r *http.Request, c *call, scope string, h handlerFunc) (any, error) {
	p := c.p
	if !p.has(scope) {
		return nil, fmt.Errorf("%w: %s", ErrScope, scope)
	}
	release, err := p.tenant.admit(time.Now())
	if err != nil {
		return nil, err
	}
	defer release()
	limit := p.tenant.cfg.Quota.MaxPayloadBytes
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, r.ContentLength, limit)
	}
	c.body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: limit %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: reading body: %v", ErrBadRequest, err)
	}
	return h(r.Context(), c)
}

// decode reads a JSON request body strictly: unknown fields and trailing
// data are malformed requests.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON object", ErrBadRequest)
	}
	return nil
}

// key resolves a key name for the caller's tenant and a purpose.
func (s *Server) key(c *call, name, purpose string) (*namedKey, error) {
	if name == "" {
		// A tenant with exactly one key for this purpose may omit it.
		var only *namedKey
		for _, n := range c.p.tenant.cfg.Keys {
			if nk := s.ring.keys[n]; nk != nil && nk.hasPurpose(purpose) {
				if only != nil {
					return nil, fmt.Errorf("%w: \"key\" is required (the tenant has several %s keys)", ErrBadRequest, purpose)
				}
				only = nk
			}
		}
		if only == nil {
			return nil, fmt.Errorf("%w: the tenant has no %s key", ErrKeyNotAllowed, purpose)
		}
		name = only.cfg.Name
	}
	c.rec.KeyName = name
	nk := s.ring.keys[name]
	if nk == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, name)
	}
	allowed := false
	for _, n := range c.p.tenant.cfg.Keys {
		allowed = allowed || n == name
	}
	if !allowed {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotAllowed, name)
	}
	if !nk.hasPurpose(purpose) {
		return nil, fmt.Errorf("%w: key %q does not sign %s", ErrKeyPurpose, name, purpose)
	}
	return nk, nil
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
