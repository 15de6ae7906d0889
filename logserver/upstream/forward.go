package upstream

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/internal/retry"
	"github.com/stellaops/tlog/logserver/store"
)

// Budget charges an upstream submission to a tenant's submission budget
// (the budgets of package logserver/budget): admitted false means "not
// now, retry after retryAfter". A nil Budget admits everything.
type Budget interface {
	Take(ctx context.Context, tenant, tier string) (admitted bool, retryAfter time.Duration, err error)
}

// Entries finds entries of the local logs by leaf hash (store.Store).
type Entries interface {
	EntryByHash(ctx context.Context, treeID int64, leafHash []byte) (store.Entry, error)
}

// Log is one local log and its upstream.
type Log struct {
	API API
	// URL is the upstream's base URL.
	URL string
	// Key verifies the upstream's answers: v1 a PEM public key, v2 a note
	// verifier key.
	Key []byte
	// TreeID returns the local log's tree (0 while it has none).
	TreeID func(ctx context.Context) (int64, error)
}

// Config configures a Replay.
type Config struct {
	DB      *sql.DB
	Entries Entries
	Logs    []Log
	// Timeout bounds one upstream request; PollInterval is the idle wait;
	// Grace is how long a row whose local write never answered waits for
	// its entry (see the package contract).
	Timeout, PollInterval, Grace time.Duration
	Retry                        retry.Policy
	// Tenant and Tier are what the submissions are charged as to Budget.
	Tenant, Tier string
	Budget       Budget
	// MaxOutbox caps the rows waiting per log; Parallel the submissions
	// in flight per log.
	MaxOutbox  int64
	Parallel   int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Replay is the outboxes and forwarders of the configured logs.
type Replay struct {
	cfg     Config
	outbox  map[API]*Outbox
	fwd     []*forwarder
	m       *metrics
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// New builds the replay of cfg's logs. Start runs the forwarders.
func New(cfg Config) (*Replay, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	r := &Replay{cfg: cfg, outbox: map[API]*Outbox{}, m: newMetrics(cfg.Registerer)}
	for _, l := range cfg.Logs {
		var sub submitter
		var err error
		switch l.API {
		case V1:
			sub, err = newV1(l.URL, l.Key, cfg.Timeout)
		case V2:
			sub, err = newV2(l.URL, string(l.Key), cfg.Timeout)
		default:
			err = fmt.Errorf("unknown API %q", l.API)
		}
		if err != nil {
			return nil, fmt.Errorf("upstream.%s: %w", l.API, err)
		}
		o := &Outbox{db: cfg.DB, api: l.API, max: cfg.MaxOutbox, wake: make(chan struct{}, 1),
			logger: cfg.Logger, m: r.m}
		r.outbox[l.API] = o
		r.fwd = append(r.fwd, &forwarder{cfg: &r.cfg, log: l, sub: sub, out: o, m: r.m,
			logger: cfg.Logger.With("upstream", l.API, "url", l.URL)})
		for _, g := range []*prometheus.GaugeVec{r.m.pending, r.m.failed, r.m.oldest, r.m.lastSuccess} {
			g.WithLabelValues(string(l.API))
		}
		for _, c := range []*prometheus.CounterVec{r.m.forwarded, r.m.dropped, r.m.full} {
			c.WithLabelValues(string(l.API))
		}
	}
	return r, nil
}

// Outbox is the outbox of the log api, nil if it has no upstream.
func (r *Replay) Outbox(api API) *Outbox { return r.outbox[api] }

// Start runs the forwarders until Close.
func (r *Replay) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, f := range r.fwd {
		r.running.Add(1)
		go func() {
			defer r.running.Done()
			f.run(ctx)
		}()
	}
}

// Close stops the forwarders (rows in flight are retried by the next
// start or another replica once their lease expires).
func (r *Replay) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.running.Wait()
}

// forwarder drains one log's outbox to its upstream.
type forwarder struct {
	cfg      *Config
	log      Log
	sub      submitter
	out      *Outbox
	m        *metrics
	logger   *slog.Logger
	treeID   int64
	failures int // consecutive passes the upstream was unavailable
}

// row is a claimed outbox row.
type row struct {
	id       int64
	leaf     []byte
	body     []byte
	attempts int
}

