package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/stellaops/tlog/signer/policy"
)

// tenant is a configured tenant with its live quota state.
type tenant struct {
	cfg     TenantConfig
	policy  *policy.Policy
	limiter *rate.Limiter
	slots   chan struct{} // one per request in progress
}

// principal is an authenticated caller.
type principal struct {
	tenant *tenant
	caller string // token id or certificate subject
	method string // "token" or "mtls"
	scopes []string
}

type credential struct {
	hash [sha256.Size]byte
	p    principal
}

// authenticator finds the principal of a request. Bearer tokens are
// compared by SHA-256 against every configured hash with
// subtle.ConstantTimeCompare and no early exit, so the time taken does not
// depend on which hash (if any) matched.
type authenticator struct {
	tokens   []credential
	subjects map[string]principal
}

func newAuthenticator(tenants map[string]*tenant) *authenticator {
	a := &authenticator{subjects: map[string]principal{}}
	for _, t := range tenants {
		for _, tc := range t.cfg.Tokens {
			var c credential
			h, _ := hex.DecodeString(tc.SHA256) // validated by Config.Validate
			copy(c.hash[:], h)
			c.p = principal{tenant: t, caller: "token:" + tc.ID, method: "token", scopes: tc.Scopes}
			a.tokens = append(a.tokens, c)
		}
		for _, s := range t.cfg.MTLSSubjects {
			a.subjects[s] = principal{tenant: t, caller: "mtls:" + s, method: "mtls", scopes: t.cfg.MTLSScopes}
		}
	}
	return a
}

// authenticate returns the caller of r: the bearer token if the request
// carries an Authorization header, else the verified client certificate.
func (a *authenticator) authenticate(r *http.Request) (*principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return nil, fmt.Errorf("%w: Authorization must be \"Bearer <token>\"", ErrUnauthenticated)
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		var found *principal
		for i := range a.tokens {
			if subtle.ConstantTimeCompare(sum[:], a.tokens[i].hash[:]) == 1 {
				found = &a.tokens[i].p
			}
		}
		if found == nil {
			return nil, fmt.Errorf("%w: unknown bearer token", ErrUnauthenticated)
		}
		return found, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		subj := r.TLS.VerifiedChains[0][0].Subject.String()
		if p, ok := a.subjects[subj]; ok {
			return &p, nil
		}
		return nil, fmt.Errorf("%w: client certificate %q is not mapped to a tenant", ErrUnauthenticated, subj)
	}
	return nil, fmt.Errorf("%w: no bearer token or client certificate", ErrUnauthenticated)
}

func (p *principal) has(scope string) bool { return slices.Contains(p.scopes, scope) }

// admit applies the tenant's rate and concurrency quotas. On success the
// caller must call the returned release when the request is done.
func (t *tenant) admit(now time.Time) (release func(), err error) {
	select {
	case t.slots <- struct{}{}:
	default:
		return nil, &retryError{fmt.Errorf("%w: %d requests in progress", ErrTooManyInFlight, cap(t.slots)), time.Second}
	}
	res := t.limiter.ReserveN(now, 1)
	if d := res.DelayFrom(now); !res.OK() || d > 0 {
		res.CancelAt(now)
		<-t.slots
		if !res.OK() {
			d = time.Second
		}
		return nil, &retryError{fmt.Errorf("%w: %.3g requests/s", ErrRateLimited, t.cfg.Quota.RPS), d}
	}
	return func() { <-t.slots }, nil
}

func newTenant(cfg TenantConfig) *tenant {
	return &tenant{
		cfg:     cfg,
		policy:  &policy.Policy{AllowedPredicateTypes: cfg.AllowedPredicateTypes},
		limiter: rate.NewLimiter(rate.Limit(cfg.Quota.RPS), cfg.Quota.Burst),
		slots:   make(chan struct{}, cfg.Quota.Concurrency),
	}
}
