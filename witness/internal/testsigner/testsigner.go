// Package testsigner starts a real signer service for the witness's tests
// and benchmarks: signer/server over HTTP on loopback, its witness key in a
// fresh SoftHSM2 token, its audit trail in a private MariaDB. Only _test.go
// files import it (it depends on testing/stack and testing/softhsm).
package testsigner

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/testing/stack"
	"github.com/stellaops/tlog/witness/cosig"
)

// Key and NoteName are the witness key's name in the signer and its
// cosigner name.
const (
	Key   = "witness"
	token = "witness-test-token"
)

// Options tune Start.
type Options struct {
	NoteName string             // cosigner name; default "witness.test/hsm"
	Quota    server.QuotaConfig // the witness tenant's quota; zero: generous (no pushback)
	Sessions int                // PKCS#11 sessions; default 4
	Durable  bool               // MariaDB with durable commits (benchmarks)
	// MaxInFlight is the witness's cosigning calls in flight (Remote);
	// default 8, the witness's default.
	MaxInFlight int
}

// Signer is a running signer service.
type Signer struct {
	URL      string
	NoteName string
	Audit    *sql.DB // the audit database (SELECT COUNT(*) FROM signer_audit)
	inFlight int
	srv      *server.Server
	hs       *http.Server
	ln       net.Listener
	addr     string
}

// Start starts a signer whose tenant "witness" may cosign with key Key.
// Everything stops at the end of the test.
func Start(t testing.TB, o Options) *Signer {
	t.Helper()
	if o.NoteName == "" {
		o.NoteName = "witness.test/hsm"
	}
	if o.Sessions == 0 {
		o.Sessions = 4
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 8
	}
	if o.Quota == (server.QuotaConfig{}) {
		o.Quota = server.QuotaConfig{RPS: 100000, Burst: 100000, Concurrency: 256}
	}
	ctx := context.Background()
	tok := softhsm.NewToken(t, "witness-signer")
	pt, err := pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pt.Generate(ctx, "witness-ed", pkcs11.Ed25519); err != nil {
		t.Fatal(err)
	}
	if err := pt.Close(); err != nil {
		t.Fatal(err)
	}
	m := stack.TestMariaDB(t, o.Durable)
	dsn := stack.TestDatabase(t, m, "signer")
	db, err := audit.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))
	cfg := &server.Config{
		Token: &pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: o.Sessions},
		Audit: server.AuditConfig{DSN: dsn},
		Keys: []server.KeyConfig{{Name: Key, Purposes: []string{"cosignature"}, NoteName: o.NoteName,
			Versions: []server.KeyVersionConfig{{Version: 1, Label: "witness-ed"}}}},
		Tenants: []server.TenantConfig{{Name: "witness", Keys: []string{Key}, Quota: o.Quota,
			Tokens: []server.TokenConfig{{ID: "w", SHA256: hex.EncodeToString(sum[:]), Scopes: []string{"sign:cosignature"}}}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Signer{NoteName: o.NoteName, Audit: db, srv: srv, inFlight: o.MaxInFlight}
	s.serve(t, "127.0.0.1:0")
	t.Cleanup(func() {
		s.Stop()
		srv.Close()
	})
	return s
}

func (s *Signer) serve(t testing.TB, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.addr, s.URL = ln, ln.Addr().String(), "http://"+ln.Addr().String()
	s.hs = &http.Server{Handler: s.srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go s.hs.Serve(ln)
}

// Stop stops serving HTTP (the signer is down); Restart serves again on
// the same address.
func (s *Signer) Stop() {
	if s.hs != nil {
		s.hs.Close()
		s.hs = nil
	}
}

// Restart serves again on the address of Start.
func (s *Signer) Restart(t testing.TB) {
	t.Helper()
	s.serve(t, s.addr)
}

// Client returns a client authenticated as the witness tenant.
func (s *Signer) Client() *client.Client {
	return client.New(s.URL, token, client.NewHTTPClient(5*time.Second, client.MaxConns))
}

// Remote returns the witness's cosigner through this signer.
func (s *Signer) Remote(t testing.TB) *cosig.Remote {
	t.Helper()
	r, err := cosig.NewRemote(context.Background(), s.Client(), Key, s.NoteName, 5*time.Second, s.inFlight)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// AuditRows counts the signer's audit rows: one per signing request it
// decided (signed or refused).
func (s *Signer) AuditRows(t testing.TB) int {
	t.Helper()
	var n int
	if err := s.Audit.QueryRow("SELECT COUNT(*) FROM signer_audit").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Breakdown summarises where the signer's time went, from its Prometheus
// histograms: mean seconds of the whole request, of signing, of waiting
// for a PKCS#11 session and of one audit INSERT, and the mean rows per
// INSERT.
func (s *Signer) Breakdown(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mfs map[string]*dto.MetricFamily
	parser := expfmt.NewTextParser(model.UTF8Validation)
	if mfs, err = parser.TextToMetricFamilies(resp.Body); err != nil {
		t.Fatal(err)
	}
	mean := func(name string) (float64, uint64) {
		var sum float64
		var n uint64
		if mf := mfs[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				sum += m.GetHistogram().GetSampleSum()
				n += m.GetHistogram().GetSampleCount()
			}
		}
		if n == 0 {
			return 0, 0
		}
		return sum / float64(n), n
	}
	var b strings.Builder
	for _, h := range []struct{ name, label string }{
		{"signer_request_duration_seconds", "request"},
		{"signer_sign_duration_seconds", "sign"},
		{"signer_pkcs11_pool_wait_seconds", "session wait"},
		{"signer_audit_commit_seconds", "audit INSERT"},
	} {
		m, n := mean(h.name)
		fmt.Fprintf(&b, "%s %.2f ms (n=%d); ", h.label, m*1e3, n)
	}
	rows, n := mean("signer_audit_batch_rows")
	fmt.Fprintf(&b, "audit rows per INSERT %.1f (n=%d)", rows, n)
	return b.String()
}
