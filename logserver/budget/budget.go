// Package budget holds the per-tenant submission budgets of the write
// endpoints (the seed's Rekor budget policy) and their state in MySQL.
//
// Two tiers: [TierGraph] (ordinary submissions) has an hourly limit and a
// burst limit, [TierEdge] (large bundles) a daily limit and no burst. All
// windows are fixed and aligned on UTC: the hour, the burst window (which
// divides the hour: 10m windows start at :00, :10, …) and the UTC day.
//
// A graph submission is admitted when the tenant's count in the current
// hour is below HourlyLimit AND its count in the current burst window is
// below BurstCap (BurstLimit scaled from an hourly rate to the window:
// BurstLimit*BurstWindow/1h, rounded down, at least 1; 200/h over 10m is
// 33). An edge submission is admitted when the tenant's count in the
// current UTC day is below EdgeDailyLimit. Fixed windows can admit up to
// twice a limit across a boundary (a full window just before it, another
// just after).
//
// Contract: [Store.Take] charges one submission atomically, also across
// processes sharing the database: one conditional UPDATE per take, whose
// WHERE clause holds the window rollover and the limit check, so no
// number of concurrent takers, in any number of replicas, admits more than
// the limit of a window. [Store.Refund] gives one back (in the current
// window, never below 0) for a charged submission that was not logged.
// Errors of the database are returned as errors, never as an admission.
package budget

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// The tiers.
const (
	TierGraph = "graph"
	TierEdge  = "edge"
)

// Unlimited as a limit turns accounting of that tier off.
const Unlimited = -1

// Limits are one tenant's budget.
type Limits struct {
	// HourlyLimit caps graph submissions per UTC hour.
	HourlyLimit int64
	// BurstLimit is the burst rate of graph submissions per hour, measured
	// over BurstWindow (see BurstCap).
	BurstLimit  int64
	BurstWindow time.Duration
	// EdgeDailyLimit caps edge submissions per UTC day.
	EdgeDailyLimit int64
}

// BurstCap is the most graph submissions admitted in one burst window:
// BurstLimit*BurstWindow/1h, rounded down, at least 1; Unlimited for an
// unlimited BurstLimit.
func (l Limits) BurstCap() int64 {
	if l.BurstLimit == Unlimited {
		return Unlimited
	}
	c := l.BurstLimit * int64(l.BurstWindow) / int64(time.Hour)
	return max(c, 1)
}

// Policy is the budgets of every tenant.
type Policy struct {
	// Default applies to tenants not in Tenants.
	Default Limits
	Tenants map[string]Limits
}

// For returns tenant's limits.
func (p Policy) For(tenant string) Limits {
	if l, ok := p.Tenants[tenant]; ok {
		return l
	}
	return p.Default
}

// Decision is the outcome of a Take.
type Decision struct {
	// Admitted is true when the submission was charged and may proceed.
	Admitted bool
	// RetryAfter is, when refused, how long until the exhausted window
	// resets.
	RetryAfter time.Duration
	// Remaining is what is left in the tier's main window (the hour for
	// graph, the UTC day for edge) after this take; Unlimited for an
	// unlimited tier.
	Remaining int64
	// Limit and Window name the limit that refused (or, when admitted, the
	// main window's): Window is "hourly", "burst" or "daily".
	Limit  int64
	Window string
	// Reset is when the window of Limit ends.
	Reset time.Time
}

// Options tune a Store.
type Options struct {
	// Now is the clock (tests inject one). Default time.Now.
	Now func() time.Time
}

// Store keeps budget state in the budget_counters table
// (sql/logserver/009_budgets.sql).
type Store struct {
	db     *sql.DB
	policy Policy
	now    func() time.Time
}

// New returns a store over db (migrations applied) enforcing p.
func New(db *sql.DB, p Policy, o Options) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{db: db, policy: p, now: o.Now}
}

// Policy returns the policy the store enforces.
func (s *Store) Policy() Policy { return s.policy }

// windows is one tier's pair of windows at a time: the main one (hour or
// day) and the burst one (for edge, the same as the main one).
type windows struct {
	mainStart, mainEnd   time.Time
	burstStart, burstEnd time.Time
	mainLimit, burstCap  int64
	mainName             string
}

func (s *Store) windows(tenant, tier string) (windows, error) {
	l := s.policy.For(tenant)
	now := s.now().UTC().Truncate(time.Second)
	switch tier {
	case TierGraph:
		h := now.Truncate(time.Hour)
		b := now.Truncate(l.BurstWindow)
		w := windows{mainStart: h, mainEnd: h.Add(time.Hour), burstStart: b, burstEnd: b.Add(l.BurstWindow),
			mainLimit: l.HourlyLimit, burstCap: l.BurstCap(), mainName: "hourly"}
		if w.burstCap == Unlimited {
			w.burstCap = math.MaxInt64
		}
		return w, nil
	case TierEdge:
		d := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		e := d.AddDate(0, 0, 1)
		// No burst: the burst window is the day, with no cap of its own.
		return windows{mainStart: d, mainEnd: e, burstStart: d, burstEnd: e,
			mainLimit: l.EdgeDailyLimit, burstCap: math.MaxInt64, mainName: "daily"}, nil
	}
	return windows{}, fmt.Errorf("budget: unknown tier %q", tier)
}

