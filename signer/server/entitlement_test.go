package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/entitlement"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/stack"
)

// testClock is a settable clock for the service (entitlement cache ages,
// approval windows).
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// entitlementStore starts a MariaDB of its own (so that the test can stop
// it while the audit database stays up), with the signer schema and the
// plans "gold" (acme) and "tiny" (other).
func entitlementStore(t *testing.T) (*stack.MariaDB, string) {
	t.Helper()
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "entitlements")
	db, err := audit.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO signer_plans (name, predicate_types, key_names, max_signatures_per_day) VALUES
			('gold', '["stella.ops/promotion@v1", "https://slsa.dev/provenance/v1"]', '["acme-attest"]', 100),
			('tiny', '[]', '[]', 2)`,
		`INSERT INTO signer_entitlements (tenant, plan) VALUES ('acme', 'gold'), ('other', 'tiny')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return m, dsn
}

// detail is the audit row's detail column.
func (e *env) detail(requestID string) string {
	e.t.Helper()
	var d string
	if err := e.appDB.QueryRow("SELECT detail FROM signer_audit WHERE request_id = ?", requestID).Scan(&d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// signOnce posts a DSSE request and checks that exactly one audit row
// with the given status and code was written; it returns the request id.
func (e *env) signOnce(token string, req api.DSSERequest, status int, code string) string {
	e.t.Helper()
	body, _ := json.Marshal(req)
	before := e.auditCount()
	got, _, m := e.post(api.PathDSSE, token, string(body))
	if got != status || (code != "" && m["error"] != code) {
		e.t.Fatalf("status %d %v, want %d %s", got, m, status, code)
	}
	if n := e.auditCount(); n != before+1 {
		e.t.Fatalf("audit rows %d → %d, want one more", before, n)
	}
	rid, _ := m["requestId"].(string)
	row := e.audit(rid)
	want := code
	if status == 200 {
		want = ""
	}
	if row.Status != status || row.Reason != want {
		e.t.Fatalf("audit row %+v", row)
	}
	return rid
}

func entitlementConfig(clk *testClock, dsn string) *server.Config {
	cfg := baseConfig(clk.now())
	for i := range cfg.Tenants {
		if n := cfg.Tenants[i].Name; n == "acme" || n == "other" {
			cfg.Tenants[i].RequireEntitlement = true
		}
	}
	cfg.Entitlements = &server.EntitlementsConfig{DSN: dsn, Config: entitlement.Config{
		RefreshInterval: 30 * time.Second, CacheTTL: 10 * time.Minute, StoreTimeout: time.Second}}
	return cfg
}

// TestEntitlementsPlanAndOutage: plans decide keys, predicate types and
// daily quotas; when the store (a real MariaDB) stops, the last known
// entitlement serves until the cache TTL, then signing stops (503).
func TestEntitlementsPlanAndOutage(t *testing.T) {
	store, dsn := entitlementStore(t)
	clk := &testClock{t: time.Now()}
	e := newEnv(t, entitlementConfig(clk, dsn), server.Options{Now: clk.now})
	promo := json.RawMessage(stellaFixture(t, "promotion"))
	slsa := json.RawMessage(statement("https://slsa.dev/provenance/v1", ""))

	rid := e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: promo}, 200, "")
	if d := e.detail(rid); d != "" {
		t.Errorf("live grant detail %q", d)
	}
	e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest-ed", Statement: slsa}, 403, "entitlement_denied")
	e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", PayloadType: "application/vnd.cyclonedx+json", Payload: []byte(`{}`)}, 403, "entitlement_denied")

	// Plan "tiny": two signatures a day.
	e.signOnce(tokOther, api.DSSERequest{Statement: slsa}, 200, "")
	e.signOnce(tokOther, api.DSSERequest{Statement: promo}, 200, "")
	rid = e.signOnce(tokOther, api.DSSERequest{Statement: slsa}, 429, "quota_exceeded")
	if d := e.detail(rid); !strings.Contains(d, "plan tiny allows 2 signatures a day") {
		t.Errorf("quota refusal detail %q", d)
	}

	// The store goes away. Within the refresh interval nothing changes;
	// after it the cached entitlement serves, noted in the audit row.
	if err := store.Stop(); err != nil {
		t.Fatal(err)
	}
	clk.add(10 * time.Second)
	e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: slsa}, 200, "")
	clk.add(time.Minute)
	rid = e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: slsa}, 200, "")
	if d := e.detail(rid); !strings.Contains(d, "entitlement from cache (plan gold") {
		t.Errorf("cached grant detail %q", d)
	}
	// The cache still denies what the plan denies.
	e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest-ed", Statement: slsa}, 403, "entitlement_denied")
	// Past the TTL: no usable entitlement, no bypass configured.
	clk.add(10 * time.Minute)
	rid = e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: slsa}, 503, "entitlement_unavailable")
	if row := e.audit(rid); row.Decision != "failed" || row.Items != 0 {
		t.Errorf("outage audit row %+v", row)
	}
	m := e.metrics()
	for _, want := range []string{
		`signer_entitlement_decisions_total{result="cached",tenant="acme"} 1`,
		`signer_entitlement_decisions_total{result="unavailable",tenant="acme"} 1`,
		`signer_entitlement_decisions_total{result="quota",tenant="other"} 1`,
		`signer_entitlement_store_up 0`,
		`signer_quota_hits_total{quota="plan",tenant="other"} 1`,
		`signer_entitlement_bypass_active 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestEntitlementEmergencyBypass: with the store down and nothing cached,
// a configured bypass signs, audits the bypass and raises its metrics.
func TestEntitlementEmergencyBypass(t *testing.T) {
	store, dsn := entitlementStore(t)
	store.Stop()
	clk := &testClock{t: time.Now()}
	cfg := entitlementConfig(clk, dsn)
	cfg.Entitlements.EmergencyBypass = &entitlement.Bypass{Until: clk.now().Add(time.Hour), Reason: "entitlement DB restore", Ticket: "INC-4242"}
	e := newEnv(t, cfg, server.Options{Now: clk.now})
	slsa := json.RawMessage(statement("https://slsa.dev/provenance/v1", ""))
	rid := e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: slsa}, 200, "")
	if d := e.detail(rid); !strings.Contains(d, "entitlement emergency bypass until") || !strings.Contains(d, "INC-4242") || !strings.Contains(d, "entitlement DB restore") {
		t.Errorf("bypass detail %q", d)
	}
	m := e.metrics()
	for _, want := range []string{
		`signer_entitlement_bypass_total{tenant="acme"} 1`,
		`signer_entitlement_bypass_active 1`,
		`signer_entitlement_store_up 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The bypass ends on its own.
	clk.add(time.Hour)
	e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: slsa}, 503, "entitlement_unavailable")
	if m := e.metrics(); !strings.Contains(m, "signer_entitlement_bypass_active 0") {
		t.Error("bypass still reported active after its end")
	}
}