// outcome is what processing a row came to.
type outcome struct {
	unavailable  *unavailableError // the upstream is not taking entries now
	budgetDenied bool              // the budget said not now…
	budgetWait   time.Duration     // …for this long
}

func (f *forwarder) run(ctx context.Context) {
	for ctx.Err() == nil {
		wait, backoff := f.pass(ctx)
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		wake := f.out.wake
		if backoff {
			wake = nil // a new entry does not cut a backoff short
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// pass does one round: counts, expires, claims and submits. It returns
// how long to wait before the next, and whether that wait is a backoff.
func (f *forwarder) pass(ctx context.Context) (time.Duration, bool) {
	poll := f.cfg.PollInterval
	if err := f.stats(ctx); err != nil {
		f.logger.Warn("upstream replay: outbox statistics", "error", err)
		return poll, false
	}
	if f.treeID == 0 {
		id, err := f.log.TreeID(ctx)
		if err != nil || id == 0 {
			return poll, false
		}
		f.treeID = id
	}
	if err := f.expire(ctx); err != nil {
		f.logger.Warn("upstream replay: expire outbox rows", "error", err)
	}
	rows, owner, err := f.claim(ctx)
	if err != nil {
		f.logger.Warn("upstream replay: claim outbox rows", "error", err)
		return poll, false
	}
	if len(rows) == 0 {
		return poll, false
	}
	results := make([]outcome, len(rows))
	var wg sync.WaitGroup
	for i := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = f.process(ctx, owner, rows[i])
		}()
	}
	wg.Wait()
	var down *unavailableError
	var budgetWait time.Duration
	denied := false
	for _, o := range results {
		if o.unavailable != nil && (down == nil || o.unavailable.retryAfter > down.retryAfter) {
			down = o.unavailable
		}
		if o.budgetDenied {
			denied = true
			budgetWait = max(budgetWait, o.budgetWait)
		}
	}
	switch {
	case down != nil:
		return f.backoff(down), true
	case denied:
		f.failures = 0
		return max(budgetWait, poll), true
	}
	f.failures = 0
	return 0, false
}

// backoff is the wait after an unavailable upstream: the retry policy's,
// or the upstream's Retry-After when longer.
func (f *forwarder) backoff(u *unavailableError) time.Duration {
	f.failures++
	return max(f.cfg.Retry.Delay(f.failures), u.retryAfter)
}

// process submits one claimed row and records the outcome.
func (f *forwarder) process(ctx context.Context, owner []byte, r row) outcome {
	e, err := f.cfg.Entries.EntryByHash(ctx, f.treeID, r.leaf)
	if errors.Is(err, store.ErrNotFound) {
		// Not (yet) in the local log: a write in flight, a duplicate
		// being integrated, or a crash's leftover (expire drops it).
		f.release(ctx, r, f.cfg.PollInterval)
		return outcome{}
	}
	if err != nil {
		f.logger.Warn("upstream replay: local entry", "id", r.id, "error", err)
		f.release(ctx, r, f.cfg.PollInterval)
		return outcome{}
	}
	if rc, ok, err := f.known(ctx, r.leaf); err == nil && ok {
		// Another row of the same entry already reached the upstream.
		f.forwarded(ctx, r, e.Index, rc)
		return outcome{}
	}
	if b := f.cfg.Budget; b != nil {
		ok, wait, err := b.Take(ctx, f.cfg.Tenant, f.cfg.Tier)
		if err != nil {
			f.logger.Warn("upstream replay: budget", "error", err)
			f.release(ctx, r, 0)
			return outcome{budgetDenied: true, budgetWait: f.cfg.PollInterval}
		}
		if !ok {
			f.release(ctx, r, 0)
			return outcome{budgetDenied: true, budgetWait: wait}
		}
	}
	rc, err := f.sub.submit(ctx, r.body, e.Body)
	if err != nil && ctx.Err() != nil {
		// Shutting down: not the upstream's failure.
		f.release(ctx, r, 0)
		return outcome{}
	}
	var un *unavailableError
	var ref *refusedError
	switch {
	case err == nil:
		f.forwarded(ctx, r, e.Index, rc)
		return outcome{}
	case errors.As(err, &un):
		reason := "unavailable"
		if un.status == 429 {
			reason = "rate_limited"
		}
		f.m.failures.WithLabelValues(string(f.log.API), reason).Inc()
		attempts := r.attempts + 1
		wait := max(f.cfg.Retry.Delay(f.failures+1), un.retryAfter)
		failed := f.cfg.Retry.Exhausted(attempts)
		f.record(ctx, r, e.Index, attempts, err.Error(), wait, failed)
		if !failed {
			f.logger.Info("upstream replay: upstream unavailable, entry waits", "leaf", fmt.Sprintf("%x", r.leaf), "attempts", attempts, "error", err, "retry_in", wait)
		}
		return outcome{unavailable: un}
	case errors.As(err, &ref):
		reason := "refused"
		if ref.unverified {
			reason = "unverified"
		}
		f.m.failures.WithLabelValues(string(f.log.API), reason).Inc()
		f.record(ctx, r, e.Index, r.attempts+1, err.Error(), 0, true)
		f.logger.Error("upstream replay: entry failed (kept for the operator)", "leaf", fmt.Sprintf("%x", r.leaf), "error", err)
		return outcome{}
	default:
		// Our side (context cancelled at shutdown): try again later.
		f.release(ctx, r, f.cfg.PollInterval)
		return outcome{}
	}
}

const live = "state IN ('awaiting_local', 'pending')"

// claim leases up to Parallel due rows, oldest first.
func (f *forwarder) claim(ctx context.Context) ([]row, []byte, error) {
	owner := newOwner()
	lease := f.cfg.Timeout*2 + 10*time.Second // a submission and its 409 read-back
	if _, err := f.cfg.DB.ExecContext(ctx, "UPDATE upstream_outbox SET lease_owner = ?, leased_until = NOW(6) + INTERVAL ? MICROSECOND"+
		" WHERE api = ? AND "+live+" AND next_attempt_at <= NOW(6) AND (leased_until IS NULL OR leased_until < NOW(6))"+
		" ORDER BY id LIMIT ?", owner, lease.Microseconds(), string(f.log.API), f.cfg.Parallel); err != nil {
		return nil, nil, err
	}
	rs, err := f.cfg.DB.QueryContext(ctx, "SELECT id, leaf_hash, body, attempts FROM upstream_outbox WHERE lease_owner = ? AND "+live+" ORDER BY id", owner)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.leaf, &r.body, &r.attempts); err != nil {
			return nil, nil, err
		}
		out = append(out, r)
	}
	return out, owner, rs.Err()
}

