package sequence

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// ErrDuplicate is returned by Add for an entry that is already in the log
// (or queued): its leaf hash is the existing entry's UUID.
type ErrDuplicate struct{ LeafHash tree.Hash }

func (e *ErrDuplicate) Error() string {
	return "an equivalent entry already exists with UUID " + hex.EncodeToString(e.LeafHash[:])
}

// TooLargeError is returned by Add for an entry or search key over its
// cap; nothing is queued.
type TooLargeError struct {
	What      string // "entry" or "search key"
	Size, Max int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the canonical %s is %d bytes, more than this log's limit of %d bytes", e.What, e.Size, e.Max)
}

// ErrOverloaded is returned by Add, at once, while the entries and writers
// in flight are at their bounds (Options.MaxPendingBytes, MaxPending):
// retry later.
var ErrOverloaded = errors.New("sequence: too many writes in flight, retry later")

// ErrClosed is returned once the log is shutting down.
var ErrClosed = errors.New("sequence: log is shutting down")

type pending struct {
	value []byte // nil once queued: a writer that gave up pins no entry
	extra []byte // Trillian ExtraData: the search keys
	size  int64  // bytes counted against MaxPendingBytes until queued
	hash  tree.Hash
	done  chan result // receives exactly one result

	// Guarded by Log.mu. A writer is answered by a publish only once its own
	// queue transaction said the leaf is new (queued); a publish that comes
	// first parks the result in published for queue to deliver. Another
	// writer of the same entry whose queue transaction reports a duplicate
	// gets 409, never the other writer's 201.
	queued    bool
	published *result
}

type result struct {
	entry store.Entry
	head  *Head
	err   error
}

// admission bounds what Add holds in memory.
type admission struct {
	mu      sync.Mutex
	bytes   int64 // admitted, not yet queued
	writers int   // in Add
}

func (a *admission) acquire(o *Options, size int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.writers+1 > o.MaxPending || (a.bytes > 0 && a.bytes+size > o.MaxPendingBytes) {
		return false
	}
	a.writers++
	a.bytes += size
	return true
}

func (a *admission) release(size int64) {
	a.mu.Lock()
	a.bytes -= size
	a.mu.Unlock()
}

func (a *admission) leave() {
	a.mu.Lock()
	a.writers--
	a.mu.Unlock()
}

// extraData carries an entry's search keys in Trillian's ExtraData, so
// they are stored with the queued leaf and published from it.
type extraData struct {
	Keys []string `json:"keys,omitempty"`
}

func decodeKeys(extra []byte) ([]string, error) {
	if len(extra) == 0 {
		return nil, nil
	}
	var x extraData
	if err := json.Unmarshal(extra, &x); err != nil {
		return nil, fmt.Errorf("leaf extra data: %w", err)
	}
	return x.Keys, nil
}

// Add submits a canonical entry with its search keys and waits until it is
// integrated and published. On success it returns the stored entry and the
// head that covers it.
func (l *Log) Add(ctx context.Context, value []byte, keys []string) (store.Entry, *Head, error) {
	if l.closed.Load() {
		return store.Entry{}, nil, ErrClosed
	}
	if err := l.health.stopped(); err != nil {
		return store.Entry{}, nil, err
	}
	if len(value) > l.opts.MaxEntryBytes {
		return store.Entry{}, nil, &TooLargeError{What: "entry", Size: len(value), Max: l.opts.MaxEntryBytes}
	}
	for _, k := range keys {
		if len(k) > store.MaxIndexKeyBytes {
			return store.Entry{}, nil, &TooLargeError{What: "search key", Size: len(k), Max: store.MaxIndexKeyBytes}
		}
	}
	p := &pending{value: value, done: make(chan result, 1)}
	if len(keys) > 0 {
		p.extra, _ = json.Marshal(extraData{Keys: keys})
	}
	p.size = int64(len(p.value) + len(p.extra))
	copy(p.hash[:], rfc6962.DefaultHasher.HashLeaf(value))
	if !l.limits.acquire(&l.opts, p.size) {
		l.m.overloaded.Inc()
		return store.Entry{}, nil, ErrOverloaded
	}
	defer l.limits.leave()
	start := time.Now()
	select {
	case l.admit <- p:
	case <-ctx.Done():
		l.limits.release(p.size)
		return store.Entry{}, nil, ctx.Err()
	}
	select {
	case r := <-p.done:
		if r.err == nil {
			l.m.addLatency.Observe(time.Since(start).Seconds())
		}
		return r.entry, r.head, r.err
	case <-ctx.Done():
		// The entry may still be integrated (a retry will get 409) and is
		// then indexed from its stored keys; nothing of it stays here.
		l.unwait(p)
		return store.Entry{}, nil, ctx.Err()
	}
}

