// Package admission guards the entry-submission endpoints (Rekor v1 POST
// /api/v1/log/entries, Rekor v2 POST /api/v2/log/entries): it attributes
// each submission to a tenant (package tenant), decides its budget tier
// ([Classifier]), charges the tenant's budget (package budget) and answers
// over budget itself, with 429 and Retry-After, or queues the submission
// when the caller asked for it and a [Queuer] is set.
//
// Contract: a submission reaches the API handler only with its tenant in
// the context and, with budgets on, after one successful Take; the handler
// gets the body as read here (bounded by MaxRequestBytes). The charge is
// refunded when the answer is anything but 201 (not logged), except 504
// (the entry may still be logged). A budget store error answers 503 with
// Retry-After: never 500, never an unaccounted admission. Every answer of
// this package has the endpoint's error shape: Rekor v1's
// {"code":<HTTP status>,"message":…}, rekor-tiles' (v2) gRPC status
// {"code":<gRPC code>,"message":…,"details":[]}.
package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/stellaops/tlog/logserver/budget"
	"github.com/stellaops/tlog/logserver/tenant"
)

// The endpoints guarded, by API.
const (
	PathV1 = "/api/v1/log/entries"
	PathV2 = "/api/v2/log/entries"
)

// Queuer takes a submission refused over budget into the pending queue
// (the caller sent "Prefer: respond-async"). api is "v1" or "v2", body the
// request body as received. It returns the pending entry's ID; an error
// answers 503.
type Queuer interface {
	Enqueue(ctx context.Context, api string, t tenant.Tenant, tier string, body []byte) (id string, err error)
}

// QueueLocation is the Location of an entry queued through api: the
// pending queue's GET /api/<api>/queue/entries/{id}.
func QueueLocation(api, id string) string { return "/api/" + api + "/queue/entries/" + id }

// Admission is the middleware. Set the fields, then Wrap.
type Admission struct {
	Resolver *tenant.Resolver
	// RequireAuthentication refuses submissions of the default tenant
	// (no credentials) with 401.
	RequireAuthentication bool
	// Budgets is nil when budgets are off: submissions then only get
	// their tenant.
	Budgets    *budget.Store
	Classifier Classifier
	// MaxRequestBytes bounds the body read here; a larger one goes on,
	// uncharged, to the handler, which answers 413.
	MaxRequestBytes int64
	// V2 guards the Rekor v2 endpoint too.
	V2 bool
	// MaxRetryAfter, if positive, caps the Retry-After of a 429.
	MaxRetryAfter time.Duration
	// Queue, if set, takes refused submissions whose caller asked to be
	// queued.
	Queue   Queuer
	Metrics *Metrics
	Logger  *slog.Logger
}

// retryAfterUnavailable is the Retry-After (seconds) of a 503.
const retryAfterUnavailable = 5

// Wrap guards next's submission endpoints; other requests pass through.
func (a *Admission) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api := ""
		if r.Method == http.MethodPost {
			switch {
			case r.URL.Path == PathV1:
				api = "v1"
			case r.URL.Path == PathV2 && a.V2:
				api = "v2"
			}
		}
		if api == "" {
			next.ServeHTTP(w, r)
			return
		}
		a.submit(w, r, api, next)
	})
}

// answer is a refusal of this package.
type answer struct {
	status     int
	code       codes.Code // the v2 gRPC code
	msg        string
	retryAfter time.Duration
}

