// Package queue is the logserver's durable pending queue: submissions a
// producer asked to have queued (POST /api/v1/queue/entries,
// POST /api/v2/queue/entries, or a write refused for budget with
// "Prefer: respond-async") are validated as the log would validate them,
// stored in MySQL (table queue_entries) and answered 202 with an id and
// status transparency_pending; a drainer logs them later, as budget allows,
// through the log's own write handler in-process.
//
// Contract:
//   - An accepted submission (202) is committed to the database before the
//     answer; it is never dropped: it ends logged (with the log's answer),
//     failed (with the reason; kept for an operator) or cancelled (by an
//     operator).
//   - Bad input is refused at enqueue time with the write endpoint's own
//     answer and nothing is stored. A full queue (Options.MaxSize pending
//     rows) answers 503 with Retry-After and stores nothing.
//   - The drainer takes due rows in priority order (higher first), then
//     oldest first. A row is claimed by one drainer at a time (a lease in
//     the row, taken with SELECT … FOR UPDATE SKIP LOCKED), across every
//     replica sharing the database; a crashed drainer's claims lapse and
//     are taken over. An entry is never logged twice: a replay of a row
//     whose entry is already in the log gets the log's 409 (its dedup on
//     the leaf) and is marked logged with the existing entry.
//   - Failures are retried with the internal/retry policy; a 4xx answer
//     other than 409/429 is permanent (failed). A budget refusal (or a
//     429) waits until its Retry-After without counting an attempt.
//
// The files: store.go (the table: enqueue, read, list, cancel, make due),
// drainer.go (claims and submission), http.go (the async API), metrics.go.
package queue

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// States of a row.
const (
	StatePending   = "pending"
	StateLogged    = "logged"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
)

// StatusPending is a pending row's status in the API.
const StatusPending = "transparency_pending"

// APIs a row is submitted to.
const (
	APIv1 = "v1"
	APIv2 = "v2"
)

// FullRetryAfter is the Retry-After of a full queue's 503.
const FullRetryAfter = 30 * time.Second

// ErrNotFound: no such row (or not the caller's).
var ErrNotFound = errors.New("no such queued entry")

// FullError is Enqueue's answer for a full queue: nothing was stored.
type FullError struct {
	Max        int
	RetryAfter time.Duration
}

func (e *FullError) Error() string {
	return fmt.Sprintf("the pending queue is full (%d entries); retry later", e.Max)
}

// WriteResponse answers 503 with Retry-After.
func (e *FullError) WriteResponse(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter/time.Second)))
	writeError(w, http.StatusServiceUnavailable, e.Error())
}

// Entry is one row.
type Entry struct {
	Seq           int64     `json:"-"`
	ID            string    `json:"id"`
	API           string    `json:"api"`
	Tenant        string    `json:"tenant"`
	Tier          string    `json:"tier"`
	Priority      int       `json:"priority"`
	CreatedAt     time.Time `json:"created_at"`
	State         string    `json:"state"`
	Attempts      int       `json:"attempts"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
	LastError     string    `json:"last_error,omitempty"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
	LogIndex      *int64    `json:"log_index,omitempty"`
	EntryUUID     string    `json:"uuid,omitempty"`
	// Result is the log's answer for the logged entry (v1: the LogEntry
	// map; v2: the TransparencyLogEntry), as it gave it.
	Result []byte `json:"-"`
	// Body is the submission as received (read by Get, not by List).
	Body []byte `json:"-"`
}

// Store is the queue's table.
type Store struct{ db *sql.DB }

// NewStore returns the queue table of db (migration 010 applied).
func NewStore(db *sql.DB) *Store { return &Store{db: db} }

