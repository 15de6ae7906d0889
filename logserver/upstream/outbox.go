// Package upstream replays the entries of this logserver's logs to an
// upstream Rekor-compatible log: the Rekor v1 log's to a Rekor v1 upstream
// (POST /api/v1/log/entries), the Rekor v2 log's to a Rekor v2 upstream
// (POST /api/v2/log/entries).
//
// Contract:
//   - [Outbox.Before] is called by a write handler after it validated and
//     canonicalised a request and before it adds the entry to its local
//     log. It stores the ORIGINAL request body (a dsse or intoto canonical
//     body drops the payload and cannot be resubmitted) in the
//     upstream_outbox table, in its own statement, and only then may the
//     handler log the entry: if Before fails the handler answers 503 and
//     logs nothing. The handler calls done(true) once the local log
//     answered 201 or 409 (the entry is, or is being, logged), done(false)
//     when the local log certainly refused it (nothing was queued); on an
//     ambiguous outcome (a timeout) it calls nothing.
//   - A [Forwarder] submits a row only once its leaf is in the local log
//     (looked up by leaf hash), so a row left by a crash between Before and
//     the answer is forwarded once the entry is integrated (the sequencer
//     re-publishes queued leaves at start), and dropped after Grace if the
//     entry never appears. Each entry reaches the upstream at least once;
//     an upstream duplicate answer (409) counts as delivered, so a retry
//     after a lost answer logs nothing twice.
//   - The upstream's answer is verified before a row is marked forwarded:
//     its canonical body must be ours, byte for byte (same leaf hash), its
//     inclusion proof must hold against its checkpoint, and the checkpoint
//     (v1: also the SET) must verify with the configured upstream key.
//   - While the upstream is unreachable (network error, 429, 5xx) rows wait
//     as transparency_pending and the forwarder backs off (internal/retry,
//     or the upstream's Retry-After when longer); when it answers again
//     the backlog drains oldest first, each submission charged to the
//     configured tenant's budget ([Budget]). Other 4xx answers, and answers
//     that do not verify, mark the row failed with the reason, kept for
//     the operator.
//   - Several replicas may share the database: a forwarder claims rows
//     with a lease (lease_owner, leased_until) of twice the request timeout
//     plus 10s; an expired lease (a forwarder that died) is free again.
package upstream

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// API names a local log and the kind of its upstream: "v1" or "v2".
type API string

// The two logs.
const (
	V1 API = "v1"
	V2 API = "v2"
)

// ErrFull is returned by Before while the outbox holds MaxOutbox entries
// waiting for the upstream.
var ErrFull = errors.New("upstream replay: too many entries wait for the upstream")

// Outbox records the writes of one local log that must reach the upstream.
type Outbox struct {
	db     *sql.DB
	api    API
	max    int64
	depth  atomic.Int64 // rows waiting, as last counted by the forwarder
	wake   chan struct{}
	logger *slog.Logger
	m      *metrics
}

// Before records body (the request as received) for the entry with leaf
// hash leafHash, before the entry is added to the local log. See the
// package contract for done.
func (o *Outbox) Before(ctx context.Context, leafHash [32]byte, body []byte) (func(logged bool), error) {
	if o.depth.Load() >= o.max {
		o.m.full.WithLabelValues(string(o.api)).Inc()
		return nil, ErrFull
	}
	res, err := o.db.ExecContext(ctx,
		"INSERT INTO upstream_outbox (api, leaf_hash, body, state) VALUES (?, ?, ?, 'awaiting_local')",
		string(o.api), leafHash[:], body)
	if err != nil {
		return nil, fmt.Errorf("upstream replay: record entry: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, fmt.Errorf("upstream replay: record entry: %w", err)
	}
	o.depth.Add(1)
	return func(logged bool) { o.done(ctx, id, logged) }, nil
}

// done settles row id after the local write answered. A failure here
// leaves the row awaiting_local, which the forwarder resolves by looking
// the leaf up (and the grace).
func (o *Outbox) done(ctx context.Context, id int64, logged bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	q := "DELETE FROM upstream_outbox WHERE id = ? AND state = 'awaiting_local'"
	if logged {
		q = "UPDATE upstream_outbox SET state = 'pending' WHERE id = ? AND state = 'awaiting_local'"
	}
	if _, err := o.db.ExecContext(ctx, q, id); err != nil {
		o.logger.Warn("upstream replay: settle outbox row (the forwarder resolves it)", "id", id, "logged", logged, "error", err)
	}
	if logged {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	} else {
		o.depth.Add(-1)
	}
}

// newOwner is a random lease owner.
func newOwner() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}
