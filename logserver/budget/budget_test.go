package budget_test

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/logserver/budget"
	sqlschema "github.com/stellaops/tlog/sql"
	"github.com/stellaops/tlog/testing/stack"
)

// clock is an injectable clock shared by the stores of a test.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock    { c := &clock{}; c.set(t); return c }
func openPool(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(16)
	t.Cleanup(func() { db.Close() })
	return db
}

var policy = budget.Policy{
	Default: budget.Limits{HourlyLimit: 100, BurstLimit: 200, BurstWindow: 10 * time.Minute, EdgeDailyLimit: 50},
	Tenants: map[string]budget.Limits{
		// Burst wide enough that the hourly limit binds.
		"hourly":    {HourlyLimit: 100, BurstLimit: 1000, BurstWindow: 10 * time.Minute, EdgeDailyLimit: 50},
		"unlimited": {HourlyLimit: budget.Unlimited, BurstLimit: budget.Unlimited, BurstWindow: time.Hour, EdgeDailyLimit: budget.Unlimited},
		// No hourly limit, but a burst one: 60/h over 10m, 10 per window.
		"burst-only": {HourlyLimit: budget.Unlimited, BurstLimit: 60, BurstWindow: 10 * time.Minute, EdgeDailyLimit: budget.Unlimited},
	},
}

