package entitlement

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore injects outages; the real store is tested against MariaDB in
// signer/server (entitlement_test.go).
type fakeStore struct {
	mu     sync.Mutex
	ents   map[string]*Entitlement
	down   bool
	signed int
	gets   int
}

var errDown = errors.New("dial tcp: connection refused")

func (f *fakeStore) Get(_ context.Context, tenant string) (*Entitlement, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.down {
		return nil, errDown
	}
	if e := f.ents[tenant]; e != nil {
		return e, nil
	}
	return nil, ErrNotFound
}

func (f *fakeStore) SignedSince(context.Context, string, time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return 0, errDown
	}
	return f.signed, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T, cfg Config) (*fakeStore, *clock, *Checker, *[]Outcome) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	if err := cfg.Validate(clk.t); err != nil {
		t.Fatal(err)
	}
	fs := &fakeStore{ents: map[string]*Entitlement{
		"acme": {Tenant: "acme", Plan: Plan{Name: "gold", PredicateTypes: []string{"alias"}, Keys: []string{"k1"}, MaxSignaturesPerDay: 3, MaxPayloadBytes: 100}},
	}}
	var outs []Outcome
	canon := func(s string) (string, bool) {
		if s == "alias" {
			return "https://x/v1", true
		}
		return s, false
	}
	return fs, clk, New(fs, cfg, clk.now, canon, func(o Outcome) { outs = append(outs, o) }), &outs
}

var ok = Request{Tenant: "acme", PredicateType: "https://x/v1", Key: "k1", PayloadBytes: 10}

func TestPlanRules(t *testing.T) {
	_, _, c, _ := setup(t, Config{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  Request
		want error
	}{
		{"allowed", ok, nil},
		{"other key", Request{Tenant: "acme", PredicateType: "https://x/v1", Key: "k2"}, ErrDenied},
		{"other predicate type", Request{Tenant: "acme", PredicateType: "https://y/v1", Key: "k1"}, ErrDenied},
		{"raw payload", Request{Tenant: "acme", Key: "k1"}, ErrDenied},
		{"payload too large", Request{Tenant: "acme", PredicateType: "https://x/v1", Key: "k1", PayloadBytes: 101}, ErrTooLarge},
		{"no entitlement", Request{Tenant: "nobody", Key: "k1"}, ErrDenied},
	} {
		g, err := c.Check(ctx, tc.req)
		if !errors.Is(err, tc.want) || (err == nil && (g.State != Live || g.Plan != "gold")) {
			t.Errorf("%s: %+v %v, want %v", tc.name, g, err, tc.want)
		}
	}
}

func TestValidity(t *testing.T) {
	fs, clk, c, _ := setup(t, Config{})
	fs.ents["acme"].NotAfter = clk.t.Add(time.Hour)
	fs.ents["acme"].NotBefore = clk.t.Add(-time.Hour)
	if _, err := c.Check(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(2 * time.Hour)
	if _, err := c.Check(context.Background(), ok); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("expired: %v", err)
	}
	fs.ents["acme"].NotAfter = time.Time{}
	fs.ents["acme"].Suspended = true
	clk.t = clk.t.Add(time.Minute)
	if _, err := c.Check(context.Background(), ok); !errors.Is(err, ErrDenied) {
		t.Fatalf("suspended: %v", err)
	}
}

func TestQuotaSeededAndDaily(t *testing.T) {
	fs, clk, c, _ := setup(t, Config{})
	fs.signed = 2 // two signatures already in today's audit trail
	ctx := context.Background()
	if _, err := c.Check(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, ok); !errors.Is(err, ErrQuota) {
		t.Fatalf("fourth signature of the day: %v", err)
	}
	clk.t = clk.t.Add(24 * time.Hour)
	fs.signed = 0
	for i := range 3 {
		if _, err := c.Check(ctx, ok); err != nil {
			t.Fatalf("next day, signature %d: %v", i, err)
		}
	}
	if _, err := c.Check(ctx, ok); !errors.Is(err, ErrQuota) {
		t.Fatalf("quota not enforced on the next day: %v", err)
	}
}

func TestCacheRefreshAndExpiry(t *testing.T) {
	fs, clk, c, outs := setup(t, Config{RefreshInterval: 30 * time.Second, CacheTTL: 10 * time.Minute})
	fs.ents["acme"].Plan.MaxSignaturesPerDay = 0
	ctx := context.Background()
	if g, err := c.Check(ctx, ok); err != nil || g.State != Live {
		t.Fatal(g, err)
	}
	clk.t = clk.t.Add(10 * time.Second)
	c.Check(ctx, ok)
	if fs.gets != 1 {
		t.Fatalf("store asked %d times within the refresh interval", fs.gets)
	}
	fs.down = true
	clk.t = clk.t.Add(5 * time.Minute)
	g, err := c.Check(ctx, ok)
	if err != nil || g.State != Cached || !strings.Contains(g.Detail, "from cache") || !strings.Contains(g.Detail, "connection refused") {
		t.Fatalf("store down, cache young: %+v %v", g, err)
	}
	clk.t = clk.t.Add(5*time.Minute + time.Second) // 10m11s after the last read
	if _, err := c.Check(ctx, ok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cache expired: %v", err)
	}
	last := (*outs)[len(*outs)-1]
	if last.Result != "unavailable" || !errors.Is(last.StoreErr, errDown) {
		t.Fatalf("outcome %+v", last)
	}
	// Right after a failure the store is not asked again (no request waits
	// on a dead store more than once per refresh interval).
	fs.down = false
	gets := fs.gets
	if _, err := c.Check(ctx, ok); !errors.Is(err, ErrUnavailable) || fs.gets != gets {
		t.Fatalf("store asked again during the back-off: %v, %d → %d queries", err, gets, fs.gets)
	}
	clk.t = clk.t.Add(30 * time.Second)
	if g, err := c.Check(ctx, ok); err != nil || g.State != Live {
		t.Fatalf("store back: %+v %v", g, err)
	}
}

func TestEmergencyBypass(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cfg := Config{CacheTTL: time.Minute, RefreshInterval: time.Second,
		EmergencyBypass: &Bypass{Until: now.Add(time.Hour), Reason: "store migration", Ticket: "INC-77"}}
	fs, clk, c, outs := setup(t, cfg)
	ctx := context.Background()
	// A denial from a live store is never bypassed.
	if _, err := c.Check(ctx, Request{Tenant: "acme", Key: "k9", PredicateType: "https://x/v1"}); !errors.Is(err, ErrDenied) {
		t.Fatalf("denial: %v", err)
	}
	fs.down = true
	g, err := c.Check(ctx, Request{Tenant: "nobody-cached", Key: "k1"})
	if err != nil || g.State != Bypassed || !strings.Contains(g.Detail, "INC-77") || !strings.Contains(g.Detail, "store migration") {
		t.Fatalf("bypass: %+v %v", g, err)
	}
	if o := (*outs)[len(*outs)-1]; o.Result != Bypassed || o.StoreErr == nil {
		t.Fatalf("outcome %+v", o)
	}
	clk.t = clk.t.Add(time.Hour)
	if _, err := c.Check(ctx, Request{Tenant: "nobody-cached", Key: "k1"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bypass past its end: %v", err)
	}
	for _, bad := range []Config{
		{EmergencyBypass: &Bypass{Until: now.Add(time.Hour), Reason: "x"}},
		{EmergencyBypass: &Bypass{Until: now.Add(MaxBypass + time.Hour), Reason: "x", Ticket: "y"}},
		{CacheTTL: time.Second, RefreshInterval: time.Minute},
	} {
		if err := bad.Validate(now); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}
