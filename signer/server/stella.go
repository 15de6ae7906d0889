package server

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/entitlement"
	"github.com/stellaops/tlog/signer/policy"
	"github.com/stellaops/tlog/signer/referrers"
	"github.com/stellaops/tlog/signer/schema"
)

// stella holds the parts of issue 18: entitlements, release
// verification with manual approvals, and their metrics.
type stella struct {
	ent       *entitlement.Checker
	entDB     *sql.DB // own connection to the entitlement store, or nil
	rel       *referrers.Verifier
	approvals *referrers.Approvals
	m         *stellaMetrics
}

// stellaCall is what a request learned in the steps of issue 18, for the
// decision log.
type stellaCall struct {
	traceID     string
	entitlement string // grant state or refusal
	release     string // verdict, "approved", or ""
}

// newStella opens the entitlement store and the release verifier the
// configuration asks for, and registers their metrics.
func (s *Server) newStella() error {
	st := &stella{m: newStellaMetrics(s)}
	s.st = st
	if e := s.cfg.Entitlements; e != nil {
		db := s.db
		dsn, err := e.dsn()
		if err != nil {
			return err
		}
		if dsn != "" {
			if st.entDB, err = audit.OpenDB(dsn); err != nil {
				return fmt.Errorf("entitlement store: %w", err)
			}
			db = st.entDB
		}
		st.ent = entitlement.New(entitlement.NewSQLStore(db, s.db), e.Config, s.now, policy.DefaultCatalog.Canonical, st.m.observeEntitlement)
	}
	if r := s.cfg.Releases; r != nil {
		v, err := referrers.New(r.Config, s.now)
		if err != nil {
			return err
		}
		st.rel, st.approvals = v, referrers.NewApprovals(s.db)
	}
	return nil
}

func (st *stella) close() error {
	if st != nil && st.entDB != nil {
		return st.entDB.Close()
	}
	return nil
}

// stellaRoutes registers the endpoints of issue 18.
func (s *Server) stellaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.PathSchemas, listSchemas)
	mux.HandleFunc("GET "+api.PathSchemas+"/{file}", getSchema)
	mux.HandleFunc("GET "+api.PathVerifyReferrers, s.verifyReferrers)
	mux.Handle("POST "+api.PathReleaseApprovals, s.endpoint("release-approval", ScopeApproveRelease, s.approveRelease))
}

func listSchemas(w http.ResponseWriter, r *http.Request) {
	resp := api.SchemasResponse{}
	for _, t := range schema.Types {
		resp.Schemas = append(resp.Schemas, api.SchemaInfo{Name: t.Name, Version: t.Version, PredicateType: t.PredicateType,
			Aliases: t.Aliases, ID: t.ID(), Path: api.PathSchemas + "/" + t.File()})
	}
	writeJSON(w, http.StatusOK, resp)
}

func getSchema(w http.ResponseWriter, r *http.Request) {
	b, ok := schema.File(r.PathValue("file"))
	if !ok {
		writeJSON(w, http.StatusNotFound, api.Error{Code: "not_found", Message: "no such schema: " + r.PathValue("file")})
		return
	}
	w.Header().Set("Content-Type", "application/schema+json")
	w.Write(b)
}

// Errors of issue 18 (mapped in classify).
var (
	ErrReleasesOff = errors.New("release verification is not configured")
	ErrApprovals   = errors.New("release approvals store unavailable")
)

// stellaGate is the sign/dsse step of issue 18, after the policy and
// before signing: the tenant's entitlement, then the release verification
// of the producer's scanner image. It notes cached or bypassed
// entitlements and release verdicts in the audit row's detail.
func (s *Server) stellaGate(ctx context.Context, c *call, key, predicateType string, d *policy.Decision, payloadBytes int) error {
	t := c.p.tenant.cfg
	var notes []string
	if t.RequireEntitlement {
		g, err := s.st.ent.Check(ctx, entitlement.Request{Tenant: t.Name, PredicateType: predicateType, Key: key, PayloadBytes: payloadBytes})
		c.st.entitlement = g.State
		if err != nil {
			c.st.entitlement = entitlementReason(err)
			if errors.Is(err, entitlement.ErrQuota) {
				// A daily quota comes back at the next UTC midnight.
				now := s.now().UTC()
				return &retryError{err: err, after: now.Truncate(24 * time.Hour).Add(24 * time.Hour).Sub(now)}
			}
			return err
		}
		if g.Detail != "" {
			notes = append(notes, g.Detail)
		}
	}
	if t.RequireReleaseVerification && d != nil && d.Stella != nil && d.Stella.Producer.Image != "" {
		note, err := s.releaseGate(ctx, c, d.Stella.Producer.Image)
		if err != nil {
			return err
		}
		notes = append(notes, note)
	}
	c.rec.Detail = strings.Join(notes, "; ")
	return nil
}

