package witnessing

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// maxConflicts bounds 409-and-resend cycles within one exchange (another
// feeder, e.g. a second logserver replica, may be racing us).
const maxConflicts = 3

// sizeSaveTimeout bounds one write of a witness's size to the Store.
const sizeSaveTimeout = 5 * time.Second

// witnessState is what the Feeder knows of one witness.
type witnessState struct {
	w   *PolicyWitness
	c   *client
	xmu sync.Mutex // held for a whole exchange: one request at a time per witness

	// Guarded by Feeder.mu.
	size     int64 // last size the witness cosigned or reported (0: unknown)
	saved    int64 // size last written to the Store
	failures int
	nextTry  time.Time
	busy     bool // an exchange is in flight (possibly a straggler of an earlier round)
	ahead    bool // the witness reports a tree larger than ours
}

// exchange feeds t to one witness, following 409s, and reports success.
// It does the witness's bookkeeping: its size (saved in the Store when it
// changed), backoff after a failure (Retry-After honoured within MaxRetry),
// at most one round per MinInterval after a success, metrics and logs. It
// logs outside f.mu, so Update never waits for log output.
func (f *Feeder) exchange(ctx context.Context, ws *witnessState, t *target) bool {
	ws.xmu.Lock()
	defer ws.xmu.Unlock()
	line, err := f.exchangeLocked(ctx, ws, t)
	f.saveSize(ctx, ws)
	now := time.Now()
	f.mu.Lock()
	if err == nil {
		recovered, wasAhead := ws.failures, ws.ahead
		t.cosigs[ws] = line
		ws.failures, ws.ahead = 0, false
		ws.nextTry = now.Add(f.cfg.MinInterval)
		size := ws.size
		f.mu.Unlock()
		f.m.up.WithLabelValues(ws.w.Name).Set(1)
		f.m.ahead.WithLabelValues(ws.w.Name).Set(0)
		f.m.cosignedSize.WithLabelValues(ws.w.Name).Set(float64(size))
		if recovered > 0 || wasAhead {
			f.log.InfoContext(ctx, "witness is back", slog.String("witness", ws.w.Name), slog.Int64("size", t.size),
				slog.Int("failures", recovered))
		}
		return true
	}
	if ctx.Err() != nil {
		f.mu.Unlock()
		return false // shutting down: not the witness's fault
	}
	ws.failures++
	failures := ws.failures
	backoff := f.cfg.MinRetry << min(failures-1, 30)
	if backoff <= 0 || backoff > f.cfg.MaxRetry {
		backoff = f.cfg.MaxRetry
	}
	var we *witnessError
	if errors.As(err, &we) && we.retryAfter > 0 {
		backoff = min(max(we.retryAfter, f.cfg.MinRetry), f.cfg.MaxRetry)
	}
	ws.nextTry = now.Add(backoff)
	ahead := errors.As(err, &we) && we.outcome == OutcomeAhead
	firstAhead := ahead && !ws.ahead
	ws.ahead = ahead
	witnessSize := ws.size
	f.mu.Unlock()
	f.m.up.WithLabelValues(ws.w.Name).Set(0)
	if ahead {
		f.m.ahead.WithLabelValues(ws.w.Name).Set(1)
		if firstAhead { // one line per episode, not per retry
			f.log.ErrorContext(ctx, "witness reports a tree larger than the log's: a fork, a rolled-back log database, or another log with our key; retrying with backoff",
				slog.String("witness", ws.w.Name), slog.String("url", ws.c.addURL), slog.Int64("witness_size", witnessSize),
				slog.Int64("log_size", t.size), slog.Duration("retry_in", backoff))
		}
		return false
	}
	level := slog.LevelWarn
	if errors.As(err, &we) && (we.outcome == OutcomeInconsistent || we.outcome == OutcomeBadResponse) {
		level = slog.LevelError
	}
	f.log.Log(ctx, level, "witness did not cosign; the log carries on without it",
		slog.String("witness", ws.w.Name), slog.String("url", ws.c.addURL), slog.Int64("size", t.size),
		slog.Int("consecutive_failures", failures), slog.Duration("retry_in", backoff), slog.Any("error", err))
	return false
}

// exchangeLocked sends t from the size we believe the witness is at,
// following 409s. A witness believed to be beyond t is asked again with
// old 0, so that it reports its size: if it was repaired (or restored to a
// size we have), the exchange goes on from there.
func (f *Feeder) exchangeLocked(ctx context.Context, ws *witnessState, t *target) ([]byte, error) {
	for conflicts := 0; ; {
		f.mu.Lock()
		old := ws.size
		f.mu.Unlock()
		if old > t.size {
			old = 0
		}
		var proof [][32]byte
		if old > 0 && old < t.size {
			var err error
			if proof, err = f.cfg.Proofs(ctx, old, t.size); err != nil {
				return nil, f.count(ws, werr(OutcomeError, "consistency proof %d→%d: %v", old, t.size, err))
			}
		}
		line, err := ws.c.addCheckpoint(ctx, old, proof, t.note, t.text)
		var conflict *conflictError
		var we *witnessError
		switch {
		case err == nil:
			f.mu.Lock()
			ws.size = max(ws.size, t.size)
			f.mu.Unlock()
			f.count(ws, &witnessError{outcome: OutcomeOK})
			return line, nil
		case errors.As(err, &conflict):
			if conflict.size == old {
				return nil, f.count(ws, werr(OutcomeBadResponse, "409 reports size %d, the size we sent", old))
			}
			f.mu.Lock()
			ws.size = conflict.size
			f.mu.Unlock()
			f.m.cosignedSize.WithLabelValues(ws.w.Name).Set(float64(conflict.size))
			if conflict.size > t.size {
				return nil, f.count(ws, werr(OutcomeAhead, "the witness is at size %d, beyond the log's %d", conflict.size, t.size))
			}
			f.count(ws, &witnessError{outcome: OutcomeConflict})
			f.log.DebugContext(ctx, "witness at another size; resending", slog.String("witness", ws.w.Name),
				slog.Int64("sent_old", old), slog.Int64("witness_size", conflict.size))
			if conflicts++; conflicts >= maxConflicts {
				return nil, werr(OutcomeConflict, "still conflicting after %d resends (another feeder racing?)", conflicts)
			}
		case errors.As(err, &we):
			return nil, f.count(ws, we)
		default:
			return nil, f.count(ws, werr(OutcomeError, "%v", err))
		}
	}
}

// count increments the request counter for the outcome of e and returns e
// (nil for OutcomeOK/OutcomeConflict bookkeeping calls).
func (f *Feeder) count(ws *witnessState, e *witnessError) error {
	f.m.requests.WithLabelValues(ws.w.Name, e.outcome).Inc()
	if e.err == nil {
		return nil
	}
	return e
}

// saveSize writes the witness's size to the Store if it changed since the
// last write. A failure is logged: it costs a 409 after a restart, nothing
// more.
func (f *Feeder) saveSize(ctx context.Context, ws *witnessState) {
	f.mu.Lock()
	size, saved := ws.size, ws.saved
	f.mu.Unlock()
	if size == saved || ctx.Err() != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, sizeSaveTimeout)
	defer cancel()
	if err := f.cfg.Store.SaveWitnessSize(sctx, ws.w.VKey, size); err != nil {
		f.log.WarnContext(ctx, "saving the witness's size failed (a restart will learn it from a 409)",
			slog.String("witness", ws.w.Name), slog.Int64("size", size), slog.Any("error", err))
		return
	}
	f.mu.Lock()
	ws.saved = size
	f.mu.Unlock()
}
