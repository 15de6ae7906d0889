package sequence

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// ErrStopped wraps the cause once publishing stopped for good: the log
// found something it must not sign over (an integrity failure, a head
// inconsistent with one published before, a lost lease). An operator must
// look; a restart runs the same checks again.
var ErrStopped = errors.New("sequence: publishing stopped")

// fatalError marks a failure no retry can fix.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// fatal marks err as fatal: the pipeline stops instead of retrying it.
func fatal(err error) error { return &fatalError{err} }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

// health is the write path's readiness: the fatal stop, if any, and the
// current transient failure of each stage (cleared as soon as that stage
// succeeds again, so readiness recovers by itself).
type health struct {
	l         *Log
	mu        sync.Mutex
	transient map[string]error
	fatal     error
}

func (h *health) init(l *Log) {
	h.l = l
	h.transient = map[string]error{}
}

// stopped returns the fatal stop (wrapping ErrStopped), or nil.
func (h *health) stopped() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fatal
}

// Healthy returns why the write path is not publishing, or nil.
func (l *Log) Healthy() error {
	h := &l.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fatal != nil {
		return h.fatal
	}
	stages := make([]string, 0, len(h.transient))
	for s := range h.transient {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	var errs []error
	for _, s := range stages {
		errs = append(errs, fmt.Errorf("%s: %w", s, h.transient[s]))
	}
	return errors.Join(errs...)
}

// stop records a fatal failure once: it is logged once, set in the
// metric, answers every waiting writer, and refuses new writes.
func (h *health) stop(stage string, err error) {
	h.mu.Lock()
	if h.fatal != nil {
		h.mu.Unlock()
		return
	}
	h.fatal = fmt.Errorf("%w: %s: %v", ErrStopped, stage, err)
	stopped := h.fatal
	h.mu.Unlock()
	h.l.m.stopped.WithLabelValues(stage).Set(1)
	h.l.m.errors.WithLabelValues(stage).Inc()
	h.l.log.Error("publishing stopped: fix the cause and restart the logserver", "stage", stage, "error", err)
	h.l.failWaiters(stopped)
}

func (h *health) fail(stage string, err error, attempt int) {
	h.mu.Lock()
	h.transient[stage] = err
	h.mu.Unlock()
	h.l.m.errors.WithLabelValues(stage).Inc()
	h.l.log.Warn("write path failure, retrying", "stage", stage, "attempt", attempt, "error", err)
}

func (h *health) ok(stage string) {
	h.mu.Lock()
	delete(h.transient, stage)
	h.mu.Unlock()
}

// maxBackoff caps the retry delay.
const maxBackoff = 5 * time.Second

// retry is the write path's one retry policy: run f until it succeeds,
// waiting Interval, then twice as long each time up to maxBackoff. A fatal
// error stops publishing and is returned, as is the context's error once
// the log shuts down; a transient one marks the stage unready until f
// succeeds.
func (l *Log) retry(ctx context.Context, stage string, f func() error) error {
	delay := l.opts.Interval
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			if attempt > 1 {
				l.health.ok(stage)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isFatal(err) {
			l.health.stop(stage, err)
			return err
		}
		l.health.fail(stage, err, attempt)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, maxBackoff)
	}
}
