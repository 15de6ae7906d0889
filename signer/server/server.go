// Package server is the signer's HTTP service: the only process that asks
// the keys to sign. It serves
//
//	POST /api/v1/signer/sign/dsse         DSSE envelope (and sigstore bundle v0.3) for producers
//	POST /api/v1/signer/sign/digests      batches of SHA-256 digests (SETs) → DER signatures
//	POST /api/v1/signer/sign/checkpoint   signed-note signature lines, one per active key version
//	POST /api/v1/signer/sign/cosignature  cosignature/v1 lines for the witness
//	GET  /api/v1/signer/keys              public keys, purposes, validity windows (no auth)
//	GET  /api/v1/signer/schemas[/{file}]  Stella payload types and their JSON Schemas (no auth)
//	GET  /api/v1/signer/verify/referrers  release verdict of a scanner image (OCI referrers)
//	POST /api/v1/signer/verify/approvals  manual approval of a scanner image
//	GET  /healthz, /readyz, /metrics
//
// Every signing request goes through the same steps, in order:
// authenticate (bearer token, or mTLS client certificate) → scope →
// tenant quotas (concurrency, then rate: 429 + Retry-After) → body size
// (413) → decode and validate → key and policy checks → sign → audit →
// answer. The audit record of every decision, signed or refused, is
// committed to MySQL before the answer is written; if that commit fails the
// answer is 503 and no signature leaves the process. Errors become HTTP
// statuses in one place ([classify]) and always carry a JSON body
// {"error": code, "message": text, "requestId": id}.
//
// Requests that fail authentication are answered 401 (429 with Retry-After
// past the global unauthenticated budget) without an audit row: they are
// counted and logged, sampled (see [UnauthenticatedConfig]).
//
// Readiness: /readyz is 200 only when the token is present, a canary
// sign+verify succeeded with every active key version on the last pass, and
// the audit database answers. Passes run in the background only, one at a
// time (so readiness holds at most one token session), every
// readiness_interval while ready and every second while not ready or while
// the token is lost; /readyz reports the last one (and the token's lost
// state, which costs no PKCS#11 call) and never starts one: there is no
// refresh parameter, so an unauthenticated poller cannot take sessions
// away from signing. A pass also reconnects a lost token
// ([pkcs11.Token.Check]); meanwhile signing answers 503 token_unavailable
// with Retry-After, and recovery needs no restart.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/pkcs11"
)

// Options are the parts of a Server that are not configuration.
type Options struct {
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock used for key validity windows; nil means time.Now.
	Now func() time.Time
}

// Server is the signing service. Create it with [New], serve
// [Server.Handler], and [Server.Close] it after the HTTP server stopped.
type Server struct {
	cfg     *Config
	log     *slog.Logger
	now     func() time.Time
	tok     *pkcs11.Token
	ring    *keyring
	db      *sql.DB
	audit   *audit.Log
	tenants map[string]*tenant
	auth    *authenticator
	unauth  *unauthGate
	m       *metrics
	st      *stella // issue 18: entitlements, release verification

	draining  atomic.Bool // shutdown began: /readyz fails
	readyMu   sync.Mutex  // one readiness pass at a time
	ready     atomic.Pointer[readiness]
	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
}

type readiness struct {
	Ready    bool              `json:"ready"`
	Checked  time.Time         `json:"checked"`
	Problems map[string]string `json:"problems,omitempty"`
}

// New opens the token, the keys, the audit database (applying migrations
// when audit.migrate_dsn is set), runs a first readiness check and starts
// the periodic one. Keys that cannot be opened do not make New fail: they
// make the service unready until they appear.
func New(ctx context.Context, cfg *Config, o Options) (_ *Server, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{cfg: cfg, log: o.Logger, now: o.Now, m: newMetrics(),
		tenants: map[string]*tenant{}, stop: make(chan struct{}), loopDone: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeParts()
		}
	}()
	if cfg.Token != nil {
		tc := *cfg.Token
		tc.ObservePoolWait = func(d time.Duration) { s.m.poolWait.Observe(d.Seconds()) }
		if s.tok, err = pkcs11.Open(ctx, tc); err != nil {
			return nil, fmt.Errorf("opening token: %w", err)
		}
	}
	s.ring = newKeyring(ctx, s.tok, cfg.Keys)
	if cfg.Audit.MigrateDSN != "" {
		mdb, err := audit.OpenDB(cfg.Audit.MigrateDSN)
		if err != nil {
			return nil, err
		}
		err = audit.Migrate(ctx, mdb)
		mdb.Close()
		if err != nil {
			return nil, fmt.Errorf("audit migrations: %w", err)
		}
	}
	dsn, err := cfg.Audit.dsn()
	if err != nil {
		return nil, err
	}
	if s.db, err = audit.OpenDB(dsn); err != nil {
		return nil, err
	}
	s.audit = audit.New(s.db, audit.Options{MaxBatch: cfg.Audit.MaxBatch, MaxBatchBytes: cfg.Audit.MaxBatchBytes, Committers: cfg.Audit.Committers, OnCommit: func(n int, d time.Duration, err error) {
		s.m.auditBatch.Observe(float64(n))
		s.m.auditCommit.Observe(d.Seconds())
		if err != nil {
			s.m.auditErrors.Inc()
			s.log.Error("audit commit failed", slog.Int("rows", n), slog.Any("error", err))
		}
	}})
	if err := s.newStella(); err != nil {
		return nil, err
	}
	for _, tc := range cfg.Tenants {
		s.tenants[tc.Name] = newTenant(tc)
	}
	s.auth = newAuthenticator(s.tenants)
	s.unauth = newUnauthGate(cfg.Unauthenticated)
	s.checkReady(ctx)
	go s.readyLoop()
	return s, nil
}

