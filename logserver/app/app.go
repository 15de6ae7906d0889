// Package app builds a running logserver from its configuration: database
// and migrations, the log key, the Trillian backend and its tree, the write
// path, and the HTTP server (Rekor API, health, metrics). main.go and the
// tests use it the same way: New, Serve, Shutdown.
package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stellaops/tlog/internal/durablefile"
	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/logserver/admission"
	"github.com/stellaops/tlog/logserver/budget"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/logkey"
	"github.com/stellaops/tlog/logserver/rekorv1"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tlogtiles"
	"github.com/stellaops/tlog/logserver/upstream"
	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/logserver/witnessing/sqlstore"
	signerclient "github.com/stellaops/tlog/signer/client"
	sqlschema "github.com/stellaops/tlog/sql"
)

// App is a built logserver.
type App struct {
	cfg     *config.Config
	log     *slog.Logger
	db      *sql.DB
	backend sequence.Backend
	lease   *store.Lease // embedded mode: held while sequencing
	seq     *sequence.Log
	handler http.Handler // every API, health and metrics
	signer  logkey.Signer

	draining   atomic.Bool // shutdown began: /readyz fails
	stopServe  context.CancelFunc
	serveCtx   context.Context
	serving    chan struct{} // closed when Serve returns; nil before Serve
	servingSet atomic.Bool

	feeder     atomic.Pointer[witnessing.Feeder] // nil without witnessing
	stopFeeder context.CancelFunc
	feederDone chan struct{}

	v2 *rekorV2 // nil without rekor_v2

	upstream *upstream.Replay // nil without upstream replay

	queue *queueRun // nil with queue.disabled

	stopTUF context.CancelFunc // nil without trust.tuf
	tufDone chan struct{}

	admission *admission.Admission // tenants and budgets (budget.go)
	budgets   *budget.Store        // nil with budgets off
	tls       *tls.Config          // nil without cfg.TLS
}

