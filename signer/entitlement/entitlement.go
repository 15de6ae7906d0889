// Package entitlement decides whether a tenant is entitled to a DSSE
// signature: the seed's Proof-of-Entitlement made local. Each entitled
// tenant has a plan (which predicate types, which keys, how many
// signatures a day, how large a payload) in the signer's own database
// (tables signer_plans and signer_entitlements, sql/signer/003_*.sql).
//
// Outages: an entitlement read from the store is reused for
// Config.RefreshInterval; after that the store is asked again, and if it
// cannot answer the last known entitlement is used until it is
// Config.CacheTTL old. Concurrent requests of a tenant share one store
// query, and after a failure the store is not asked again for
// RefreshInterval, so a hanging store delays at most one request per
// interval by StoreTimeout. Beyond that, signing stops (ErrUnavailable), unless
// the operator configured an emergency bypass (bounded in time, with a
// reason and a ticket): then requests are signed without an entitlement,
// and every such decision is reported as State "bypass" so that the
// service audits it, counts it (signer_entitlement_bypass_total) and
// alerts on it. The bypass never overrides a denial the store did give.
//
// Daily quotas are counted in memory per UTC day, seeded from the audit
// trail (signatures already given today) the first time a tenant is seen
// that day, so a restart does not reset them. A quota slot is taken when a
// request is granted, before it is signed.
//
// A Checker is safe for concurrent use.
package entitlement

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Refusals. ErrDenied, ErrQuota and ErrTooLarge are the store's answer; ErrUnavailable
// means there was no usable answer.
var (
	ErrDenied      = errors.New("entitlement: not entitled")
	ErrQuota       = errors.New("entitlement: plan quota exhausted")
	ErrTooLarge    = errors.New("entitlement: payload larger than the plan allows")
	ErrUnavailable = errors.New("entitlement: store unreachable and no usable cached entitlement")
	// ErrNotFound is what a Store returns for a tenant without entitlement.
	ErrNotFound = errors.New("entitlement: no entitlement for the tenant")
)

// Plan is what an entitled tenant may sign. Empty lists do not restrict.
type Plan struct {
	Name string
	// PredicateTypes are canonical predicate type URIs (or aliases the
	// checker's Canonical resolves).
	PredicateTypes []string
	Keys           []string
	// MaxSignaturesPerDay (UTC day) and MaxPayloadBytes; 0 is no limit.
	MaxSignaturesPerDay int
	MaxPayloadBytes     int64
}

// Entitlement is a tenant's plan and its validity.
type Entitlement struct {
	Tenant    string
	Plan      Plan
	NotBefore time.Time // zero: no bound
	NotAfter  time.Time // zero: no bound
	Suspended bool
}

// Store holds entitlements.
//
// Contract: Get returns the tenant's entitlement, or an error wrapping
// [ErrNotFound] when it has none; any other error means the store could
// not answer (the checker then falls back on its cache). SignedSince
// counts the DSSE signatures the tenant was given since t (the audit
// trail). Both honour ctx.
type Store interface {
	Get(ctx context.Context, tenant string) (*Entitlement, error)
	SignedSince(ctx context.Context, tenant string, t time.Time) (int, error)
}

// Config tunes a Checker; zero values take the defaults.
type Config struct {
	// RefreshInterval is how long an entitlement read from the store is
	// used before asking the store again. Default 30 s.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// CacheTTL is how long the last entitlement read stays usable while
	// the store cannot answer. Default 15 min. Must be at least
	// RefreshInterval.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// StoreTimeout bounds one store query. Default 2 s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// EmergencyBypass, when set, signs without entitlement while the
	// store is unreachable and no cached entitlement is usable, until
	// Until. Every bypassed decision is audited and counted; the alert
	// SignerEntitlementBypassActive fires. Remove it once the store is back.
	EmergencyBypass *Bypass `yaml:"emergency_bypass"`
}

// Bypass is an operator's emergency decision.
type Bypass struct {
	// Until bounds the bypass; at most 72 h after start-up.
	Until time.Time `yaml:"until"`
	// Reason and Ticket are recorded with every bypassed decision.
	Reason string `yaml:"reason"`
	Ticket string `yaml:"ticket"`
}

// MaxBypass is the longest emergency bypass a configuration may declare.
const MaxBypass = 72 * time.Hour

// Validate fills defaults and checks c at time now.
func (c *Config) Validate(now time.Time) error {
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 30 * time.Second
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = 15 * time.Minute
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 2 * time.Second
	}
	var errs []error
	if c.CacheTTL < c.RefreshInterval {
		errs = append(errs, errors.New("entitlements: cache_ttl is shorter than refresh_interval"))
	}
	if b := c.EmergencyBypass; b != nil {
		if b.Reason == "" || b.Ticket == "" {
			errs = append(errs, errors.New("entitlements: emergency_bypass needs a reason and a ticket"))
		}
		if b.Until.After(now.Add(MaxBypass)) {
			errs = append(errs, fmt.Errorf("entitlements: emergency_bypass until %s is more than %s away", b.Until.Format(time.RFC3339), MaxBypass))
		}
	}
	return errors.Join(errs...)
}

