package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/witness/admin"
	"github.com/stellaops/tlog/witness/api"
	"github.com/stellaops/tlog/witness/config"
	"github.com/stellaops/tlog/witness/store"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// serveCmd runs the witness until ctx is cancelled (SIGINT, SIGTERM), then
// shuts down in order: fail readiness, stop accepting and drain HTTP
// requests, close the admin socket, close the store.
func serveCmd(ctx context.Context, args []string, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := service.ConfigFlag(fs, "witness.yaml")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	logger, err := cfg.Logging.Logger(stderr)
	if err != nil {
		return err
	}

	signer, closeKey, err := loadSigner(ctx, cfg, logger)
	if err != nil {
		return err
	}
	// Deferred before the store, so it runs after it: the key is released
	// once every request has finished.
	defer func() {
		if cerr := closeKey(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the witness key: %w", cerr))
		}
	}()
	st, err := store.Open(cfg.DBFile, store.Options{})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, st.Close())
		logger.InfoContext(ctx, "store closed")
	}()

	var logs []store.Log
	overrides := make(map[string]tlogwitness.Budget)
	for _, l := range cfg.Logs {
		logs = append(logs, store.Log{Origin: l.Origin, VerifierKeys: l.VKeys})
		if l.Budget != nil {
			overrides[l.Origin] = tlogwitness.Budget{Rate: l.Budget.Rate, Burst: l.Budget.Burst}
		}
	}
	disabled, err := st.SyncConfigLogs(logs, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("registering configured logs: %w", err)
	}
	for _, o := range disabled {
		logger.WarnContext(ctx, "disabled a log no longer in the configuration", slog.String("origin", o))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := api.NewMetrics(reg)
	registered, err := st.Logs()
	if err != nil {
		return err
	}
	for _, l := range registered {
		if c, err := st.Checkpoint(store.ID(l.Origin)); err == nil {
			metrics.SetTreeSize(l.Origin, c.Size)
		}
	}

	w := tlogwitness.New(st, signer, tlogwitness.Options{
		Budgets: tlogwitness.NewTokenBuckets(tlogwitness.Budget{Rate: cfg.Budget.Rate, Burst: cfg.Budget.Burst}, overrides),
		Logger:  logger,
	})
	handler := api.New(api.Config{
		Witness: w, Metrics: metrics, Logger: logger,
		SubmissionPrefix: cfg.SubmissionPrefix, MonitoringPrefix: cfg.MonitoringPrefix,
		MaxBodyBytes: cfg.MaxBodyBytes, ServeMetrics: cfg.MetricsListen == "",
	})

	var servers []service.Server
	defer func() { // listeners of an early return; service.Run closes its own
		for _, s := range servers {
			s.Listener.Close()
		}
	}()
	listen := func(name, addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", name, err)
		}
		servers = append(servers, service.Server{Name: name, Listener: ln, Handler: h})
		return nil
	}
	if err := listen("public", cfg.Listen, handler); err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		mux.Handle("/healthz", handler)
		mux.Handle("/readyz", handler)
		if err := listen("metrics", cfg.MetricsListen, mux); err != nil {
			return err
		}
	}
	adminLn, err := admin.Listen(cfg.AdminSocket)
	if err != nil {
		return err
	}
	servers = append(servers, service.Server{Name: "admin", Listener: adminLn, Handler: admin.Handler(&admin.Local{Store: st})})

	keySource := "key_file " + cfg.KeyFile
	if p := cfg.PKCS11; p != nil {
		keySource = fmt.Sprintf("pkcs11 token %q key %q", p.TokenLabel, p.KeyLabel)
	}
	if sk := cfg.Signer; sk != nil {
		keySource = fmt.Sprintf("signer %s key %q", sk.URL, sk.Key)
	}
	started := func() {
		logger.InfoContext(ctx, "witness started", slog.String("vkey", signer.VerifierKey()),
			slog.String("key", keySource), slog.Int("logs", len(registered)))
	}
	run := servers
	servers = nil
	return service.Run(ctx, logger, cfg.HTTP, service.Hooks{Started: started, Drain: handler.Drain}, run...)
}