func (a *Admission) submit(w http.ResponseWriter, r *http.Request, api string, next http.Handler) {
	start := time.Now()
	t, err := a.Resolver.Resolve(r)
	if err != nil {
		a.fail(w, api, answer{status: http.StatusUnauthorized, code: codes.Unauthenticated, msg: err.Error()})
		return
	}
	if a.RequireAuthentication && !t.Authenticated {
		a.fail(w, api, answer{status: http.StatusUnauthorized, code: codes.Unauthenticated,
			msg: "this log accepts entries only from authenticated tenants: send Authorization: Bearer <token> or a client certificate"})
		return
	}
	r = r.WithContext(tenant.WithContext(r.Context(), t))
	if a.Budgets == nil {
		next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, a.MaxRequestBytes+1))
	if err != nil || int64(len(body)) > a.MaxRequestBytes {
		// Too large or unreadable: the handler answers (413, 400, 499) and
		// nothing is charged.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		next.ServeHTTP(w, r)
		return
	}
	tier, err := a.Classifier.Tier(api, r.Header.Get(TierHeader), body)
	if err != nil {
		a.fail(w, api, answer{status: http.StatusBadRequest, code: codes.InvalidArgument, msg: err.Error()})
		return
	}
	ctx := r.Context()
	d, err := a.Budgets.Take(ctx, t.Name, tier)
	if err != nil {
		a.Metrics.Count(tier, StatusUnavailable)
		a.Logger.ErrorContext(ctx, "budget store", "tenant", t.Name, "tier", tier, "error", err)
		a.fail(w, api, answer{status: http.StatusServiceUnavailable, code: codes.Unavailable,
			msg: "the submission budget store (database) is unavailable; retry later", retryAfter: retryAfterUnavailable * time.Second})
		return
	}
	limits := a.Budgets.Policy().For(t.Name)
	if tier == budget.TierGraph {
		a.Metrics.Budget(t.Name, d.Remaining, limits.HourlyLimit)
	}
	if !d.Admitted {
		if a.Queue != nil && preferAsync(r.Header) {
			a.enqueue(w, r, api, t, tier, body)
			return
		}
		a.Metrics.Count(tier, StatusRejected)
		a.Logger.InfoContext(ctx, "submission over budget", "tenant", t.Name, "tier", tier, "window", d.Window, "limit", d.Limit, "reset", d.Reset)
		retry := d.RetryAfter
		if a.MaxRetryAfter > 0 {
			retry = min(retry, a.MaxRetryAfter)
		}
		a.fail(w, api, answer{status: http.StatusTooManyRequests, code: codes.ResourceExhausted,
			msg: overBudget(t.Name, tier, d, limits.BurstWindow), retryAfter: retry})
		return
	}
	a.Metrics.Count(tier, StatusAdmitted)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec := &recorder{ResponseWriter: w}
	defer func() {
		// Settled even if the handler panics (http.Server recovers it).
		status := rec.status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		a.Metrics.latency.WithLabelValues(tier).Observe(time.Since(start).Seconds())
		switch status {
		case http.StatusCreated:
			a.Metrics.Count(tier, StatusLogged)
		case http.StatusGatewayTimeout:
			a.Metrics.Count(tier, StatusUncertain)
		default:
			a.Metrics.Count(tier, StatusFailed)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := a.Budgets.Refund(rctx, t.Name, tier); err != nil {
				a.Logger.ErrorContext(ctx, "budget refund", "tenant", t.Name, "tier", tier, "status", status, "error", err)
			}
		}
	}()
	next.ServeHTTP(rec, r)
}

// enqueue hands a refused submission to the queue: 202 with its ID.
func (a *Admission) enqueue(w http.ResponseWriter, r *http.Request, api string, t tenant.Tenant, tier string, body []byte) {
	id, err := a.Queue.Enqueue(r.Context(), api, t, tier, body)
	if err != nil {
		a.Metrics.Count(tier, StatusUnavailable)
		a.Logger.WarnContext(r.Context(), "pending queue refused a submission", "tenant", t.Name, "tier", tier, "error", err)
		// The queue's own answer when it has one: its refusal of bad input
		// is the write endpoint's (400/413/422, nothing stored), a full
		// queue's is 503 with its Retry-After.
		var qa interface{ WriteResponse(http.ResponseWriter) }
		if errors.As(err, &qa) {
			qa.WriteResponse(w)
			return
		}
		a.fail(w, api, answer{status: http.StatusServiceUnavailable, code: codes.Unavailable,
			msg:        fmt.Sprintf("tenant %q is over its %s budget and the pending queue cannot take the entry: %v", t.Name, tier, err),
			retryAfter: retryAfterUnavailable * time.Second})
		return
	}
	a.Metrics.Count(tier, StatusQueued)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", QueueLocation(api, id))
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "transparency_pending"})
}

// overBudget is the 429 message: tenant, tier, the limit reached and when
// its window resets.
func overBudget(tenantName, tier string, d budget.Decision, burstWindow time.Duration) string {
	var limit string
	switch d.Window {
	case "burst":
		limit = fmt.Sprintf("burst limit of %d submissions per %v window", d.Limit, burstWindow)
	case "hourly":
		limit = fmt.Sprintf("hourly limit of %d submissions", d.Limit)
	default:
		limit = fmt.Sprintf("daily limit of %d edge bundles", d.Limit)
	}
	return fmt.Sprintf("tenant %q is over its %s budget: %s reached; it resets at %s (retry after %ds)",
		tenantName, tier, limit, d.Reset.UTC().Format(time.RFC3339), retryAfterSeconds(d.RetryAfter))
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(int64(math.Ceil(d.Seconds())), 1)
}

// preferAsync reports whether the request asks to be answered
// asynchronously (RFC 7240 Prefer: respond-async).
func preferAsync(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(p), ";")
			name, _, _ = strings.Cut(name, "=")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// fail writes a refusal in the endpoint's error shape. It is the
// package's one error mapping.
func (a *Admission) fail(w http.ResponseWriter, api string, ans answer) {
	if ans.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(ans.retryAfter), 10))
	}
	if ans.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="transparency log"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ans.status)
	var body any = map[string]any{"code": ans.status, "message": ans.msg}
	if api == "v2" {
		body = map[string]any{"code": int(ans.code), "message": ans.msg, "details": []any{}}
	}
	_ = json.NewEncoder(w).Encode(body)
}

// recorder remembers the status the handler answered.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