func (l *Log) admitLoop(ctx context.Context) {
	defer l.wg.Done()
	var carry *pending
	for {
		var batch []*pending
		var bytes int64
		if carry != nil {
			batch, bytes, carry = append(batch, carry), carry.size, nil
		} else {
			select {
			case p := <-l.admit:
				batch, bytes = append(batch, p), p.size
			case <-ctx.Done():
				return
			}
		}
	drain:
		for len(batch) < l.opts.BatchSize {
			select {
			case p := <-l.admit:
				if bytes+p.size > int64(l.opts.MaxBatchBytes) {
					carry = p
					break drain
				}
				batch, bytes = append(batch, p), bytes+p.size
			default:
				break drain
			}
		}
		l.queue(ctx, batch)
	}
}

// queue admits one batch: registers the waiters, queues the leaves (with
// their search keys) in one transaction, answers duplicates, wakes the
// sequencer.
func (l *Log) queue(ctx context.Context, batch []*pending) {
	start := time.Now()
	var leaves []Leaf
	var queued, dups []*pending
	seen := map[tree.Hash]bool{}
	l.mu.Lock()
	for _, p := range batch {
		if seen[p.hash] {
			dups = append(dups, p) // same entry twice in one batch: the first wins
			continue
		}
		seen[p.hash] = true
		l.waiters[p.hash] = append(l.waiters[p.hash], p)
		queued = append(queued, p)
		leaves = append(leaves, Leaf{Value: p.value, ExtraData: p.extra, Hash: p.hash})
	}
	l.mu.Unlock()

	var dup []bool
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// A batch fails as a whole when a concurrent transaction inserts the
		// same leaf first; the retry sees that leaf and reports a duplicate.
		if dup, err = l.backend.QueueLeaves(ctx, leaves); err == nil || ctx.Err() != nil {
			break
		}
		l.log.Warn("queue leaves, retrying", "attempt", attempt, "leaves", len(leaves), "error", err)
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
	for _, p := range batch {
		l.limits.release(p.size)
		p.value, p.extra = nil, nil
	}
	l.m.queueLatency.Observe(time.Since(start).Seconds())
	l.m.batchSize.Observe(float64(len(leaves)))
	if err != nil {
		l.log.Error("queue leaves", "leaves", len(leaves), "error", err)
		l.m.errors.WithLabelValues("queue").Inc()
		for _, p := range queued {
			l.unwait(p)
			p.done <- result{err: fmt.Errorf("queue leaf: %w", err)}
		}
		for _, p := range dups {
			p.done <- result{err: fmt.Errorf("queue leaf: %w", err)}
		}
		return
	}
	fresh := 0
	l.mu.Lock()
	for i, p := range queued {
		if dup[i] {
			l.unwaitLocked(p)
			dups = append(dups, p)
			continue
		}
		fresh++
		p.queued = true
		if p.published != nil {
			p.done <- *p.published
		}
	}
	l.mu.Unlock()
	if fresh > 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	for _, p := range dups {
		l.m.duplicates.Inc()
		p.done <- result{err: &ErrDuplicate{LeafHash: p.hash}}
	}
}

func (l *Log) unwait(p *pending) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unwaitLocked(p)
}

func (l *Log) unwaitLocked(p *pending) {
	ws := l.waiters[p.hash]
	for i, w := range ws {
		if w == p {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(l.waiters, p.hash)
	} else {
		l.waiters[p.hash] = ws
	}
}

func (l *Log) waiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters) > 0
}

// answer delivers a publish to the writers waiting for e.
func (l *Log) answer(entries []store.Entry, h *Head) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		for _, w := range l.waiters[e.LeafHash] {
			r := result{entry: e, head: h}
			if w.queued {
				w.done <- r
			} else {
				w.published = &r
			}
		}
		delete(l.waiters, e.LeafHash)
	}
}

// failWaiters answers every waiting writer with err.
func (l *Log) failWaiters(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for h, ws := range l.waiters {
		for _, p := range ws {
			if p.queued {
				p.done <- result{err: err}
			} else {
				p.published = &result{err: err}
			}
		}
		delete(l.waiters, h)
	}
}