// settle runs an update of row r, whatever the request's context.
func (f *forwarder) settle(ctx context.Context, q string, args ...any) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := f.cfg.DB.ExecContext(ctx, q, args...); err != nil {
		f.logger.Warn("upstream replay: update outbox row (retried after its lease)", "error", err)
	}
}

// release frees r's lease, due again after wait.
func (f *forwarder) release(ctx context.Context, r row, wait time.Duration) {
	f.settle(ctx, "UPDATE upstream_outbox SET lease_owner = NULL, leased_until = NULL, next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND WHERE id = ? AND "+live,
		wait.Microseconds(), r.id)
}

// forwarded records r as taken by the upstream. The original body is
// dropped (the local log keeps the canonical one).
func (f *forwarder) forwarded(ctx context.Context, r row, localIndex int64, rc Receipt) {
	var uuid any
	if rc.UUID != "" {
		uuid = rc.UUID
	}
	var idx, it any
	if rc.Index >= 0 {
		idx = rc.Index
	}
	if rc.IntegratedTime > 0 {
		it = rc.IntegratedTime
	}
	f.settle(ctx, "UPDATE upstream_outbox SET state = 'forwarded', body = '', attempts = attempts + 1, last_error = NULL,"+
		" lease_owner = NULL, leased_until = NULL, local_index = ?, upstream_index = ?, upstream_uuid = ?, upstream_time = ?, upstream_verified = ?,"+
		" forwarded_at = NOW(6) WHERE id = ? AND "+live, localIndex, idx, uuid, it, rc.Verified, r.id)
	f.m.forwarded.WithLabelValues(string(f.log.API)).Inc()
	f.m.lastSuccess.WithLabelValues(string(f.log.API)).SetToCurrentTime()
	f.logger.Debug("upstream replay: forwarded", "leaf", fmt.Sprintf("%x", r.leaf), "local_index", localIndex, "upstream_index", rc.Index)
}

