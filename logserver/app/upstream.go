package app

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/upstream"
)

// startUpstream builds upstream replay (config upstream:): the outboxes
// the v1 and v2 write handlers record into, the forwarders (running until
// close) and the listing at /api/v1/upstream/entries. Without upstream:
// a.upstream stays nil and the handlers get no outbox.
func (a *App) startUpstream(ctx context.Context, cfg *config.Config, st *store.Store, reg prometheus.Registerer, mux *http.ServeMux) error {
	u := cfg.Upstream
	if u == nil {
		return nil
	}
	var logs []upstream.Log
	if u.V1 != nil {
		key, err := os.ReadFile(u.V1.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("upstream.v1.public_key_file: %w", err)
		}
		logs = append(logs, upstream.Log{API: upstream.V1, URL: u.V1.URL, Key: key, TreeID: st.ActiveTree})
	}
	if u.V2 != nil {
		key, err := os.ReadFile(u.V2.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("upstream.v2.public_key_file: %w", err)
		}
		logs = append(logs, upstream.Log{API: upstream.V2, URL: u.V2.URL, Key: key,
			TreeID: func(ctx context.Context) (int64, error) { return st.RoleTree(ctx, v2Role) }})
	}
	r, err := upstream.New(upstream.Config{
		DB: a.db, Entries: st, Logs: logs,
		Timeout: u.Timeout, PollInterval: u.PollInterval, Grace: u.Grace, Retry: u.Retry,
		Tenant: u.Tenant, Tier: u.Tier, MaxOutbox: u.MaxOutbox, Parallel: u.Parallel,
		Budget: a.upstreamBudget(cfg),
		Logger: a.log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	r.Register(mux)
	r.Start(ctx)
	a.upstream = r
	a.log.Info("upstream replay", "v1", u.V1 != nil, "v2", u.V2 != nil, "tenant", u.Tenant)
	return nil
}

// upstreamOutbox is the outbox of the local log api for its write
// handler, nil (no outbox) without upstream replay of that log.
func (a *App) upstreamOutbox(api upstream.API) interface {
	Before(ctx context.Context, leafHash [32]byte, body []byte) (func(logged bool), error)
} {
	if a.upstream == nil || a.upstream.Outbox(api) == nil {
		return nil
	}
	return a.upstream.Outbox(api)
}