// Close stops the readiness loop, flushes the audit trail and closes the
// database and the token. Call it after the HTTP server has shut down.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.loopDone
		err = s.closeParts()
	})
	return err
}

func (s *Server) closeParts() error {
	var errs []error
	if s.audit != nil {
		s.audit.Close()
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	errs = append(errs, s.st.close())
	if s.tok != nil {
		errs = append(errs, s.tok.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) readyLoop() {
	defer close(s.loopDone)
	tick := min(time.Second, s.cfg.ReadinessInterval)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if r := s.ready.Load(); r.Ready && s.tokenLost() == nil && time.Since(last) < s.cfg.ReadinessInterval-tick/2 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReadinessInterval)
		s.checkReady(ctx)
		cancel()
		last = time.Now()
	}
}

// tokenLost is why the token is lost right now, or nil (no PKCS#11 call).
func (s *Server) tokenLost() error {
	if s.tok == nil {
		return nil
	}
	return s.tok.Lost()
}

// checkReady runs one readiness pass and publishes its result. Passes are
// serialised, and each signs with one key at a time.
func (s *Server) checkReady(ctx context.Context) *readiness {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	now := s.now()
	problems := map[string]string{}
	if s.tok != nil {
		if err := s.tok.Check(ctx); err != nil {
			problems["token"] = err.Error()
		}
	}
	for id, p := range s.ring.canary(ctx, now) {
		problems["key "+id] = p
	}
	if err := s.audit.Ping(ctx); err != nil {
		problems["audit"] = err.Error()
	}
	for _, name := range s.ring.names {
		for _, v := range s.ring.keys[name].versions {
			a := 0.0
			if v.active(now) {
				a = 1
			}
			s.m.keyActive.WithLabelValues(name, strconv.Itoa(v.cfg.Version)).Set(a)
		}
	}
	r := &readiness{Ready: len(problems) == 0, Checked: now.UTC(), Problems: problems}
	if old := s.ready.Swap(r); old == nil || old.Ready != r.Ready {
		s.log.InfoContext(ctx, "signer readiness", slog.Bool("ready", r.Ready), slog.Any("problems", problems))
	}
	if r.Ready {
		s.m.ready.Set(1)
	} else {
		s.m.ready.Set(0)
	}
	return r
}

// CheckReady runs a readiness pass now (tests; operators wait for the
// periodic one) and reports whether the service is ready.
func (s *Server) CheckReady(ctx context.Context) bool { return s.checkReady(ctx).Ready }

// Handler is the service's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/signer/sign/dsse", s.endpoint("dsse", ScopeDSSE, s.signDSSE))
	mux.Handle("POST /api/v1/signer/sign/digests", s.endpoint("digests", ScopeDigests, s.signDigests))
	mux.Handle("POST /api/v1/signer/sign/checkpoint", s.endpoint("checkpoint", ScopeCheckpoint, s.signCheckpoint))
	mux.Handle("POST /api/v1/signer/sign/cosignature", s.endpoint("cosignature", ScopeCosignature, s.signCosignature))
	for _, p := range []string{api.PathDSSE, api.PathDigests, api.PathCheckpoint, api.PathCosignature} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, api.Error{Code: "method_not_allowed", Message: r.Method + " " + r.URL.Path + ": use POST"})
		})
	}
	mux.HandleFunc("GET /api/v1/signer/keys", s.listKeys)
	s.stellaRoutes(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := s.ready.Load()
		if s.draining.Load() {
			rd = &readiness{Ready: false, Checked: rd.Checked, Problems: map[string]string{"server": "shutting down"}}
		} else if err := s.tokenLost(); err != nil && rd.Ready {
			// Signing found the token gone since the last pass.
			rd = &readiness{Ready: false, Checked: rd.Checked, Problems: map[string]string{"token": err.Error()}}
		}
		status := http.StatusOK
		if !rd.Ready {
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", retryAfterHeader(retryUnavailable))
		}
		writeJSON(w, status, rd)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Code: "not_found", Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return mux
}

// TLSConfig returns the server TLS configuration cfg.TLS describes, or nil.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if c.TLS == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLS.ClientCAFile != "" {
		pem, err := os.ReadFile(c.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in %s", c.TLS.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if c.TLS.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

// Run serves cfg until ctx ends, then shuts down in order (service.Run):
// fail readiness, stop accepting and finish in-flight requests within
// shutdown_timeout (their audit rows included), stop the
// readiness loop, flush the audit trail, close the database and the token.
// ready, if not nil, receives the listening address once serving.
func Run(ctx context.Context, cfg *Config, o Options, ready func(net.Addr)) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	tlsCfg, err := cfg.TLSConfig()
	if err != nil {
		return err
	}
	s, err := New(ctx, cfg, o)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return errors.Join(err, s.Close())
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	started := func() {
		o.Logger.InfoContext(ctx, "signer serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", tlsCfg != nil))
		if ready != nil {
			ready(ln.Addr())
		}
	}
	err = service.Run(ctx, o.Logger, cfg.HTTP, service.Hooks{Started: started, Drain: func() { s.draining.Store(true) }},
		service.Server{Name: "api", Listener: ln, Handler: s.Handler()})
	err = errors.Join(err, s.Close())
	o.Logger.Info("signer stopped")
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