// Request is what is about to be signed.
type Request struct {
	Tenant        string
	PredicateType string // canonical URI; "" for non-statement payloads
	Key           string
	PayloadBytes  int
}

// Grant states.
const (
	Live     = "live"   // read from the store within RefreshInterval
	Cached   = "cached" // the store failed; the last known entitlement is younger than CacheTTL
	Bypassed = "bypass" // the store failed, no usable cache, emergency bypass on
)

// Grant is an allowed request.
type Grant struct {
	State string
	Plan  string
	// Detail is a line for the audit trail ("" for a live grant).
	Detail string
}

// Outcome is reported to Observe for every decision: State of a grant,
// or the refusal ("denied", "quota", "unavailable").
type Outcome struct {
	Tenant string
	Result string
	// StoreErr is the store failure behind a cached, bypass or
	// unavailable outcome.
	StoreErr error
}

// Checker decides; see the package documentation.
type Checker struct {
	store     Store
	cfg       Config
	now       func() time.Time
	canonical func(string) (string, bool)
	observe   func(Outcome)

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]*cached
	usage  map[string]*usage
}

type cached struct {
	e       *Entitlement // nil: the store said ErrNotFound
	fetched time.Time
	// failed is when the store last failed for the tenant after fetched;
	// it is not asked again before RefreshInterval has passed since.
	failed time.Time
	err    error
}

type usage struct {
	day   time.Time // UTC midnight
	count int
}

// New returns a Checker. canonical resolves predicate type names of plans
// (nil: names are compared as they are); observe, if not nil, is told of
// every decision (metrics); now nil is time.Now.
func New(store Store, cfg Config, now func() time.Time, canonical func(string) (string, bool), observe func(Outcome)) *Checker {
	if now == nil {
		now = time.Now
	}
	if observe == nil {
		observe = func(Outcome) {}
	}
	return &Checker{store: store, cfg: cfg, now: now, canonical: canonical, observe: observe,
		cache: map[string]*cached{}, usage: map[string]*usage{}}
}

// Check decides req. Refusals wrap ErrDenied, ErrQuota, ErrTooLarge or
// ErrUnavailable.
func (c *Checker) Check(ctx context.Context, req Request) (Grant, error) {
	g, err := c.check(ctx, req)
	o := Outcome{Tenant: req.Tenant, Result: g.State}
	var se *storeError
	if errors.As(err, &se) || errors.As(g.err, &se) {
		o.StoreErr = se.err
	}
	switch {
	case errors.Is(err, ErrDenied):
		o.Result = "denied"
	case errors.Is(err, ErrQuota), errors.Is(err, ErrTooLarge):
		o.Result = "quota"
	case errors.Is(err, ErrUnavailable):
		o.Result = "unavailable"
	}
	c.observe(o)
	return g.Grant, err
}

type grant struct {
	Grant
	err error // the store failure behind a cached or bypass grant
}

type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }

func (c *Checker) check(ctx context.Context, req Request) (grant, error) {
	now := c.now()
	e, state, age, serr := c.lookup(ctx, req.Tenant, now)
	switch {
	case state == "" && c.bypassOn(now):
		b := c.cfg.EmergencyBypass
		return grant{Grant: Grant{State: Bypassed, Detail: fmt.Sprintf("entitlement emergency bypass until %s (ticket %s: %s); store: %v",
			b.Until.UTC().Format(time.RFC3339), b.Ticket, b.Reason, serr)}, err: &storeError{serr}}, nil
	case state == "":
		return grant{}, fmt.Errorf("%w: %w", ErrUnavailable, &storeError{serr})
	case e == nil:
		return grant{}, fmt.Errorf("%w: tenant %q has no entitlement", ErrDenied, req.Tenant)
	}
	if err := allowed(e, req, now, c.canonical); err != nil {
		return grant{}, err
	}
	if err := c.takeQuota(ctx, e, req.Tenant, now); err != nil {
		return grant{}, err
	}
	g := grant{Grant: Grant{State: state, Plan: e.Plan.Name}}
	if state == Cached {
		g.Detail = fmt.Sprintf("entitlement from cache (plan %s, %s old); store: %v", e.Plan.Name, age.Round(time.Second), serr)
		g.err = &storeError{serr}
	}
	return g, nil
}

