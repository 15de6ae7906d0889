// Package audit is the signer's append-only audit trail in MySQL/MariaDB:
// one [Record] per decision, signed, refused or failed.
//
// Contract: [Log.Write] returns nil only once the record is committed (one
// autocommitted multi-row INSERT; durable when the server runs with
// innodb_flush_log_at_trx_commit=1). The signer answers a request only after
// its Write returned nil, so no caller ever holds a signature, or a refusal,
// the trail does not show. When Write fails the signer withholds the
// signature and answers 503.
//
// Writes are group-committed off the caller's goroutine: while one INSERT
// is in flight, the records that arrive meanwhile accumulate, and they go
// together into the next INSERT (up to MaxBatch rows and MaxBatchBytes
// bytes) as soon as it returns. One request alone costs one round trip; a
// thousand concurrent ones cost a few. A second INSERT goes in parallel
// (up to Committers in flight) only when a full batch is waiting, so
// under load each INSERT carries as many rows as arrived during the
// previous one instead of each committer taking a row or two. The byte
// bound keeps one caller's large rows (a statement with many subjects)
// from pushing an INSERT past the server's max_allowed_packet and failing
// everybody else's rows with it: a row that does not fit goes into the
// next INSERT, and a row larger than MaxBatchBytes goes alone, so it can
// fail only itself. When a multi-row INSERT is refused because of the
// data of a row (a value the server's strict mode rejects), nothing of it
// was written, and every row is inserted again alone, so that only the
// offending row fails.
//
// The service's database user needs only INSERT and SELECT on signer_audit;
// rows are never updated or deleted. The schema is in sql/signer/, applied
// by [Migrate] with a user allowed to create tables.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/internal/migrate"
	sqlschema "github.com/stellaops/tlog/sql"
)

// Component is the name under which the migrations are recorded in
// schema_migrations.
const Component = "signer"

// Migrate applies the signer's schema migrations (safe to re-run).
func Migrate(ctx context.Context, db *sql.DB) error {
	return migrate.Apply(ctx, db, sqlschema.FS, "signer", Component)
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: log closed")

// Decision values.
const (
	Signed  = "signed"
	Refused = "refused"
	Failed  = "failed"
)

// Record is one decision.
type Record struct {
	Time       time.Time // when the request arrived
	RequestID  string
	Tenant     string // empty when the caller was not authenticated
	Caller     string // token id or client certificate subject
	AuthMethod string // "token", "mtls" or ""
	Endpoint   string // "dsse", "digests", "checkpoint", "cosignature"
	KeyName    string
	// KeyVersions and KeyIDs list the key versions that signed (or would
	// have), comma-separated; KeyIDs are hex SHA-256 of the SPKI.
	KeyVersions   string
	KeyIDs        string
	PayloadType   string
	PredicateType string   // canonical URI, for in-toto statements
	Subjects      []string // subject digests, "sha256:<hex>"
	// PAESHA256 is SHA-256 of what was (or would have been) signed: the
	// DSSE PAE, the note text (checkpoint, cosignature), or the
	// concatenation of the digests of a batch. Nil when unknown.
	PAESHA256       []byte
	Items           int // signatures produced
	Decision        string
	Status          int    // HTTP status answered
	Reason          string // stable error code, "" when signed
	Detail          string
	RedactionTicket string
	Latency         time.Duration
	PKCS11Code      string // CKR_* name when the token failed
	RemoteAddr      string
}

// Options tunes a Log.
type Options struct {
	// MaxBatch is the most rows in one INSERT. Default 256.
	MaxBatch int
	// MaxBatchBytes is the most bytes of row data (as [Record.Size]
	// estimates them) in one INSERT; a larger row goes alone. Default
	// 1 MiB. Keep it well below the server's max_allowed_packet (MariaDB's
	// default is 16 MiB; escaping can double the size on the wire).
	MaxBatchBytes int
	// Committers is the most INSERTs in flight at once. One is in flight
	// while the next batch accumulates; more start only when a full batch
	// (MaxBatch rows or MaxBatchBytes bytes) is waiting. Default 8.
	Committers int
	// CommitTimeout bounds one INSERT. Default 10 s.
	CommitTimeout time.Duration
	// OnCommit, when set, is called after every INSERT (for metrics).
	OnCommit func(rows int, took time.Duration, err error)
}

// Log writes records; see the package documentation.
type Log struct {
	db       *sql.DB
	opts     Options
	in       chan *pending
	work     chan []*pending // batches for the committers
	finished chan struct{}   // one per INSERT done
	waiting  atomic.Int64    // records queued, not yet in an INSERT (tests)

	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup
}

type pending struct {
	r    *Record
	size int
	done chan error
}

// OpenDB opens dsn with the settings the audit log wants (interpolated
// parameters: one round trip per batch instead of three).
func OpenDB(dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("audit: bad DSN: %w", err)
	}
	cfg.InterpolateParams = true
	cfg.ParseTime = true
	if cfg.Loc == nil {
		cfg.Loc = time.UTC
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}

// New starts a Log writing to db. Close it to flush and stop.
func New(db *sql.DB, o Options) *Log {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.Committers <= 0 {
		o.Committers = 8
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 10 * time.Second
	}
	l := &Log{db: db, opts: o, in: make(chan *pending, 4*o.MaxBatch),
		work: make(chan []*pending), finished: make(chan struct{}, o.Committers)}
	for range o.Committers {
		l.wg.Go(l.commitLoop)
	}
	l.wg.Go(l.dispatch)
	return l
}

// Write queues r and waits until it is committed or failed. It waits for
// the commit even if ctx ends after r was queued (the row may be committed
// anyway), so that the caller never answers before the trail is settled.
func (l *Log) Write(ctx context.Context, r Record) error {
	p := &pending{r: &r, size: r.Size(), done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	l.waiting.Add(1)
	select {
	case l.in <- p:
	case <-ctx.Done():
		l.waiting.Add(-1)
		l.mu.RUnlock()
		return fmt.Errorf("audit: queueing record: %w", ctx.Err())
	}
	l.mu.RUnlock()
	return <-p.done
}

// Ping checks that the database answers.
func (l *Log) Ping(ctx context.Context) error { return l.db.PingContext(ctx) }

// Close stops accepting records, commits those queued and returns.
// It does not close the *sql.DB.
func (l *Log) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.in)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// dispatch forms the batches: it starts one as soon as no INSERT is in
// flight, or, when one is, only once the batch is full (and a committer is
// free); meanwhile it keeps adding what arrives.
func (l *Log) dispatch() {
	defer close(l.work)
	var batch []*pending
	size, inFlight := 0, 0
	var held *pending // arrived, but does not fit in batch
	in := l.in        // nil once closed
	for {
		full := held != nil || len(batch) >= l.opts.MaxBatch
		if len(batch) > 0 && inFlight < l.opts.Committers && (inFlight == 0 || full) {
			l.waiting.Add(-int64(len(batch)))
			l.work <- batch
			inFlight++
			batch, size = make([]*pending, 0, l.opts.MaxBatch), 0
			if held != nil {
				batch, size, held = append(batch, held), held.size, nil
			}
			continue
		}
		if in == nil && len(batch) == 0 && inFlight == 0 {
			return
		}
		recv := in
		if full {
			recv = nil // wait for a committer
		}
		select {
		case p, ok := <-recv:
			if !ok {
				in = nil
				continue
			}
			if len(batch) > 0 && size+p.size > l.opts.MaxBatchBytes {
				held = p
				continue
			}
			batch, size = append(batch, p), size+p.size
		case <-l.finished:
			inFlight--
		}
	}
}

// commitLoop inserts the batches dispatch hands it and answers their
// writers.
func (l *Log) commitLoop() {
	for batch := range l.work {
		err := l.insert(batch)
		if err != nil && len(batch) > 1 && rowError(err) {
			for _, q := range batch { // nothing was written: each row alone
				q.done <- l.insert([]*pending{q})
			}
		} else {
			for _, q := range batch {
				q.done <- err
			}
		}
		l.finished <- struct{}{}
	}
}

// rowError reports whether err is the server refusing a statement for the
// data of one of its rows (strict mode), in which case none of the
// statement was written.
func rowError(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, // ER_BAD_NULL_ERROR
		1264, // ER_WARN_DATA_OUT_OF_RANGE
		1265, // WARN_DATA_TRUNCATED
		1292, // ER_TRUNCATED_WRONG_VALUE
		1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
		1406: // ER_DATA_TOO_LONG
		return true
	}
	return false
}

