// Package testsigner starts a real signer service for the witness's tests
// and benchmarks: signer/server over HTTP on loopback, its witness key in a
// fresh SoftHSM2 token, its audit trail in a private MariaDB. Only _test.go
// files import it (it builds on testing/signerstack).
package testsigner

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/signerstack"
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
	hsm := signerstack.NewHSM(t, "witness-signer", stack.TestMariaDB(t, o.Durable), signerstack.Key{Label: "witness-ed", Type: pkcs11.Ed25519})
	tenant := signerstack.Tenant("witness", token, []string{Key}, "sign:cosignature")
	tenant.Quota = o.Quota
	srv := signerstack.New(t, hsm.Config(o.Sessions, []server.KeyConfig{{Name: Key, Purposes: []string{"cosignature"}, NoteName: o.NoteName,
		Versions: []server.KeyVersionConfig{{Version: 1, Label: "witness-ed"}}}}, tenant))
	s := &Signer{NoteName: o.NoteName, Audit: hsm.Audit, srv: srv, inFlight: o.MaxInFlight}
	s.serve(t, "127.0.0.1:0")
	t.Cleanup(s.Stop)
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