// lookup returns the tenant's entitlement (nil: none) and its state, or
// state "" when there is no usable answer (serr says why).
func (c *Checker) lookup(ctx context.Context, tenant string, now time.Time) (e *Entitlement, state string, age time.Duration, serr error) {
	c.mu.Lock()
	ce := c.cache[tenant]
	c.mu.Unlock()
	if ce != nil && now.Sub(ce.fetched) < c.cfg.RefreshInterval {
		return ce.e, Live, now.Sub(ce.fetched), nil
	}
	var err error
	if ce != nil && !ce.failed.IsZero() && now.Sub(ce.failed) < c.cfg.RefreshInterval {
		err = ce.err // the store failed a moment ago: do not wait on it again
	} else {
		// One store query per tenant at a time; concurrent requests share it.
		v, qerr, _ := c.flight.Do(tenant, func() (any, error) {
			qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.StoreTimeout)
			defer cancel()
			return c.store.Get(qctx, tenant)
		})
		got, _ := v.(*Entitlement)
		err = qerr
		if err == nil || errors.Is(err, ErrNotFound) {
			if err != nil {
				got = nil
			}
			c.mu.Lock()
			c.cache[tenant] = &cached{e: got, fetched: now}
			c.mu.Unlock()
			return got, Live, 0, nil
		}
		if ce != nil {
			c.mu.Lock()
			c.cache[tenant] = &cached{e: ce.e, fetched: ce.fetched, failed: now, err: err}
			c.mu.Unlock()
		}
	}
	if ce != nil && now.Sub(ce.fetched) < c.cfg.CacheTTL {
		return ce.e, Cached, now.Sub(ce.fetched), err
	}
	return nil, "", 0, err
}

func (c *Checker) bypassOn(now time.Time) bool {
	b := c.cfg.EmergencyBypass
	return b != nil && now.Before(b.Until)
}

// BypassConfigured reports the configured emergency bypass window end, if
// any (for a gauge).
func (c *Checker) BypassConfigured() (time.Time, bool) {
	if b := c.cfg.EmergencyBypass; b != nil {
		return b.Until, true
	}
	return time.Time{}, false
}

func allowed(e *Entitlement, req Request, now time.Time, canonical func(string) (string, bool)) error {
	switch {
	case e.Suspended:
		return fmt.Errorf("%w: the entitlement of %q is suspended", ErrDenied, req.Tenant)
	case !e.NotBefore.IsZero() && now.Before(e.NotBefore):
		return fmt.Errorf("%w: the entitlement of %q starts at %s", ErrDenied, req.Tenant, e.NotBefore.UTC().Format(time.RFC3339))
	case !e.NotAfter.IsZero() && !now.Before(e.NotAfter):
		return fmt.Errorf("%w: the entitlement of %q ended at %s", ErrDenied, req.Tenant, e.NotAfter.UTC().Format(time.RFC3339))
	}
	p := e.Plan
	if len(p.Keys) > 0 && !slices.Contains(p.Keys, req.Key) {
		return fmt.Errorf("%w: plan %s does not include key %q", ErrDenied, p.Name, req.Key)
	}
	if len(p.PredicateTypes) > 0 && !slices.ContainsFunc(p.PredicateTypes, func(t string) bool {
		if canonical != nil {
			if u, ok := canonical(t); ok {
				t = u
			}
		}
		return t == req.PredicateType
	}) {
		what := req.PredicateType
		if what == "" {
			what = "payloads other than in-toto statements"
		}
		return fmt.Errorf("%w: plan %s does not include %s", ErrDenied, p.Name, what)
	}
	if p.MaxPayloadBytes > 0 && int64(req.PayloadBytes) > p.MaxPayloadBytes {
		return fmt.Errorf("%w: payload of %d bytes exceeds plan %s's %d", ErrTooLarge, req.PayloadBytes, p.Name, p.MaxPayloadBytes)
	}
	return nil
}

// takeQuota counts one signature against the tenant's daily quota.
func (c *Checker) takeQuota(ctx context.Context, e *Entitlement, tenant string, now time.Time) error {
	limit := e.Plan.MaxSignaturesPerDay
	if limit <= 0 {
		return nil
	}
	day := now.UTC().Truncate(24 * time.Hour)
	c.mu.Lock()
	u := c.usage[tenant]
	c.mu.Unlock()
	if u == nil || !u.day.Equal(day) {
		qctx, cancel := context.WithTimeout(ctx, c.cfg.StoreTimeout)
		n, err := c.store.SignedSince(qctx, tenant, day)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: counting today's signatures: %w", ErrUnavailable, &storeError{err})
		}
		c.mu.Lock()
		if u = c.usage[tenant]; u == nil || !u.day.Equal(day) {
			u = &usage{day: day, count: n}
			c.usage[tenant] = u
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if u.count >= limit {
		return fmt.Errorf("%w: plan %s allows %d signatures a day (UTC), %d given", ErrQuota, e.Plan.Name, limit, u.count)
	}
	u.count++
	return nil
}