// hammer takes tier for tenant attempts times from 32 goroutines spread over
// the stores and returns how many were admitted.
func hammer(t *testing.T, stores []*budget.Store, tenant, tier string, attempts int) int {
	t.Helper()
	var admitted, next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[g%len(stores)]
			for next.Add(1) <= int64(attempts) {
				d, err := s.Take(context.Background(), tenant, tier)
				if err != nil {
					errs <- err
					return
				}
				if d.Admitted {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return int(admitted.Load())
}

func TestStoreOnMariaDB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB")
	}
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "budgets")
	a, b := openPool(t, dsn), openPool(t, dsn) // two independent pools: two replicas
	ctx := context.Background()
	if err := migrate.Apply(ctx, a, sqlschema.FS, "logserver", "logserver"); err != nil {
		t.Fatal(err)
	}
	// 12:03:00 UTC: the 10-minute burst window is 12:00-12:10.
	clk := newClock(time.Date(2026, 3, 4, 12, 3, 0, 0, time.UTC))
	stores := []*budget.Store{budget.New(a, policy, budget.Options{Now: clk.now}), budget.New(b, policy, budget.Options{Now: clk.now})}

	t.Run("hourly", func(t *testing.T) {
		if got := hammer(t, stores, "hourly", budget.TierGraph, 500); got != 100 {
			t.Fatalf("admitted %d of 500, want exactly the hourly limit 100", got)
		}
		d, err := stores[0].Take(ctx, "hourly", budget.TierGraph)
		if err != nil {
			t.Fatal(err)
		}
		if d.Admitted || d.Window != "hourly" || d.Limit != 100 || d.Remaining != 0 || d.RetryAfter != 57*time.Minute {
			t.Fatalf("over the hourly limit: %+v", d)
		}
	})

	t.Run("burst", func(t *testing.T) {
		if got := hammer(t, stores, "bursty", budget.TierGraph, 500); got != 33 {
			t.Fatalf("admitted %d of 500, want the burst cap 200*10m/1h = 33", got)
		}
		d, err := stores[1].Take(ctx, "bursty", budget.TierGraph)
		if err != nil {
			t.Fatal(err)
		}
		if d.Admitted || d.Window != "burst" || d.Limit != 33 || d.Remaining != 67 || d.RetryAfter != 7*time.Minute {
			t.Fatalf("over the burst limit: %+v", d)
		}
	})

	t.Run("edge", func(t *testing.T) {
		if got := hammer(t, stores, "bundler", budget.TierEdge, 500); got != 50 {
			t.Fatalf("admitted %d of 500, want exactly the daily limit 50", got)
		}
		d, err := stores[0].Take(ctx, "bundler", budget.TierEdge)
		if err != nil {
			t.Fatal(err)
		}
		if d.Admitted || d.Window != "daily" || d.Limit != 50 || d.RetryAfter != 11*time.Hour+57*time.Minute {
			t.Fatalf("over the daily limit: %+v", d)
		}
		// Edge and graph are separate budgets.
		if d, err := stores[0].Take(ctx, "bundler", budget.TierGraph); err != nil || !d.Admitted || d.Remaining != 99 {
			t.Fatalf("graph after edge exhausted: %+v %v", d, err)
		}
	})

	t.Run("rollover", func(t *testing.T) {
		// The next burst window (12:10) admits another 33 of "bursty".
		clk.set(time.Date(2026, 3, 4, 12, 10, 0, 0, time.UTC))
		if got := hammer(t, stores, "bursty", budget.TierGraph, 100); got != 33 {
			t.Fatalf("second burst window admitted %d, want 33", got)
		}
		// 12:20, 12:30: the hour's limit (100) binds after 34 more.
		clk.set(time.Date(2026, 3, 4, 12, 20, 0, 0, time.UTC))
		if got := hammer(t, stores, "bursty", budget.TierGraph, 100); got != 33 {
			t.Fatalf("third burst window admitted %d, want 33", got)
		}
		clk.set(time.Date(2026, 3, 4, 12, 30, 0, 0, time.UTC))
		if got := hammer(t, stores, "bursty", budget.TierGraph, 100); got != 1 {
			t.Fatalf("fourth burst window admitted %d, want 1 (hourly limit 100 reached)", got)
		}
		// A replica whose clock lags (12:05) does not reset the newer window.
		lag := budget.New(b, policy, budget.Options{Now: func() time.Time { return time.Date(2026, 3, 4, 12, 5, 0, 0, time.UTC) }})
		if d, err := lag.Take(ctx, "bursty", budget.TierGraph); err != nil || d.Admitted {
			t.Fatalf("lagging clock: %+v %v", d, err)
		}
		// The next hour starts afresh; so does the next day for edge.
		clk.set(time.Date(2026, 3, 4, 13, 0, 0, 0, time.UTC))
		if got := hammer(t, stores, "hourly", budget.TierGraph, 200); got != 100 {
			t.Fatalf("next hour admitted %d, want 100", got)
		}
		if got := hammer(t, stores, "bundler", budget.TierEdge, 100); got != 0 {
			t.Fatalf("same day admitted %d edge bundles, want 0", got)
		}
		clk.set(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC))
		if got := hammer(t, stores, "bundler", budget.TierEdge, 100); got != 50 {
			t.Fatalf("next day admitted %d edge bundles, want 50", got)
		}
	})

	t.Run("refund", func(t *testing.T) {
		clk.set(time.Date(2026, 3, 5, 9, 0, 0, 0, time.UTC))
		// Refunds before any take, or beyond the takes, never go below 0.
		for range 3 {
			if err := stores[0].Refund(ctx, "refunded", budget.TierGraph); err != nil {
				t.Fatal(err)
			}
		}
		if got := hammer(t, stores, "refunded", budget.TierGraph, 100); got != 33 {
			t.Fatalf("admitted %d, want 33 (refunds before takes must not raise the budget)", got)
		}
		if err := stores[1].Refund(ctx, "refunded", budget.TierGraph); err != nil {
			t.Fatal(err)
		}
		d, err := stores[0].Take(ctx, "refunded", budget.TierGraph)
		if err != nil || !d.Admitted || d.Remaining != 67 {
			t.Fatalf("after one refund: %+v %v", d, err)
		}
		if d, err := stores[0].Take(ctx, "refunded", budget.TierGraph); err != nil || d.Admitted {
			t.Fatalf("refund gave back more than one: %+v %v", d, err)
		}
		for range 40 {
			if err := stores[0].Refund(ctx, "refunded", budget.TierGraph); err != nil {
				t.Fatal(err)
			}
		}
		var window, burst int64
		if err := a.QueryRow(`SELECT window_count, burst_count FROM budget_counters WHERE tenant = 'refunded' AND tier = 'graph'`).Scan(&window, &burst); err != nil {
			t.Fatal(err)
		}
		if window != 0 || burst != 0 {
			t.Fatalf("counts after refunding more than taken: %d, %d; want 0, 0", window, burst)
		}
	})

	t.Run("unlimited", func(t *testing.T) {
		if got := hammer(t, stores, "unlimited", budget.TierGraph, 300); got != 300 {
			t.Fatalf("unlimited admitted %d of 300", got)
		}
		var n int
		if err := a.QueryRow(`SELECT COUNT(*) FROM budget_counters WHERE tenant = 'unlimited'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("unlimited tenant has %d rows (%v), want none", n, err)
		}
		if got := hammer(t, stores, "unlimited", budget.TierEdge, 100); got != 100 {
			t.Fatalf("unlimited edge admitted %d of 100", got)
		}
		if got := hammer(t, stores, "burst-only", budget.TierGraph, 100); got != 10 {
			t.Fatalf("burst-only admitted %d of 100, want the burst cap 10", got)
		}
		d, err := stores[0].Take(ctx, "burst-only", budget.TierGraph)
		if err != nil || d.Admitted || d.Window != "burst" || d.Remaining != budget.Unlimited {
			t.Fatalf("burst-only over its cap: %+v %v", d, err)
		}
	})

	t.Run("database down", func(t *testing.T) {
		closed := openPool(t, dsn)
		closed.Close()
		s := budget.New(closed, policy, budget.Options{Now: clk.now})
		if d, err := s.Take(ctx, "hourly", budget.TierGraph); err == nil || d.Admitted {
			t.Fatalf("take on a closed pool: %+v %v, want an error and no admission", d, err)
		}
		if _, err := stores[0].Take(ctx, "hourly", "bulk"); err == nil {
			t.Fatal("unknown tier accepted")
		}
	})
}