func entitlementReason(err error) string {
	switch {
	case errors.Is(err, entitlement.ErrDenied):
		return "denied"
	case errors.Is(err, entitlement.ErrQuota), errors.Is(err, entitlement.ErrTooLarge):
		return "quota"
	}
	return "unavailable"
}

// releaseGate verifies a producer image, falling back on an active manual
// approval when the image does not pass or the registry cannot answer.
func (s *Server) releaseGate(ctx context.Context, c *call, image string) (string, error) {
	repo, digest, err := referrers.SplitImage(image)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	v, verr := s.st.rel.Verify(ctx, repo, digest)
	if verr == nil && v.Trusted {
		c.st.release = v.Verdict
		s.st.m.release.WithLabelValues(v.Verdict).Inc()
		if v.Verdict == referrers.AllowListed {
			return fmt.Sprintf("scanner %s allow-listed", image), nil
		}
		return fmt.Sprintf("scanner %s verified (signed by %s)", image, strings.Join(v.Signers, ",")), nil
	}
	verdict := "error"
	if verr == nil {
		verdict = v.Verdict
	}
	a, err := s.st.approvals.Active(ctx, digest, c.p.tenant.cfg.Name, s.now())
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrApprovals, err)
	}
	if a != nil {
		c.st.release = "approved"
		s.st.m.release.WithLabelValues("approved").Inc()
		return fmt.Sprintf("scanner %s not verified (%s); manual approval %d by %s (ticket %s) until %s",
			image, verdict, a.ID, a.ApprovedBy, a.Ticket, a.ExpiresAt.UTC().Format(time.RFC3339)), nil
	}
	c.st.release = verdict
	s.st.m.release.WithLabelValues(verdict).Inc()
	if verr != nil {
		return "", verr
	}
	return "", fmt.Errorf("%w: %s: verdict %s (no referrer signed by a trusted scanner release key, not allow-listed, no active approval)",
		referrers.ErrUnverified, image, v.Verdict)
}

// verifyReferrers serves GET /api/v1/signer/verify/referrers?digest=….
func (s *Server) verifyReferrers(w http.ResponseWriter, r *http.Request) {
	fail := func(err error) {
		status, code, after := classify(err)
		if after > 0 {
			w.Header().Set("Retry-After", retryAfterHeader(after))
		}
		writeJSON(w, status, api.Error{Code: code, Message: err.Error()})
	}
	p, err := s.auth.authenticate(r)
	if err != nil {
		fail(err)
		return
	}
	if !p.has(ScopeDSSE) && !p.has(ScopeApproveRelease) {
		fail(fmt.Errorf("%w: %s or %s", ErrScope, ScopeDSSE, ScopeApproveRelease))
		return
	}
	if s.st.rel == nil {
		fail(ErrReleasesOff)
		return
	}
	digest, repo := r.URL.Query().Get("digest"), r.URL.Query().Get("repository")
	v, err := s.st.rel.Verify(r.Context(), repo, digest)
	if err != nil {
		fail(err)
		return
	}
	resp := *v
	if !v.Trusted {
		if resp.Approval, err = s.st.approvals.Active(r.Context(), digest, p.tenant.cfg.Name, s.now()); err != nil {
			fail(fmt.Errorf("%w: %v", ErrApprovals, err))
			return
		}
	}
	s.st.m.verifyCalls.WithLabelValues(v.Verdict).Inc()
	writeJSON(w, http.StatusOK, resp)
}

var approvalTicketRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$`)

// approveRelease records a manual approval (audited by the endpoint
// pipeline like every decision).
func (s *Server) approveRelease(ctx context.Context, c *call) (any, error) {
	var req api.ApprovalRequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	c.rec.PayloadType = "release-approval"
	if s.st.rel == nil {
		return nil, ErrReleasesOff
	}
	if err := referrers.CheckDigest(req.Digest); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	c.rec.Subjects = []string{req.Digest}
	now := s.now()
	switch {
	case !approvalTicketRE.MatchString(req.Ticket):
		return nil, fmt.Errorf("%w: ticket: 1–128 letters, digits, ._:/#-", ErrBadRequest)
	case strings.TrimSpace(req.Reason) == "":
		return nil, fmt.Errorf("%w: a reason is required", ErrBadRequest)
	case !req.ExpiresAt.After(now):
		return nil, fmt.Errorf("%w: expiresAt is not in the future", ErrBadRequest)
	case req.ExpiresAt.After(now.Add(s.cfg.Releases.MaxApproval)):
		return nil, fmt.Errorf("%w: expiresAt is more than %s away", ErrBadRequest, s.cfg.Releases.MaxApproval)
	case req.Tenant != "" && s.tenants[req.Tenant] == nil:
		return nil, fmt.Errorf("%w: unknown tenant %q", ErrBadRequest, req.Tenant)
	}
	a, err := s.st.approvals.Add(ctx, api.ReleaseApproval{Digest: req.Digest, Tenant: req.Tenant, ApprovedBy: c.rec.Caller,
		Ticket: req.Ticket, Reason: req.Reason, CreatedAt: now, ExpiresAt: req.ExpiresAt, RequestID: c.rec.RequestID})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrApprovals, err)
	}
	forWhom := "every tenant"
	if a.Tenant != "" {
		forWhom = "tenant " + a.Tenant
	}
	c.rec.Detail = fmt.Sprintf("manual approval %d of %s for %s until %s (ticket %s): %s", a.ID, a.Digest, forWhom,
		a.ExpiresAt.UTC().Format(time.RFC3339), a.Ticket, a.Reason)
	s.st.m.approvals.Inc()
	s.log.WarnContext(ctx, "scanner release manually approved", slog.String("trace_id", c.st.traceID), slog.String("request_id", c.rec.RequestID),
		slog.String("digest", a.Digest), slog.String("by", a.ApprovedBy), slog.String("ticket", a.Ticket), slog.Time("until", a.ExpiresAt))
	return &a, nil
}

// traceID is the W3C trace id of the request's traceparent header, or a
// new one.
func traceID(r *http.Request) string {
	if tp := r.Header.Get("Traceparent"); len(tp) == 55 && tp[2] == '-' && tp[35] == '-' {
		if id := tp[3:35]; isHex(id) && id != strings.Repeat("0", 32) {
			return id
		}
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// observeDecision logs one decision with its trace id and counts it
// (called once per request, after the audit row is settled).
func (s *Server) observeDecision(ctx context.Context, endpoint string, c *call, status int, code string) {
	decision := c.rec.Decision
	if code == "audit_unavailable" {
		decision = audit.Failed
	}
	tenant := c.rec.Tenant
	s.st.m.decisions.WithLabelValues(endpoint, tenant, decision, code).Inc()
	if q := quotaOf(code); q != "" {
		s.st.m.quotaHits.WithLabelValues(tenant, q).Inc()
	}
	if decision == audit.Signed && c.rec.KeyName != "" && c.rec.Items > 0 {
		s.st.m.keyUsage.WithLabelValues(c.rec.KeyName, tenant).Add(float64(c.rec.Items))
	}
	attrs := []slog.Attr{slog.String("trace_id", c.st.traceID), slog.String("request_id", c.rec.RequestID),
		slog.String("endpoint", endpoint), slog.String("tenant", tenant), slog.String("decision", decision),
		slog.Int("status", status), slog.String("key", c.rec.KeyName), slog.Any("subjects", c.rec.Subjects)}
	if code != "ok" {
		attrs = append(attrs, slog.String("reason", code))
	}
	if c.rec.PredicateType != "" {
		attrs = append(attrs, slog.String("predicate_type", c.rec.PredicateType))
	}
	if c.st.entitlement != "" {
		attrs = append(attrs, slog.String("entitlement", c.st.entitlement))
	}
	if c.st.release != "" {
		attrs = append(attrs, slog.String("release", c.st.release))
	}
	level := slog.LevelInfo
	if c.st.entitlement == entitlement.Bypassed || c.st.release == "approved" {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(ctx, level, "signer decision", attrs...)
}

// quotaOf names the quota behind a refusal code, or "".
func quotaOf(code string) string {
	switch code {
	case "rate_limited":
		return "rate"
	case "concurrency_limited":
		return "concurrency"
	case "payload_too_large":
		return "payload_size"
	case "quota_exceeded":
		return "plan"
	}
	return ""
}
