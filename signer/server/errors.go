package server

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stellaops/tlog/signer/entitlement"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/policy"
	"github.com/stellaops/tlog/signer/referrers"
)

// Sentinel errors of the API. Handlers return them (wrapped with detail);
// [classify] alone turns them into an HTTP status and a stable error code.
var (
	ErrUnauthenticated  = errors.New("missing or unknown credentials")
	ErrUnauthThrottled  = errors.New("too many unauthenticated requests")
	ErrScope            = errors.New("the credential lacks the scope this endpoint needs")
	ErrUnknownKey       = errors.New("unknown key")
	ErrKeyNotAllowed    = errors.New("key not allowed for this tenant")
	ErrKeyPurpose       = errors.New("key not configured for this kind of signature")
	ErrBadRequest       = errors.New("malformed request")
	ErrTooLarge         = errors.New("request body exceeds the tenant's payload limit")
	ErrRateLimited      = errors.New("tenant request rate exceeded")
	ErrTooManyInFlight  = errors.New("tenant concurrency limit reached")
	ErrKeyUnavailable   = errors.New("key unavailable")
	ErrNoActiveVersion  = errors.New("no active key version")
	ErrAuditUnavailable = errors.New("audit trail unavailable; nothing was returned")
	ErrSigning          = errors.New("signing failed")
)

// retryError carries the Retry-After of a 429 or 503.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Pushback contract (what callers such as the witness and the logserver
// rely on): overload is always 429 with Retry-After (the caller's own
// quota: rate, concurrency, or the global budget for unauthenticated
// requests); the signer being unable to sign for now (token gone or
// recovering, key unavailable, no active key version, audit database
// down, shutting down) is always 503 with Retry-After. Anything else is
// the caller's fault (4xx) or a bug (500), and retrying it unchanged is
// pointless.

// retryUnavailable is the Retry-After of a 503 whose error does not carry
// its own (one readiness retry period: the service re-checks the token,
// keys and database every second while it is not ready).
const retryUnavailable = time.Second

// classify maps an error to its HTTP status, error code and, for 429 and
// 503, the Retry-After to send. It is the one place where errors become
// statuses.
func classify(err error) (status int, code string, after time.Duration) {
	status, code = classifyStatus(err)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		after = retryUnavailable
		var re *retryError
		if errors.As(err, &re) {
			after = re.after
		}
		after = max(after, time.Second)
	}
	return status, code, after
}

func classifyStatus(err error) (status int, code string) {
	switch {
	case err == nil:
		return http.StatusOK, ""
	case errors.Is(err, ErrUnauthThrottled):
		return http.StatusTooManyRequests, "unauthenticated_rate_limited"
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, ErrScope):
		return http.StatusForbidden, "scope_missing"
	case errors.Is(err, ErrKeyNotAllowed):
		return http.StatusForbidden, "key_not_allowed"
	case errors.Is(err, ErrUnknownKey):
		return http.StatusNotFound, "unknown_key"
	case errors.Is(err, ErrKeyPurpose):
		return http.StatusBadRequest, "wrong_key_purpose"
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "payload_too_large"
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, "rate_limited"
	case errors.Is(err, ErrTooManyInFlight):
		return http.StatusTooManyRequests, "concurrency_limited"
	case errors.Is(err, policy.ErrInvalidStatement):
		return http.StatusBadRequest, "invalid_statement"
	case errors.Is(err, policy.ErrPayloadType):
		return http.StatusForbidden, "payload_type_not_allowed"
	case errors.Is(err, policy.ErrPredicateNotAllowed):
		return http.StatusForbidden, "predicate_type_not_allowed"
	case errors.Is(err, policy.ErrRedactionRequired):
		return http.StatusForbidden, "redaction_required"
	case errors.Is(err, pkcs11.ErrTokenUnavailable):
		return http.StatusServiceUnavailable, "token_unavailable"
	case errors.Is(err, policy.ErrSchema):
		return http.StatusBadRequest, "schema_violation"
	case errors.Is(err, entitlement.ErrDenied):
		return http.StatusForbidden, "entitlement_denied"
	case errors.Is(err, entitlement.ErrQuota):
		return http.StatusTooManyRequests, "quota_exceeded"
	case errors.Is(err, entitlement.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "payload_too_large"
	case errors.Is(err, entitlement.ErrUnavailable):
		return http.StatusServiceUnavailable, "entitlement_unavailable"
	case errors.Is(err, referrers.ErrUnverified):
		return http.StatusForbidden, "release_unverified"
	case errors.Is(err, referrers.ErrBadDigest):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, referrers.ErrRegistry):
		return http.StatusServiceUnavailable, "registry_unavailable"
	case errors.Is(err, ErrApprovals):
		return http.StatusServiceUnavailable, "approvals_unavailable"
	case errors.Is(err, ErrReleasesOff):
		return http.StatusNotFound, "release_verification_off"
	case errors.Is(err, ErrKeyUnavailable):
		return http.StatusServiceUnavailable, "key_unavailable"
	case errors.Is(err, ErrNoActiveVersion):
		return http.StatusServiceUnavailable, "no_active_key_version"
	case errors.Is(err, ErrAuditUnavailable):
		return http.StatusServiceUnavailable, "audit_unavailable"
	case errors.Is(err, pkcs11.ErrClosed):
		return http.StatusServiceUnavailable, "shutting_down"
	}
	return http.StatusInternalServerError, "signing_failed"
}

// retryAfterHeader is the Retry-After value of d: whole seconds, rounded
// up, at least 1.
func retryAfterHeader(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// pkcs11Code is the CKR_* name of a token failure inside err, or "".
func pkcs11Code(err error) string {
	var pe *pkcs11.Error
	if errors.As(err, &pe) {
		return pe.Name()
	}
	return ""
}