// record notes a failed attempt at r: due again after wait, or failed.
func (f *forwarder) record(ctx context.Context, r row, localIndex int64, attempts int, msg string, wait time.Duration, failed bool) {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	state := "pending"
	if failed {
		state = "failed"
	}
	f.settle(ctx, "UPDATE upstream_outbox SET state = ?, attempts = ?, last_error = ?, local_index = ?, lease_owner = NULL, leased_until = NULL,"+
		" next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND WHERE id = ? AND "+live, state, attempts, msg, localIndex, wait.Microseconds(), r.id)
}

// known returns the receipt of a forwarded row of the same entry.
func (f *forwarder) known(ctx context.Context, leaf []byte) (Receipt, bool, error) {
	var idx, it sql.NullInt64
	var uuid sql.NullString
	var verified bool
	err := f.cfg.DB.QueryRowContext(ctx, "SELECT upstream_index, upstream_uuid, upstream_time, upstream_verified FROM upstream_outbox"+
		" WHERE api = ? AND leaf_hash = ? AND state = 'forwarded' ORDER BY upstream_verified DESC LIMIT 1", string(f.log.API), leaf).Scan(&idx, &uuid, &it, &verified)
	if errors.Is(err, sql.ErrNoRows) {
		return Receipt{}, false, nil
	}
	if err != nil {
		return Receipt{}, false, err
	}
	rc := Receipt{Index: -1, UUID: uuid.String, IntegratedTime: it.Int64, Verified: verified}
	if idx.Valid {
		rc.Index = idx.Int64
	}
	return rc, true, nil
}

// expire drops rows whose local write never answered and whose entry is
// still not in the local log after the grace.
func (f *forwarder) expire(ctx context.Context) error {
	rs, err := f.cfg.DB.QueryContext(ctx, "SELECT id, leaf_hash FROM upstream_outbox WHERE api = ? AND state = 'awaiting_local'"+
		" AND created_at < NOW(6) - INTERVAL ? MICROSECOND AND (leased_until IS NULL OR leased_until < NOW(6)) LIMIT 100",
		string(f.log.API), f.cfg.Grace.Microseconds())
	if err != nil {
		return err
	}
	var stale []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.leaf); err != nil {
			rs.Close()
			return err
		}
		stale = append(stale, r)
	}
	rs.Close()
	for _, r := range stale {
		_, err := f.cfg.Entries.EntryByHash(ctx, f.treeID, r.leaf)
		if !errors.Is(err, store.ErrNotFound) {
			continue // in the log: forwarded as usual
		}
		res, err := f.cfg.DB.ExecContext(ctx, "DELETE FROM upstream_outbox WHERE id = ? AND state = 'awaiting_local'", r.id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			f.m.dropped.WithLabelValues(string(f.log.API)).Inc()
			f.logger.Warn("upstream replay: dropped an outbox row whose entry never reached the local log", "leaf", fmt.Sprintf("%x", r.leaf), "grace", f.cfg.Grace)
		}
	}
	return nil
}

// stats sets the gauges (and the outbox's depth) from the database.
func (f *forwarder) stats(ctx context.Context) error {
	var pending, failed, ageMicros int64
	err := f.cfg.DB.QueryRowContext(ctx, "SELECT COALESCE(SUM("+live+"), 0), COALESCE(SUM(state = 'failed'), 0),"+
		" COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(IF("+live+", created_at, NULL)), NOW(6)), 0)"+
		" FROM upstream_outbox WHERE api = ? AND state <> 'forwarded'", string(f.log.API)).Scan(&pending, &failed, &ageMicros)
	if err != nil {
		return err
	}
	l := string(f.log.API)
	f.out.depth.Store(pending)
	f.m.pending.WithLabelValues(l).Set(float64(pending))
	f.m.failed.WithLabelValues(l).Set(float64(failed))
	f.m.oldest.WithLabelValues(l).Set(float64(ageMicros) / 1e6)
	return nil
}
