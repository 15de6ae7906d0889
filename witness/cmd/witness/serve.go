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
	cfgPath := fs.String("c", "witness.yaml", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)

	signer, closeKey, err := loadSigner(ctx, cfg)
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

	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	type server struct {
		name string
		srv  *http.Server
		ln   net.Listener
	}
	var servers []server
	defer func() {
		for _, s := range servers {
			s.ln.Close()
		}
	}()
	listen := func(name, addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", name, err)
		}
		servers = append(servers, server{name, newServer(h), ln})
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
	servers = append(servers, server{"admin", newServer(admin.Handler(&admin.Local{Store: st})), adminLn})

	serveErr := make(chan error, len(servers))
	for _, s := range servers {
		logger.InfoContext(ctx, "listening", slog.String("server", s.name), slog.String("addr", s.ln.Addr().String()))
		go func() {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("%s server: %w", s.name, err)
			}
		}()
	}
	keySource := "key_file " + cfg.KeyFile
	if p := cfg.PKCS11; p != nil {
		keySource = fmt.Sprintf("pkcs11 token %q key %q", p.TokenLabel, p.KeyLabel)
	}
	logger.InfoContext(ctx, "witness started", slog.String("vkey", signer.VerifierKey()),
		slog.String("key", keySource), slog.Int("logs", len(registered)))

	select {
	case <-ctx.Done():
		logger.InfoContext(ctx, "shutting down")
	case err = <-serveErr:
		logger.ErrorContext(ctx, "server failed, shutting down", slog.Any("error", err))
	}
	handler.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if serr := s.srv.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("%s shutdown: %w", s.name, serr))
			s.srv.Close()
		}
	}
	servers = nil
	return err
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