// NewID is a public row id: 128 random bits, hex.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Insert stores a pending row unless maxSize rows are pending
// (*FullError). The size check and the insert are one transaction,
// serialised on queue_admission, so the bound is exact across replicas.
func (s *Store) Insert(ctx context.Context, e *Entry, maxSize int) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT id FROM queue_admission WHERE id = 1 FOR UPDATE").Scan(&one); err != nil {
		return fmt.Errorf("queue admission lock: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM queue_entries WHERE state = 'pending'").Scan(&n); err != nil {
		return err
	}
	if n >= maxSize {
		return &FullError{Max: maxSize, RetryAfter: FullRetryAfter}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO queue_entries (id, api, tenant, tier, priority, body)
		VALUES (?, ?, ?, ?, ?, ?)`, e.ID, e.API, e.Tenant, e.Tier, e.Priority, e.Body); err != nil {
		return err
	}
	return tx.Commit()
}

// columns are an Entry's, times as Unix seconds (independent of the
// session's time zone).
const columns = `seq, id, api, tenant, tier, priority, UNIX_TIMESTAMP(created_at), state, attempts,
	UNIX_TIMESTAMP(next_attempt_at), COALESCE(last_error, ''), UNIX_TIMESTAMP(finished_at), log_index,
	COALESCE(entry_uuid, '')`

func scanEntry(sc interface{ Scan(...any) error }, extra ...any) (*Entry, error) {
	var e Entry
	var created, next string
	var finished sql.NullString
	var idx sql.NullInt64
	dst := append([]any{&e.Seq, &e.ID, &e.API, &e.Tenant, &e.Tier, &e.Priority, &created, &e.State, &e.Attempts,
		&next, &e.LastError, &finished, &idx, &e.EntryUUID}, extra...)
	if err := sc.Scan(dst...); err != nil {
		return nil, err
	}
	e.CreatedAt, e.NextAttemptAt = parseTime(created), parseTime(next)
	if finished.Valid {
		e.FinishedAt = parseTime(finished.String)
	}
	if idx.Valid {
		e.LogIndex = &idx.Int64
	}
	return &e, nil
}

// parseTime reads UNIX_TIMESTAMP(col): seconds with up to 6 decimals.
func parseTime(s string) time.Time {
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}
	}
	frac = (frac + "000000")[:6]
	us, _ := strconv.ParseInt(frac, 10, 64)
	return time.Unix(n, us*1000).UTC()
}

// Get returns row id with its result. tenant, if not empty, must own it
// (otherwise ErrNotFound: another tenant's ids are not revealed).
func (s *Store) Get(ctx context.Context, id, tenant string) (*Entry, error) {
	row := s.db.QueryRowContext(ctx, "SELECT "+columns+", result FROM queue_entries WHERE id = ?", id)
	var result []byte
	e, err := scanEntry(row, &result)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && tenant != "" && e.Tenant != tenant) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	e.Result = result
	return e, nil
}

// Filter selects rows for List.
type Filter struct {
	State  string // empty: every state
	Tenant string // empty: every tenant
	Limit  int    // 0: 1000
}

// List returns rows in drain order (state, priority, oldest first).
func (s *Store) List(ctx context.Context, f Filter) ([]*Entry, error) {
	var where []string
	var args []any
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, f.State)
	}
	if f.Tenant != "" {
		where = append(where, "tenant = ?")
		args = append(args, f.Tenant)
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	q := "SELECT " + columns + " FROM queue_entries"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY state, priority DESC, seq LIMIT ?"
	rows, err := s.db.QueryContext(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ErrClaimed: the row is being submitted right now; retry shortly.
var ErrClaimed = errors.New("the entry is being submitted by a drainer right now; retry in a moment")

// Cancel marks pending row id cancelled (it will not be logged). A row
// not pending is left as it is (error naming its state); a row claimed by
// a drainer gets ErrClaimed.
func (s *Store) Cancel(ctx context.Context, id, reason string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE queue_entries SET state = 'cancelled', finished_at = NOW(6), last_error = ?
		WHERE id = ? AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= NOW(6))`, reason, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	e, err := s.Get(ctx, id, "")
	if err != nil {
		return err
	}
	if e.State == StatePending {
		return ErrClaimed
	}
	return fmt.Errorf("entry %s is %s, not pending", id, e.State)
}

// MakeDue makes every pending row due now (backoff and budget waits
// skipped; claims in progress are left alone) and, with failed, returns
// failed rows to pending with their attempts reset. It returns how many
// rows it changed.
func (s *Store) MakeDue(ctx context.Context, failed bool) (int64, error) {
	res, err := s.db.ExecContext(ctx, "UPDATE queue_entries SET next_attempt_at = NOW(6) WHERE state = 'pending' AND next_attempt_at > NOW(6)")
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	if failed {
		res, err := s.db.ExecContext(ctx, `UPDATE queue_entries SET state = 'pending', attempts = 0, next_attempt_at = NOW(6),
			finished_at = NULL WHERE state = 'failed'`)
		if err != nil {
			return n, err
		}
		m, _ := res.RowsAffected()
		n += m
	}
	return n, nil
}

// Depth returns the pending rows per tier.
func (s *Store) Depth(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT tier, COUNT(*) FROM queue_entries WHERE state = 'pending' GROUP BY tier")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var tier string
		var n int64
		if err := rows.Scan(&tier, &n); err != nil {
			return nil, err
		}
		out[tier] = n
	}
	return out, rows.Err()
}