// take is the one admission statement. A stored window start at or after
// the current one is current (a replica whose clock lags never resets a
// newer window); an older one counts as 0 and is moved to the current
// window. The count assignments come before the start assignments, so
// they read the old starts (MySQL and MariaDB assign left to right).
// LAST_INSERT_ID(expr) hands the new main count back in the same round
// trip. Rows affected is 1 exactly when the submission was admitted.
const take = `UPDATE budget_counters SET
  window_count = LAST_INSERT_ID(IF(window_start >= ?, window_count, 0) + 1),
  burst_count  = IF(burst_start >= ?, burst_count, 0) + 1,
  window_start = GREATEST(window_start, ?),
  burst_start  = GREATEST(burst_start, ?)
WHERE tenant = ? AND tier = ?
  AND IF(window_start >= ?, window_count, 0) < ?
  AND IF(burst_start >= ?, burst_count, 0) < ?`

// Take charges one submission of tier to tenant, if its budget allows.
func (s *Store) Take(ctx context.Context, tenant, tier string) (Decision, error) {
	w, err := s.windows(tenant, tier)
	if err != nil {
		return Decision{}, err
	}
	if w.mainLimit == Unlimited && w.burstCap == math.MaxInt64 {
		return Decision{Admitted: true, Remaining: Unlimited, Limit: Unlimited, Window: w.mainName, Reset: w.mainEnd}, nil
	}
	mainLimit := w.mainLimit
	if mainLimit == Unlimited {
		mainLimit = math.MaxInt64
	}
	for attempt := 0; ; attempt++ {
		res, err := s.db.ExecContext(ctx, take, w.mainStart, w.burstStart, w.mainStart, w.burstStart,
			tenant, tier, w.mainStart, mainLimit, w.burstStart, w.burstCap)
		if err != nil {
			return Decision{}, fmt.Errorf("budget take: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return Decision{}, fmt.Errorf("budget take: %w", err)
		}
		if n == 1 {
			used, err := res.LastInsertId()
			if err != nil {
				return Decision{}, fmt.Errorf("budget take: %w", err)
			}
			d := Decision{Admitted: true, Remaining: max(w.mainLimit-used, 0), Limit: w.mainLimit, Window: w.mainName, Reset: w.mainEnd}
			if w.mainLimit == Unlimited {
				d.Remaining = Unlimited
			}
			return d, nil
		}
		if attempt > 0 {
			break
		}
		// No row was updated: the tenant's first submission of the tier
		// (create its row, then take again), or over budget.
		res, err = s.db.ExecContext(ctx, `INSERT IGNORE INTO budget_counters
  (tenant, tier, window_start, window_count, burst_start, burst_count) VALUES (?, ?, ?, 0, ?, 0)`,
			tenant, tier, w.mainStart, w.burstStart)
		if err != nil {
			return Decision{}, fmt.Errorf("budget row: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return Decision{}, fmt.Errorf("budget row: %w", err)
		}
		if n == 0 {
			break // the row existed: over budget
		}
	}
	return s.refused(ctx, tenant, tier, w)
}

// refused explains a refusal: which window is exhausted and when it
// resets (read after the fact; a window may have rolled over meanwhile,
// which only shortens Retry-After to at least 1s).
func (s *Store) refused(ctx context.Context, tenant, tier string, w windows) (Decision, error) {
	var mainCount, burstCount int64
	err := s.db.QueryRowContext(ctx, `SELECT IF(window_start >= ?, window_count, 0), IF(burst_start >= ?, burst_count, 0)
FROM budget_counters WHERE tenant = ? AND tier = ?`, w.mainStart, w.burstStart, tenant, tier).Scan(&mainCount, &burstCount)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Decision{}, fmt.Errorf("budget state: %w", err)
	}
	d := Decision{Remaining: max(w.mainLimit-mainCount, 0), Limit: w.mainLimit, Window: w.mainName, Reset: w.mainEnd}
	if w.mainLimit == Unlimited {
		d.Remaining = Unlimited
	}
	if (w.mainLimit == Unlimited || mainCount < w.mainLimit) && tier == TierGraph {
		d.Limit, d.Window, d.Reset = w.burstCap, "burst", w.burstEnd
	}
	d.RetryAfter = max(d.Reset.Sub(s.now()), time.Second)
	return d, nil
}

// Refund gives back one submission of tier charged to tenant in the
// current window (a submission admitted in a window that has ended since
// is not refunded). Counts never go below 0.
func (s *Store) Refund(ctx context.Context, tenant, tier string) error {
	w, err := s.windows(tenant, tier)
	if err != nil {
		return err
	}
	if w.mainLimit == Unlimited && w.burstCap == math.MaxInt64 {
		return nil
	}
	_, err = s.db.ExecContext(ctx, `UPDATE budget_counters SET
  burst_count = IF(burst_start >= ? AND burst_count > 0, burst_count - 1, burst_count),
  window_count = window_count - 1
WHERE tenant = ? AND tier = ? AND window_start >= ? AND window_count > 0`, w.burstStart, tenant, tier, w.mainStart)
	if err != nil {
		return fmt.Errorf("budget refund: %w", err)
	}
	return nil
}

// Remaining is what tenant has left of its graph budget in the current
// hour (Unlimited for an unlimited one), read without charging.
func (s *Store) Remaining(ctx context.Context, tenant string) (int64, error) {
	w, err := s.windows(tenant, TierGraph)
	if err != nil || w.mainLimit == Unlimited {
		return Unlimited, err
	}
	var used int64
	err = s.db.QueryRowContext(ctx, `SELECT IF(window_start >= ?, window_count, 0) FROM budget_counters WHERE tenant = ? AND tier = ?`,
		w.mainStart, tenant, TierGraph).Scan(&used)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("budget state: %w", err)
	}
	return max(w.mainLimit-used, 0), nil
}