// New builds every part. It waits (until ctx ends) for the database to
// accept connections, so the logserver can start before MySQL is up.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger) (a *App, err error) {
	a = &App{cfg: cfg, log: logger}
	built := a // the returns below set a to nil
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	dsn, err := databaseDSN(cfg.Database)
	if err != nil {
		return nil, err
	}
	if a.db, err = sql.Open("mysql", dsn); err != nil {
		return nil, err
	}
	a.db.SetMaxOpenConns(cfg.Database.MaxConns)
	a.db.SetMaxIdleConns(cfg.Database.MaxConns)
	if err := waitDB(ctx, a.db, logger); err != nil {
		return nil, err
	}
	st := store.New(a.db)
	if err := st.CheckServer(ctx, store.ServerRequirements{MaxEntryBytes: cfg.Sequencer.MaxEntryBytes,
		AllowNonDurable: cfg.Database.AllowNonDurable}); err != nil {
		return nil, err
	}
	if cfg.Trillian.Mode == "embedded" {
		schema, err := migrate.TrillianSchemaFile(cfg.Trillian.SchemaFile)
		if err != nil {
			return nil, err
		}
		if err := migrate.ApplyTrillian(ctx, a.db, schema); err != nil {
			return nil, err
		}
	}
	if err := migrate.Apply(ctx, a.db, sqlschema.FS, "logserver", "logserver"); err != nil {
		return nil, err
	}

	key, err := openKey(ctx, cfg.Key, logger)
	if err != nil {
		return nil, err
	}
	a.signer = key
	pubPEM, err := logkey.PublicPEM(key.Public())
	if err != nil {
		return nil, err
	}
	if cfg.Key.PublicKeyFile != "" {
		if err := writeFileAtomic(cfg.Key.PublicKeyFile, pubPEM); err != nil {
			return nil, fmt.Errorf("public key file: %w", err)
		}
	}

	if a.backend, err = openTree(ctx, cfg, dsn, st, logger); err != nil {
		return nil, err
	}
	var lease sequence.Lease
	if cfg.Trillian.Mode == "embedded" {
		// One sequencer per tree: a second logserver fails here, clearly.
		if a.lease, err = st.AcquireLease(ctx, a.backend.TreeID()); err != nil {
			return nil, err
		}
		lease = a.lease
	}
	notary, err := sequence.NewRekor(key, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	var alsoSigned []sequence.Origin
	var cpSigner *witnessing.CheckpointSigner
	if cfg.Witnessing.KeyFile != "" {
		if cpSigner, err = loadCheckpointSigner(cfg.Witnessing); err != nil {
			return nil, err
		}
		alsoSigned = append(alsoSigned, sequence.Origin{Name: cpSigner.Origin(), KeyID: sha256.Sum256([]byte(cpSigner.VerifierKey()))})
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerFrozen(reg, cfg)
	a.seq, err = sequence.Open(ctx, a.backend, sequence.MySQLStore(st), notary, sequence.Options{
		// The feeder, once started, hears of every new head.
		OnHead: func(h *sequence.Head) {
			if f := a.feeder.Load(); f != nil {
				f.Update(witnessing.Head{Size: h.Size, Root: h.Root})
			}
		},
		BatchSize:       cfg.Sequencer.BatchSize,
		AdmitWorkers:    cfg.Sequencer.AdmitWorkers,
		Interval:        cfg.Sequencer.Interval,
		TileCache:       cfg.Sequencer.TileCache,
		MaxEntryBytes:   cfg.Sequencer.MaxEntryBytes,
		MaxPendingBytes: cfg.Sequencer.MaxPendingBytes,
		MaxPending:      cfg.Sequencer.MaxPending,
		StateDir:        cfg.Sequencer.StateDir,
		AlsoSigned:      alsoSigned,
		Lease:           lease,
		Logger:          logger,
		Metrics:         sequence.NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	if cpSigner != nil {
		if err := a.startWitnessing(ctx, cfg, cpSigner, reg, mux); err != nil {
			return nil, err
		}
	}
	tiles, err := tlogtiles.New(&tlogtiles.Log{
		TreeID: a.seq.Head().TreeID, Store: st, Tree: a.seq.Tree(),
		Size: func() int64 { return a.seq.Head().Size }, Latest: a.latestC2SP,
	}, cfg.Tiles.Prefix, logger)
	if err != nil {
		return nil, err
	}
	tiles.Register(mux)
	if err := a.startUpstream(ctx, cfg, st, reg, mux); err != nil {
		return nil, err
	}
	if cfg.RekorV2 != nil {
		if err := a.startRekorV2(ctx, cfg, dsn, st, reg, mux); err != nil {
			return nil, err
		}
	}
	if cfg.Trust != nil {
		if err := a.startTrust(ctx, cfg, st, reg, mux); err != nil {
			return nil, err
		}
	}
	algs, err := rekorv1.NewAlgorithmRegistry(cfg.API.SigningAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("api.signing_algorithms: %w", err)
	}
	api := rekorv1.New(a.seq, st, rekorv1.Options{
		Algorithms:      algs,
		MaxRequestBytes: cfg.API.MaxRequestBytes,
		WriteTimeout:    cfg.API.WriteTimeout,
		PublicKeyPEM:    pubPEM,
		Logger:          logger,
		Outbox:          a.upstreamOutbox(upstream.V1),
		ReadOnly:        readOnly(cfg.Freeze),
	}, reg)
	api.Register(mux)
	admitted, err := a.startAdmission(ctx, cfg, reg, mux)
	if err != nil {
		return nil, err
	}
	if err := a.startQueue(ctx, reg, mux, api); err != nil {
		return nil, err
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	limit := &writeLimit{maxRequests: cfg.API.MaxInflightWrites, maxBytes: cfg.API.MaxInflightWriteBytes, maxBody: cfg.API.MaxRequestBytes}
	a.handler = limit.wrap(admitted)
	a.serveCtx, a.stopServe = context.WithCancel(context.Background())
	h := a.seq.Head()
	logger.Info("logserver ready", "tree_id", h.TreeID, "size", h.Size, "log_id", a.seq.LogID(), "hostname", cfg.Hostname, "frozen", cfg.Freeze.Frozen)
	return a, nil
}

// databaseDSN is the DSN every connection uses (ours and Trillian's).
func databaseDSN(d config.Database) (string, error) {
	mc, err := mysql.ParseDSN(d.DSN)
	if err != nil {
		return "", fmt.Errorf("database dsn: %w", err)
	}
	mc.ParseTime = false
	// Arguments are interpolated client-side (safe with utf8mb4): one round
	// trip per statement instead of prepare/execute/close, for us and for
	// Trillian's storage, which issues most of its statements that way.
	mc.InterpolateParams = true
	// Strict mode on every connection (ours and Trillian's): a value that
	// does not fit is an error, never a warning and a truncated row.
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["sql_mode"] = "'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
	return mc.FormatDSN(), nil
}

// loadCheckpointSigner opens the C2SP checkpoint's note key (and writes its
// verifier key): its origin and key are guarded like the Rekor checkpoint's.
func loadCheckpointSigner(w config.Witnessing) (*witnessing.CheckpointSigner, error) {
	key, err := witnessing.LoadOrCreateKey(w.KeyFile, w.CreateKey)
	if err != nil {
		return nil, fmt.Errorf("witnessing.key_file: %w", err)
	}
	signer, err := witnessing.NewCheckpointSigner(w.Origin, key)
	if err != nil {
		return nil, err
	}
	if w.VKeyFile != "" {
		if err := writeFileAtomic(w.VKeyFile, []byte(signer.VerifierKey()+"\n")); err != nil {
			return nil, fmt.Errorf("witnessing.vkey_file: %w", err)
		}
	}
	return signer, nil
}

// latestC2SP is the newest published C2SP checkpoint (served by the tiles
// at <prefix>checkpoint), nil without witnessing or before the first.
func (a *App) latestC2SP() []byte {
	if f := a.feeder.Load(); f != nil {
		if cp := f.Latest(); cp != nil {
			return cp.Note
		}
	}
	return nil
}

// startWitnessing builds the witness feeder and starts it on the current
// head.
func (a *App) startWitnessing(ctx context.Context, cfg *config.Config, signer *witnessing.CheckpointSigner, reg prometheus.Registerer, mux *http.ServeMux) error {
	w := cfg.Witnessing
	var err error
	var pol *witnessing.Policy
	if w.PolicyFile != "" {
		if pol, err = witnessing.ParsePolicyFile(w.PolicyFile); err != nil {
			return err
		}
	}
	h := a.seq.Head()
	f, err := witnessing.New(ctx, witnessing.Config{
		Policy: pol, Signer: signer, Proofs: witnessing.TreeProofs(a.seq.Tree()),
		Store: sqlstore.New(a.db, h.TreeID), Logger: a.log, Registerer: reg,
		RequestTimeout: w.RequestTimeout, MaxParallel: w.MaxParallel, MinRetry: w.RetryMin,
		MaxRetry: w.RetryMax, QuorumGrace: w.QuorumGrace, MaxClockSkew: w.MaxClockSkew,
	})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopFeeder = cancel
	a.feederDone = make(chan struct{})
	go func() {
		defer close(a.feederDone)
		if err := f.Run(runCtx); err != nil {
			a.log.Error("witness feeder stopped", "error", err)
		}
	}()
	// Heads published from now on reach the feeder through OnHead; the
	// current one is given here (a duplicate Update is harmless).
	a.feeder.Store(f)
	f.Update(witnessing.Head{Size: a.seq.Head().Size, Root: a.seq.Head().Root})
	a.log.Info("witnessing", "origin", w.Origin, "vkey", signer.VerifierKey(), "policy", w.PolicyFile)
	return nil
}

// openKey opens a key (the log key, a TUF key): in the signer service
// (waiting for a starting signer, signerclient.Open), or a PEM file.
func openKey(ctx context.Context, k config.Key, logger *slog.Logger) (logkey.Signer, error) {
	if k.Signer == nil {
		return logkey.OpenFile(k.File, k.Create)
	}
	c, err := signerclient.Open(ctx, *k.Signer, logger)
	if err != nil {
		return nil, err
	}
	ds, err := c.NewDigestSigner(ctx, k.Signer.Key)
	if err != nil {
		return nil, fmt.Errorf("key %q from signer %s: %w", k.Signer.Key, k.Signer.URL, err)
	}
	if pub, ok := ds.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("signer key %q is not ECDSA P-256, which the log key must be (clients verify SETs only with ECDSA)", k.Signer.Key)
	}
	return ds, nil
}

// openTree opens the recorded tree, or creates and records one on first
// start. A restart never creates a new tree.
func openTree(ctx context.Context, cfg *config.Config, dsn string, st *store.Store, logger *slog.Logger) (sequence.Backend, error) {
	recorded, err := st.ActiveTree(ctx)
	if err != nil {
		return nil, fmt.Errorf("active tree: %w", err)
	}
	treeID := recorded
	if cfg.Trillian.TreeID != 0 {
		if recorded != 0 && recorded != cfg.Trillian.TreeID {
			return nil, fmt.Errorf("trillian.tree_id %d, but the database records tree %d as active", cfg.Trillian.TreeID, recorded)
		}
		treeID = cfg.Trillian.TreeID
	}
	var b sequence.Backend
	if cfg.Trillian.Mode == "remote" {
		b, err = sequence.DialRemote(ctx, cfg.Trillian.Address, treeID, cfg.Sequencer.MaxEntryBytes)
	} else {
		b, err = sequence.OpenEmbedded(ctx, dsn, treeID, cfg.Database.MaxConns)
	}
	if err != nil {
		return nil, err
	}
	if recorded == 0 {
		if err := st.SetActiveTree(ctx, b.TreeID()); err != nil {
			b.Close()
			return nil, err
		}
		logger.Info("tree recorded as active", "tree_id", b.TreeID(), "created", treeID == 0)
	}
	return b, nil
}

func waitDB(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	for attempt := 0; ; attempt++ {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		if attempt%10 == 0 {
			logger.Warn("waiting for the database", "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("database: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ready answers 200 only when the logserver is not shutting down, the
// database and the tree are reachable and
// the write path is publishing.
func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if a.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	var problems []error
	if err := a.db.PingContext(ctx); err != nil {
		problems = append(problems, fmt.Errorf("database: %w", err))
	}
	if _, err := a.backend.Root(ctx); err != nil {
		problems = append(problems, fmt.Errorf("tree: %w", err))
	}
	if err := a.seq.Healthy(); err != nil {
		problems = append(problems, fmt.Errorf("write path: %w", err))
	}
	if a.v2 != nil {
		if err := a.v2.seq.Healthy(); err != nil {
			problems = append(problems, fmt.Errorf("rekor v2 write path: %w", err))
		}
	}
	if len(problems) > 0 {
		http.Error(w, errors.Join(problems...).Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Serve answers HTTP on l (HTTPS with tls configured), and serves the extra servers (main's debug
// listener), with service.Run and the configured timeouts until Shutdown.
// Call it once.
func (a *App) Serve(l net.Listener, extra ...service.Server) error {
	if a.tls != nil {
		l = tls.NewListener(l, a.tls)
	}
	a.serving = make(chan struct{})
	a.servingSet.Store(true)
	defer close(a.serving)
	return service.Run(a.serveCtx, a.log, a.cfg.HTTP, service.Hooks{Drain: func() { a.draining.Store(true) }},
		append([]service.Server{{Name: "public", Listener: l, Handler: a.handler}}, extra...)...)
}

// Shutdown stops in order: fail readiness, stop accepting and drain HTTP
// requests (within shutdown_timeout), stop the write path (every entry
// acknowledged is already durable; queued ones are published at the next
// start), close the backend and the database. ctx bounds the wait for
// Serve to return.
func (a *App) Shutdown(ctx context.Context) error {
	var err error
	a.draining.Store(true)
	if a.stopServe != nil {
		a.stopServe()
	}
	if a.servingSet.Load() {
		select {
		case <-a.serving:
		case <-ctx.Done():
			err = fmt.Errorf("http shutdown: %w", ctx.Err())
		}
	}
	a.close()
	return err
}

func (a *App) close() {
	a.stopQueue() // its submissions go through the write path and the outbox
	if a.upstream != nil {
		a.upstream.Close()
	}
	if a.stopTUF != nil {
		a.stopTUF()
		<-a.tufDone
	}
	if a.v2 != nil {
		a.v2.close()
	}
	if a.seq != nil {
		a.seq.Close()
	}
	if a.stopFeeder != nil {
		a.stopFeeder()
		<-a.feederDone
	}
	if a.lease != nil {
		a.lease.Release()
	}
	if a.backend != nil {
		a.backend.Close()
	}
	if a.db != nil {
		a.db.Close()
	}
}

// writeFileAtomic writes a public file (PEM key, vkey) durably, creating
// its directory if needed.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durablefile.Write(path, data, 0o644)
}
