package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/admission"
	"github.com/stellaops/tlog/logserver/budget"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/queue"
	"github.com/stellaops/tlog/logserver/tenant"
	"github.com/stellaops/tlog/logserver/upstream"
)

// startAdmission builds tenants, budgets and the admission middleware of
// the submission endpoints (package admission) around next, and the TLS
// configuration of the listener (cfg.TLS). The pending queue plugs into
// a.admission.Queue (queueAdmission).
func (a *App) startAdmission(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, next http.Handler) (http.Handler, error) {
	ids := make([]tenant.Identity, 0, len(cfg.Tenants.Identities))
	for _, id := range cfg.Tenants.Identities {
		hashes, err := id.TokenHashes()
		if err != nil {
			return nil, fmt.Errorf("tenants.identities %s: %w", id.Name, err)
		}
		ids = append(ids, tenant.Identity{Name: id.Name, TokenHashes: hashes, CertNames: id.ClientCerts})
	}
	res, err := tenant.NewResolver(ids, cfg.Tenants.DefaultTenant)
	if err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	b := cfg.Budgets
	a.admission = &admission.Admission{
		Resolver:              res,
		RequireAuthentication: cfg.Tenants.RequireAuthentication,
		Classifier:            admission.Classifier{EdgeKinds: b.EdgeKinds, EdgePredicateTypes: b.EdgePredicateTypes, EdgeMinBytes: b.EdgeMinBytes},
		MaxRequestBytes:       cfg.API.MaxRequestBytes,
		MaxRetryAfter:         b.MaxRetryAfter,
		V2:                    cfg.RekorV2 != nil,
		Metrics:               admission.NewMetrics(reg),
		Logger:                a.log,
	}
	if store := a.budgetStore(cfg); store != nil {
		p := store.Policy()
		a.admission.Budgets = store
		// The budget gauges start from the database's state for every
		// tenant the configuration names (others appear at their first
		// submission).
		names := []string{cfg.Tenants.DefaultTenant}
		for _, id := range cfg.Tenants.Identities {
			names = append(names, id.Name)
		}
		for name := range b.Tenants {
			names = append(names, name)
		}
		for _, name := range names {
			left, err := store.Remaining(ctx, name)
			if err != nil {
				return nil, err
			}
			a.admission.Metrics.Budget(name, left, p.For(name).HourlyLimit)
		}
		a.log.Info("submission budgets", "default_hourly", b.Default.HourlyLimit, "default_burst", b.Default.BurstLimit,
			"burst_window", b.Default.BurstWindow, "default_edge_daily", b.Default.EdgeBundleDailyLimit, "tenants", len(b.Tenants))
	}
	if cfg.TLS != nil {
		if a.tls, err = serverTLS(cfg.TLS); err != nil {
			return nil, err
		}
	}
	return a.admission.Wrap(next), nil
}

// budgetStore is the budget store (one per App, shared by admission and
// upstream replay), nil with budgets off.
func (a *App) budgetStore(cfg *config.Config) *budget.Store {
	b := cfg.Budgets
	if !b.Enabled {
		return nil
	}
	if a.budgets == nil {
		p := budget.Policy{Default: limits(b.Default), Tenants: map[string]budget.Limits{}}
		for name, l := range b.Tenants {
			p.Tenants[name] = limits(l)
		}
		a.budgets = budget.New(a.db, p, budget.Options{})
	}
	return a.budgets
}

// upstreamBudget charges upstream replay to cfg.Upstream's tenant; nil
// (unlimited) with budgets off.
func (a *App) upstreamBudget(cfg *config.Config) upstream.Budget {
	s := a.budgetStore(cfg)
	if s == nil {
		return nil
	}
	return replayBudget{s}
}

// replayBudget is the budget store as upstream.Budget.
type replayBudget struct{ s *budget.Store }

func (r replayBudget) Take(ctx context.Context, tenant, tier string) (bool, time.Duration, error) {
	d, err := r.s.Take(ctx, tenant, tier)
	return d.Admitted, d.RetryAfter, err
}

// queueAdmission gives the pending queue the admission's tenants, tier
// rules and budgets: its API attributes and classifies requests as the
// write endpoints do, and its drainer charges the budget store.
func (a *App) queueAdmission(o *queue.Options) {
	ad := a.admission
	o.Resolve = ad.Resolver.Resolve
	o.RequireAuthentication = ad.RequireAuthentication
	o.Tier = func(r *http.Request, api string, body []byte) (string, error) {
		return ad.Classifier.Tier(api, r.Header.Get(admission.TierHeader), body)
	}
	if ad.Budgets != nil {
		o.Budget = queueBudget{ad.Budgets}
	}
}

// queueBudget is the budget store as queue.Budget.
type queueBudget struct{ s *budget.Store }

func (q queueBudget) Take(ctx context.Context, tenant, tier string) (queue.Admission, error) {
	d, err := q.s.Take(ctx, tenant, tier)
	return queue.Admission{Admitted: d.Admitted, RetryAfter: d.RetryAfter}, err
}

func (q queueBudget) Refund(ctx context.Context, tenant, tier string) error {
	return q.s.Refund(ctx, tenant, tier)
}

func limits(l config.BudgetLimits) budget.Limits {
	return budget.Limits{HourlyLimit: l.HourlyLimit, BurstLimit: l.BurstLimit, BurstWindow: l.BurstWindow, EdgeDailyLimit: l.EdgeBundleDailyLimit}
}

// serverTLS is the listener's TLS: the server certificate and, with a
// client CA, client certificates verified when given (or required).
func serverTLS(t *config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file %s: no PEM certificate", t.ClientCAFile)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return c, nil
}
