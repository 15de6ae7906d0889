package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/internal/retry"
	"github.com/stellaops/tlog/logserver/tenant"
)

// Budget is the submission budget the drainer charges before it submits a
// row (package logserver/budget). Take answers whether tenant may submit
// one entry of tier now, and if not when to ask again; Refund returns a
// taken unit when the submission logged nothing new.
type Budget interface {
	Take(ctx context.Context, tenant, tier string) (Admission, error)
	Refund(ctx context.Context, tenant, tier string) error
}

// Admission is a budget's answer.
type Admission struct {
	Admitted   bool
	RetryAfter time.Duration
}

// Checker validates a write request as the log's write endpoint does,
// without logging it: the body as submitted, or false after answering
// the error on w (rekorv1/rekorv2 Server.CheckRequest).
type Checker func(w http.ResponseWriter, r *http.Request) ([]byte, bool)

// Options configure a Queue.
type Options struct {
	// MaxSize is the most pending rows; past it enqueue answers 503.
	MaxSize int
	// MaxBodyBytes caps a queued body (413 beyond).
	MaxBodyBytes int64
	// Retry is the backoff of failed submissions.
	Retry retry.Policy
	// Workers is how many rows are submitted at once by this drainer.
	Workers int
	// Poll is how often an idle drainer looks for due rows (an enqueue on
	// this replica wakes it at once).
	Poll time.Duration
	// Lease is how long a claim lasts: longer than one submission takes.
	Lease time.Duration
	// Log is the log's write handler below admission (budgets are charged
	// by the drainer, once): it serves POST /api/v1/log/entries,
	// GET /api/v1/log/entries/{id} and POST /api/v2/log/entries.
	Log http.Handler
	// Check validates bodies per API ("v1", "v2"); an API without a
	// checker is not offered.
	Check map[string]Checker
	// V2Entry renders the v2 log's entry at an index (a 409 of the v2 log
	// carries only the index). Nil without a v2 log.
	V2Entry func(ctx context.Context, index int64) ([]byte, error)
	// Budget is charged per submission; nil: no budgets.
	Budget Budget
	// Tier classifies a submission (an error is the caller's: 400); nil:
	// every submission is "graph".
	Tier func(r *http.Request, api string, body []byte) (string, error)
	// Resolve attributes an API request to its tenant (an error: 401);
	// nil: the tenant in the request's context, else DefaultTenant.
	Resolve func(r *http.Request) (tenant.Tenant, error)
	// RequireAuthentication refuses submissions of unauthenticated
	// (default-tenant) requests with 401, as the write endpoints do.
	RequireAuthentication bool
	// DefaultTenant owns requests without a tenant when Resolve is nil.
	DefaultTenant string
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Queue is the pending queue: its table, API and drainer.
type Queue struct {
	*Store
	opts Options
	m    *metrics
	wake chan struct{}
}

// New returns the queue over db (migration 010 applied).
func New(db *sql.DB, o Options) (*Queue, error) {
	if o.MaxSize < 1 || o.Workers < 1 || o.Poll <= 0 || o.Lease <= 0 || o.MaxBodyBytes < 1 {
		return nil, fmt.Errorf("queue: max size, workers, poll, lease and max body must be positive")
	}
	if o.Log == nil {
		return nil, errors.New("queue: no log handler")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DefaultTenant == "" {
		o.DefaultTenant = "default"
	}
	q := &Queue{Store: NewStore(db), opts: o, wake: make(chan struct{}, 1)}
	var err error
	if q.m, err = newMetrics(o.Registerer, q.Store); err != nil {
		return nil, err
	}
	return q, nil
}

// Enqueue validates body as the API's write endpoint would and stores it
// pending for tenant t (the hook of the budget's admission middleware for
// refused requests that asked to be queued). Errors: *RejectedError (the
// write endpoint's answer to bad input), *FullError; nothing stored then.
func (q *Queue) Enqueue(ctx context.Context, api string, t tenant.Tenant, tier string, body []byte) (string, error) {
	check := q.opts.Check[api]
	if check == nil {
		return "", fmt.Errorf("queue: api %q is not served", api)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/api/"+api+"/log/entries", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	rec := newRecorder()
	b, ok := check(rec, req)
	if !ok {
		return "", &RejectedError{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
	}
	return q.insert(ctx, api, t.Name, tier, 0, b)
}

func (q *Queue) insert(ctx context.Context, api, tenantName, tier string, priority int, body []byte) (string, error) {
	if int64(len(body)) > q.opts.MaxBodyBytes {
		return "", &RejectedError{Status: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("a queued body is at most %d bytes", q.opts.MaxBodyBytes)}
	}
	e := &Entry{ID: NewID(), API: api, Tenant: tenantName, Tier: tier, Priority: priority, Body: body}
	if err := q.Insert(ctx, e, q.opts.MaxSize); err != nil {
		var full *FullError
		if errors.As(err, &full) {
			q.m.rejectedFull.Inc()
		}
		return "", err
	}
	q.m.enqueued.Inc()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return e.ID, nil
}

// RejectedError is the write endpoint's answer to a body it refuses.
type RejectedError struct {
	Status  int
	Header  http.Header
	Body    []byte // the answer's body; empty: Message as {"code","message"}
	Message string
}

func (e *RejectedError) Error() string {
	if len(e.Body) > 0 {
		return fmt.Sprintf("refused (%d): %s", e.Status, bytes.TrimSpace(e.Body))
	}
	return fmt.Sprintf("refused (%d): %s", e.Status, e.Message)
}

// WriteResponse gives the refusal to w as the write endpoint gave it.
func (e *RejectedError) WriteResponse(w http.ResponseWriter) {
	if len(e.Body) == 0 {
		writeError(w, e.Status, e.Message)
		return
	}
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(e.Body)
}

// Run drains until ctx ends, with Options.Workers submissions at once: one
// loop claims as many due rows as workers are free (one transaction), and
// each claimed row is submitted by its own goroutine. A submission in
// flight when ctx ends is finished (it is bounded by the log's write
// timeout), so a graceful stop leaves no claim behind.
func (q *Queue) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	free := make(chan struct{}, q.opts.Workers) // a token per idle worker
	for range q.opts.Workers {
		free <- struct{}{}
	}
	freed := make(chan struct{}, 1)
	poll := time.NewTimer(q.opts.Poll)
	defer poll.Stop()
	for ctx.Err() == nil {
		n := len(free)
		if n == 0 {
			select {
			case <-ctx.Done():
			case <-freed:
			}
			continue
		}
		rows, err := q.claim(ctx, n, q.opts.Lease)
		if err != nil && ctx.Err() == nil {
			q.opts.Logger.Warn("queue claim", "error", err)
		}
		for _, c := range rows {
			<-free
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.process(context.WithoutCancel(ctx), c)
				free <- struct{}{}
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
		}
		if err == nil && len(rows) == n {
			continue // perhaps more are due
		}
		poll.Reset(q.opts.Poll)
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-poll.C:
		}
	}
}

// claimed is a row a drainer holds.
type claimed struct {
	*Entry
	token   string
	age     time.Duration // created_at to the claim, by the database's clock
	claimed time.Time
}

// claim takes up to n due rows: pending, due, not claimed (or their claim
// lapsed), highest priority then oldest, skipping rows another drainer is
// claiming at the same moment.
func (s *Store) claim(ctx context.Context, n int, lease time.Duration) ([]*claimed, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT seq FROM queue_entries
		WHERE state = 'pending' AND next_attempt_at <= NOW(6) AND (claimed_until IS NULL OR claimed_until <= NOW(6))
		ORDER BY priority DESC, seq LIMIT ? FOR UPDATE SKIP LOCKED`, n)
	if err != nil {
		return nil, err
	}
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(seqs) == 0 {
		return nil, err
	}
	token := NewID()
	in := strings.TrimSuffix(strings.Repeat("?,", len(seqs)), ",")
	if _, err := tx.ExecContext(ctx, `UPDATE queue_entries SET claimed_until = NOW(6) + INTERVAL ? MICROSECOND, claim_token = ?
		WHERE seq IN (`+in+`)`, append([]any{lease.Microseconds(), token}, seqs...)...); err != nil {
		return nil, err
	}
	got, err := tx.QueryContext(ctx, "SELECT "+columns+", body, TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) FROM queue_entries WHERE claim_token = ? ORDER BY priority DESC, seq", token)
	if err != nil {
		return nil, err
	}
	defer got.Close()
	now := time.Now()
	var out []*claimed
	for got.Next() {
		var body []byte
		var age int64
		e, err := scanEntry(got, &body, &age)
		if err != nil {
			return nil, err
		}
		e.Body = body
		out = append(out, &claimed{Entry: e, token: token, age: time.Duration(age) * time.Microsecond, claimed: now})
	}
	if err := got.Err(); err != nil {
		return nil, err
	}
	got.Close()
	return out, tx.Commit()
}

// logged records the log's answer for a claimed row (also over a cancel
// that raced a lapsed claim: the log is the truth).
func (s *Store) logged(ctx context.Context, c *claimed, index int64, uuid string, result []byte) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE queue_entries SET state = 'logged', attempts = attempts + 1, finished_at = NOW(6),
		log_index = ?, entry_uuid = ?, result = ?, last_error = NULL, claimed_until = NULL, claim_token = NULL
		WHERE seq = ? AND claim_token = ?`, index, uuid, result, c.Seq, c.token)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// failed marks a claimed row failed for good.
func (s *Store) failed(ctx context.Context, c *claimed, reason string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE queue_entries SET state = 'failed', attempts = attempts + 1, finished_at = NOW(6),
		last_error = ?, claimed_until = NULL, claim_token = NULL WHERE seq = ? AND claim_token = ?`, reason, c.Seq, c.token)
	return err
}

// later releases a claimed row, due again after delay; attempt counts it
// as a failed attempt.
func (s *Store) later(ctx context.Context, c *claimed, delay time.Duration, attempt bool, reason string) error {
	n := 0
	if attempt {
		n = 1
	}
	_, err := s.db.ExecContext(ctx, `UPDATE queue_entries SET next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND,
		attempts = attempts + ?, last_error = ?, claimed_until = NULL, claim_token = NULL WHERE seq = ? AND claim_token = ?`,
		delay.Microseconds(), n, reason, c.Seq, c.token)
	return err
}

// outcome is what a submission came to.
type outcome struct {
	index   int64
	uuid    string
	result  []byte
	fresh   bool          // a new entry (201), not an existing one (409)
	wait    time.Duration // > 0: come back then, no attempt counted
	perm    string        // permanent failure reason
	retry   string        // transient failure reason (attempt counted)
	waitMsg string
}

// process submits one claimed row and records what came of it. Every
// state change is stored before the next row is taken.
func (q *Queue) process(ctx context.Context, c *claimed) {
	log := q.opts.Logger.With("queue_id", c.ID, "api", c.API, "tenant", c.Tenant, "tier", c.Tier)
	if q.opts.Budget != nil {
		adm, err := q.opts.Budget.Take(ctx, c.Tenant, c.Tier)
		if err != nil {
			log.Warn("queue budget", "error", err)
			q.record(ctx, log, c, func() error { return q.later(ctx, c, q.opts.Poll, false, "budget: "+err.Error()) })
			return
		}
		if !adm.Admitted {
			q.m.budgetWaits.Inc()
			wait := max(adm.RetryAfter, q.opts.Poll)
			q.record(ctx, log, c, func() error { return q.later(ctx, c, wait, false, "waiting for budget") })
			return
		}
	}
	o := q.submit(ctx, c)
	if q.opts.Budget != nil && !o.fresh {
		if err := q.opts.Budget.Refund(ctx, c.Tenant, c.Tier); err != nil {
			log.Warn("queue budget refund", "error", err)
		}
	}
	switch {
	case o.result != nil:
		q.record(ctx, log, c, func() error {
			ok, err := q.logged(ctx, c, o.index, o.uuid, o.result)
			if err == nil && !ok {
				log.Warn("queue claim lapsed before the entry was recorded; another drainer records it", "log_index", o.index)
			}
			return err
		})
		q.m.success.Inc()
		if !o.fresh {
			q.m.alreadyLogged.Inc()
		}
		q.m.latency.Observe((c.age + time.Since(c.claimed)).Seconds())
		log.Debug("queued entry logged", "log_index", o.index, "uuid", o.uuid, "duplicate", !o.fresh)
	case o.wait > 0:
		q.record(ctx, log, c, func() error { return q.later(ctx, c, o.wait, false, o.waitMsg) })
	case o.perm != "":
		log.Warn("queued entry refused by the log", "reason", o.perm)
		q.m.failed.Inc()
		q.record(ctx, log, c, func() error { return q.failed(ctx, c, o.perm) })
	default:
		failures := c.Attempts + 1
		if q.opts.Retry.Exhausted(failures) {
			log.Warn("queued entry failed, attempts exhausted", "attempts", failures, "error", o.retry)
			q.m.failed.Inc()
			q.record(ctx, log, c, func() error {
				return q.failed(ctx, c, fmt.Sprintf("%s (after %d attempts)", o.retry, failures))
			})
			return
		}
		q.m.retries.Inc()
		log.Info("queued entry will be retried", "attempts", failures, "error", o.retry)
		q.record(ctx, log, c, func() error { return q.later(ctx, c, q.opts.Retry.Delay(failures), true, o.retry) })
	}
}

// record stores a state change, retrying while the database is away (the
// claim lapses if it never comes back; the row is then replayed, safely).
func (q *Queue) record(ctx context.Context, log *slog.Logger, c *claimed, update func() error) {
	for i := 0; ; i++ {
		err := update()
		if err == nil {
			return
		}
		if time.Since(c.claimed) > q.opts.Lease {
			log.Error("queue state not recorded; the claim lapsed, the row will be replayed", "error", err)
			return
		}
		log.Warn("queue state update", "error", err)
		time.Sleep(time.Second)
	}
}

// submit sends the row through the log's write handler in-process.
func (q *Queue) submit(ctx context.Context, c *claimed) outcome {
	ctx = tenant.WithContext(ctx, tenant.Tenant{Name: c.Tenant})
	rec := q.serve(ctx, http.MethodPost, "/api/"+c.API+"/log/entries", c.Body)
	switch {
	case rec.status == http.StatusCreated:
		return q.parseResult(c.API, rec.body.Bytes(), true)
	case rec.status == http.StatusConflict:
		return q.existing(ctx, c, rec)
	case rec.status == http.StatusTooManyRequests:
		wait := retry.After(rec.header)
		if wait == 0 {
			wait = q.opts.Poll
		}
		return outcome{wait: wait, waitMsg: "the log answered 429: " + message(rec)}
	case rec.status >= 400 && rec.status < 500 && rec.status != http.StatusRequestTimeout && rec.status != 499:
		return outcome{perm: fmt.Sprintf("the log refused the entry (%d): %s", rec.status, message(rec))}
	case c.API == APIv2 && rec.status == http.StatusServiceUnavailable && strings.Contains(rec.body.String(), "being integrated"):
		// A replay of an entry still being integrated: it is in the log.
		return outcome{wait: time.Second, waitMsg: "an equivalent entry is being integrated"}
	default:
		return outcome{retry: fmt.Sprintf("the log answered %d: %s", rec.status, message(rec))}
	}
}

// existing resolves a 409: the entry is in the log already (an earlier
// attempt of this row, or the same entry submitted directly).
func (q *Queue) existing(ctx context.Context, c *claimed, rec *recorder) outcome {
	notYet := outcome{wait: time.Second, waitMsg: "an equivalent entry is in the log, not yet published"}
	if c.API == APIv1 {
		loc := rec.header.Get("Location")
		if loc == "" {
			return outcome{retry: "409 without Location"}
		}
		got := q.serve(ctx, http.MethodGet, loc, nil)
		if got.status == http.StatusNotFound {
			return notYet
		}
		if got.status != http.StatusOK {
			return outcome{retry: fmt.Sprintf("reading the existing entry: %d: %s", got.status, message(got))}
		}
		return q.parseResult(c.API, got.body.Bytes(), false)
	}
	idx, err := strconv.ParseInt(rec.header.Get("X-Log-Index"), 10, 64)
	if err != nil || q.opts.V2Entry == nil {
		return outcome{retry: "409 without X-Log-Index"}
	}
	b, err := q.opts.V2Entry(ctx, idx)
	if err != nil {
		return notYet
	}
	return q.parseResult(c.API, b, false)
}

func (q *Queue) serve(ctx context.Context, method, path string, body []byte) *recorder {
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	rec := newRecorder()
	if err != nil {
		rec.status = http.StatusBadRequest
		rec.body.WriteString(err.Error())
		return rec
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	q.opts.Log.ServeHTTP(rec, req)
	return rec
}

// parseResult reads index and UUID (v1: the entry ID; v2: the leaf hash)
// from the log's answer.
func (q *Queue) parseResult(api string, b []byte, fresh bool) outcome {
	bad := func(err error) outcome { return outcome{retry: "unreadable answer of the log: " + err.Error()} }
	if api == APIv1 {
		var m map[string]struct {
			LogIndex *int64 `json:"logIndex"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return bad(err)
		}
		for id, v := range m {
			if v.LogIndex == nil {
				return bad(errors.New("no logIndex"))
			}
			return outcome{index: *v.LogIndex, uuid: id, result: b, fresh: fresh}
		}
		return bad(errors.New("no entry"))
	}
	var tle struct {
		LogIndex          string `json:"logIndex"`
		CanonicalizedBody string `json:"canonicalizedBody"`
	}
	if err := json.Unmarshal(b, &tle); err != nil {
		return bad(err)
	}
	idx, err := strconv.ParseInt(tle.LogIndex, 10, 64)
	if err != nil {
		return bad(err)
	}
	body, err := base64.StdEncoding.DecodeString(tle.CanonicalizedBody)
	if err != nil {
		return bad(err)
	}
	leaf := sha256.Sum256(append([]byte{0}, body...))
	return outcome{index: idx, uuid: hex.EncodeToString(leaf[:]), result: b, fresh: fresh}
}

// message is the error message of an answer ({"message": …} of both APIs),
// or its body.
func message(rec *recorder) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(rec.body.Bytes(), &m) == nil && m.Message != "" {
		return m.Message
	}
	s := strings.TrimSpace(rec.body.String())
	if len(s) > 500 {
		s = s[:500]
	}
	if s == "" {
		s = http.StatusText(rec.status)
	}
	return s
}

// recorder is an in-process http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func newRecorder() *recorder { return &recorder{header: http.Header{}, status: http.StatusOK} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}

var _ io.Writer = (*recorder)(nil)
