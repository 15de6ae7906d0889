// Package retry is the one exponential-backoff policy of the appliance's
// background work (the logserver's pending queue and upstream replay): the
// seed's retry block, maxAttempts, initialDelay, maxDelay and
// backoffMultiplier.
//
// Contract: [Policy.Delay] is InitialDelay after the first failure, then
// multiplied by Multiplier per further failure and never above MaxDelay;
// [Policy.Exhausted] is true once MaxAttempts attempts have failed
// (MaxAttempts -1 retries for ever). Validate fills the seed's defaults.
// [After] reads the wait a server asks for in Retry-After.
package retry

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is a retry configuration block.
type Policy struct {
	// MaxAttempts is how many attempts are made before an item is marked
	// failed (and kept for an operator). -1: retry for ever. Default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialDelay is the wait after the first failed attempt. Default 5s.
	InitialDelay time.Duration `yaml:"initial_delay"`
	// MaxDelay caps the wait between attempts. Default 5m.
	MaxDelay time.Duration `yaml:"max_delay"`
	// Multiplier grows the wait after each further failure. Default 2.0;
	// at least 1.
	Multiplier float64 `yaml:"backoff_multiplier"`
}

// Validate fills zero fields with the defaults and checks the rest.
func (p *Policy) Validate() error {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 3
	}
	if p.InitialDelay == 0 {
		p.InitialDelay = 5 * time.Second
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = 5 * time.Minute
	}
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
	var errs []error
	if p.MaxAttempts < -1 {
		errs = append(errs, fmt.Errorf("max_attempts %d: want -1 (for ever) or at least 1", p.MaxAttempts))
	}
	if p.InitialDelay <= 0 || p.MaxDelay < p.InitialDelay {
		errs = append(errs, fmt.Errorf("initial_delay %s, max_delay %s: want 0 < initial_delay <= max_delay", p.InitialDelay, p.MaxDelay))
	}
	if p.Multiplier < 1 || math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) {
		errs = append(errs, fmt.Errorf("backoff_multiplier %v: want at least 1", p.Multiplier))
	}
	return errors.Join(errs...)
}

// Delay is the wait after failed attempt number failures (1 for the
// first failure).
func (p Policy) Delay(failures int) time.Duration {
	if failures < 1 {
		return 0
	}
	d := float64(p.InitialDelay) * math.Pow(p.Multiplier, float64(failures-1))
	if d >= float64(p.MaxDelay) {
		return p.MaxDelay
	}
	return time.Duration(d)
}

// Exhausted reports whether an item that has failed failures times gets
// no further attempt.
func (p Policy) Exhausted(failures int) bool {
	return p.MaxAttempts > 0 && failures >= p.MaxAttempts
}

// After is the wait a Retry-After header asks for: delay-seconds or an
// HTTP date; 0 when absent, malformed or past.
func After(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
