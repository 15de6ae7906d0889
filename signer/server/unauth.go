package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// unauthGate is the state shared by every request that failed
// authentication: one global token bucket (past it: 429) and a sampled
// log line.
type unauthGate struct {
	limiter *rate.Limiter
	every   time.Duration

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

func newUnauthGate(c UnauthenticatedConfig) *unauthGate {
	return &unauthGate{limiter: rate.NewLimiter(rate.Limit(c.RPS), c.Burst), every: c.LogInterval}
}

// logf logs one refused unauthenticated request unless another was logged
// less than g.every ago; the next line that is logged says how many were
// not.
func (g *unauthGate) logf(ctx context.Context, log *slog.Logger, endpoint, remote, requestID string, status int, err error) {
	now := time.Now()
	g.mu.Lock()
	if !g.lastLog.IsZero() && now.Sub(g.lastLog) < g.every {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	suppressed := g.suppressed
	g.lastLog, g.suppressed = now, 0
	g.mu.Unlock()
	log.WarnContext(ctx, "signer refused an unauthenticated request", slog.String("endpoint", endpoint),
		slog.String("remote", remote), slog.String("request_id", requestID), slog.Int("status", status), slog.Any("error", err),
		slog.Int("not_logged_since_last", suppressed))
}