// rowOverhead is what Size adds per row for the fixed-size columns and the
// statement's punctuation.
const rowOverhead = 256

// Size estimates the bytes r adds to an INSERT (before escaping).
func (r *Record) Size() int {
	n := rowOverhead + len(r.RequestID) + len(r.Tenant) + len(r.Caller) + len(r.AuthMethod) + len(r.Endpoint) +
		len(r.KeyName) + len(r.KeyVersions) + len(r.KeyIDs) + len(r.PayloadType) + len(r.PredicateType) +
		len(r.PAESHA256) + len(r.Decision) + len(r.Reason) + len(r.Detail) + len(r.RedactionTicket) +
		len(r.PKCS11Code) + len(r.RemoteAddr)
	for _, s := range r.Subjects {
		n += len(s) + 3 // quotes and comma of the JSON array
	}
	return n
}

const columns = `recorded_at, request_id, tenant, caller, auth_method, endpoint, key_name, key_versions, key_ids,
payload_type, predicate_type, subject_digests, pae_sha256, items, decision, http_status, reason, detail,
redaction_ticket, pkcs11_code, latency_us, remote_addr`

const nColumns = 22

func (l *Log) insert(batch []*pending) error {
	start := time.Now()
	var q strings.Builder
	q.WriteString("INSERT INTO signer_audit (" + columns + ") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", nColumns), ",") + ")"
	args := make([]any, 0, nColumns*len(batch))
	for i, p := range batch {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(row)
		args = append(args, p.r.args()...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.CommitTimeout)
	defer cancel()
	_, err := l.db.ExecContext(ctx, q.String(), args...)
	if err != nil {
		err = fmt.Errorf("audit: committing %d records: %w", len(batch), err)
	}
	if l.opts.OnCommit != nil {
		l.opts.OnCommit(len(batch), time.Since(start), err)
	}
	return err
}

func (r *Record) args() []any {
	var subjects any
	if len(r.Subjects) > 0 {
		b, _ := json.Marshal(r.Subjects)
		subjects = string(b)
	}
	var pae any
	if len(r.PAESHA256) == 32 {
		pae = r.PAESHA256
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	return []any{
		t.UTC(), cut(r.RequestID, 64), cut(r.Tenant, 128), cut(r.Caller, 255), cut(r.AuthMethod, 16),
		cut(r.Endpoint, 32), cut(r.KeyName, 128), cut(r.KeyVersions, 64), cut(r.KeyIDs, 400),
		cut(r.PayloadType, 255), cut(r.PredicateType, 512), subjects, pae, r.Items, r.Decision,
		r.Status, cut(r.Reason, 64), cut(r.Detail, 1024), cut(r.RedactionTicket, 128),
		cut(r.PKCS11Code, 64), r.Latency.Microseconds(), cut(r.RemoteAddr, 64),
	}
}

// cut truncates s to at most n characters (the VARCHAR length), keeping it
// valid UTF-8, so that strict SQL mode never rejects a record.
func cut(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
