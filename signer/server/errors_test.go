package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/pkcs11"
)

// TestPushbackMapping: every overload is 429 and every "cannot sign for
// now" is 503, both with a Retry-After of at least a second; refusals and
// failures carry none.
func TestPushbackMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
		after  time.Duration
	}{
		{&retryError{fmt.Errorf("%w: 5 requests/s", ErrRateLimited), 2500 * time.Millisecond}, 429, "rate_limited", 2500 * time.Millisecond},
		{&retryError{fmt.Errorf("%w: 8 in progress", ErrTooManyInFlight), time.Second}, 429, "concurrency_limited", time.Second},
		{&retryError{fmt.Errorf("%w: %w", ErrUnauthThrottled, ErrUnauthenticated), 100 * time.Millisecond}, 429, "unauthenticated_rate_limited", time.Second},
		{fmt.Errorf("%w: digest 3: %w: gone", ErrSigning, pkcs11.ErrTokenUnavailable), 503, "token_unavailable", time.Second},
		{fmt.Errorf("%w: k version 1", ErrKeyUnavailable), 503, "key_unavailable", time.Second},
		{fmt.Errorf("%w: k", ErrNoActiveVersion), 503, "no_active_key_version", time.Second},
		{fmt.Errorf("%w: db down", ErrAuditUnavailable), 503, "audit_unavailable", time.Second},
		{fmt.Errorf("%w: %w", ErrSigning, pkcs11.ErrClosed), 503, "shutting_down", time.Second},
		{fmt.Errorf("%w: unknown bearer token", ErrUnauthenticated), 401, "unauthenticated", 0},
		{fmt.Errorf("%w: sign:dsse", ErrScope), 403, "scope_missing", 0},
		{fmt.Errorf("%w: x", ErrBadRequest), 400, "bad_request", 0},
		{fmt.Errorf("%w: %w", ErrSigning, errors.New("CKR_FUNCTION_FAILED")), 500, "signing_failed", 0},
	} {
		status, code, after := classify(tc.err)
		if status != tc.status || code != tc.code || after != tc.after {
			t.Errorf("%v: %d %s %v, want %d %s %v", tc.err, status, code, after, tc.status, tc.code, tc.after)
		}
	}
	if h := retryAfterHeader(2500 * time.Millisecond); h != "3" {
		t.Errorf("Retry-After of 2.5 s: %s, want 3", h)
	}
}
