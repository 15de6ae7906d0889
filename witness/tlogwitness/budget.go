package tlogwitness

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Budget is a token bucket: Rate requests per second on average, with
// bursts of up to Burst requests.
type Budget struct {
	Rate  float64
	Burst int
}

// TokenBuckets implements Budgets with one in-memory token bucket per origin.
// Budgets restart full when the process restarts.
type TokenBuckets struct {
	def       Budget
	overrides map[string]Budget

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewTokenBuckets returns budgets of def for every log, except the origins
// in overrides.
func NewTokenBuckets(def Budget, overrides map[string]Budget) *TokenBuckets {
	return &TokenBuckets{def: def, overrides: overrides, buckets: make(map[string]*rate.Limiter)}
}

// Allow spends one token of origin's bucket if there is one.
func (t *TokenBuckets) Allow(origin string) (bool, time.Duration) {
	t.mu.Lock()
	lim, ok := t.buckets[origin]
	if !ok {
		b, ok := t.overrides[origin]
		if !ok {
			b = t.def
		}
		lim = rate.NewLimiter(rate.Limit(b.Rate), b.Burst)
		t.buckets[origin] = lim
	}
	t.mu.Unlock()
	r := lim.Reserve()
	if !r.OK() {
		return false, time.Minute
	}
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}
