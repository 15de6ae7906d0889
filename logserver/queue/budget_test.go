package queue_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
)

// TestQueueWithBudgets: with tenants and budgets on, a write refused over
// budget with "Prefer: respond-async" is queued (202, the admission's
// hook); queued rows of a tenant whose budget is spent wait for it (no
// attempt counted) while another tenant's rows are logged; a tenant reads
// only its own rows; a bad token is 401 on the queue as on the log.
func TestQueueWithBudgets(t *testing.T) {
	const token = "alice-token-0123456789"
	sum := sha256.Sum256([]byte(token))
	e := newEnv(t, func(c *config.Config) {
		c.Tenants.Identities = []config.TenantIdentity{{Name: "alice", TokenSHA256: []string{hex.EncodeToString(sum[:])}}}
		c.Budgets.Enabled = true
		c.Budgets.Default = config.BudgetLimits{HourlyLimit: 2}
	})
	alice := map[string]string{"Authorization": "Bearer " + token}
	for i := range 2 {
		if a := do(t, "POST", e.ls.URL+"/api/v1/log/entries", e.v1Body(t, "alice direct "+string(rune('a'+i))), alice); a.code != http.StatusCreated {
			t.Fatalf("write %d within budget: %d %s", i, a.code, a.body)
		}
	}
	if a := do(t, "POST", e.ls.URL+"/api/v1/log/entries", e.v1Body(t, "alice over"), alice); a.code != http.StatusTooManyRequests {
		t.Fatalf("over budget: %d %s", a.code, a.body)
	}
	async := map[string]string{"Authorization": "Bearer " + token, "Prefer": "respond-async"}
	a := do(t, "POST", e.ls.URL+"/api/v1/log/entries", e.v1Body(t, "alice queued"), async)
	loc := a.header.Get("Location")
	if a.code != http.StatusAccepted || !strings.HasPrefix(loc, "/api/v1/queue/entries/") {
		t.Fatalf("over budget, respond-async: %d %s %q", a.code, a.body, loc)
	}
	hooked := strings.TrimPrefix(loc, "/api/v1/queue/entries/")
	direct := e.enqueue(t, "v1", e.v1Body(t, "alice via the queue API"), alice)
	mine := e.enqueue(t, "v1", e.v1Body(t, "the default tenant's"), nil)

	// The default tenant has its own budget: its row is logged.
	waitState(t, e.ls.URL, mine, "logged", 30*time.Second)
	// Alice's rows wait for her budget, no attempt counted.
	for _, id := range []string{hooked, direct} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := do(t, "GET", e.ls.URL+"/api/v1/queue/entries/"+id, nil, alice)
			if r.code != http.StatusOK {
				t.Fatalf("alice reading her row: %d %s", r.code, r.body)
			}
			if strings.Contains(string(r.body), `"waiting for budget"`) {
				if !strings.Contains(string(r.body), `"attempts":0`) || !strings.Contains(string(r.body), `"transparency_pending"`) {
					t.Fatalf("row waiting for budget: %s", r.body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("row %s never waited for budget: %s", id, r.body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code, _ := getStatus(t, e.ls.URL, id); code != http.StatusNotFound {
			t.Fatalf("the default tenant reads alice's row: %d", code)
		}
	}
	if r := do(t, "GET", e.ls.URL+"/api/v1/queue/entries/"+hooked, nil, map[string]string{"Authorization": "Bearer wrong-token-0123456789"}); r.code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d %s", r.code, r.body)
	}
	if got := metric(t, e.ls.URL, "logserver_queue_budget_waits_total"); got < 2 {
		t.Fatalf("budget waits %v", got)
	}
	if got := metric(t, e.ls.URL, `attestor_rekor_queue_depth{tier="graph"}`); got != 2 {
		t.Fatalf("depth %v, want alice's 2", got)
	}
	if n := treeSize(t, e.ls.URL); n != 3 {
		t.Fatalf("tree size %d, want 3 (alice's 2, the default tenant's 1)", n)
	}
}

// TestQueueHookAnswers: over budget with respond-async, bad input gets the
// write endpoint's own answer (nothing stored), a full queue 503 with
// Retry-After.
func TestQueueHookAnswers(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Budgets.Enabled = true
		c.Budgets.Default = config.BudgetLimits{HourlyLimit: 1}
		c.Queue.MaxSize = 1
		c.Queue.Drain = boolp(false)
	})
	if a := do(t, "POST", e.ls.URL+"/api/v1/log/entries", e.v1Body(t, "within"), nil); a.code != http.StatusCreated {
		t.Fatalf("within budget: %d %s", a.code, a.body)
	}
	async := map[string]string{"Prefer": "respond-async"}
	bad := []byte(`{"kind":"nope","apiVersion":"0.0.1","spec":{}}`)
	got := do(t, "POST", e.ls.URL+"/api/v1/log/entries", bad, async)
	want := do(t, "POST", e.ls.URL+"/api/v1/queue/entries", bad, nil)
	if got.code != want.code || got.code != http.StatusUnprocessableEntity && got.code != http.StatusBadRequest || string(got.body) != string(want.body) {
		t.Fatalf("bad input over budget: %d %s; the write endpoint's answer is %d %s", got.code, got.body, want.code, want.body)
	}
	if a := do(t, "POST", e.ls.URL+"/api/v1/log/entries", e.v1Body(t, "queued"), async); a.code != http.StatusAccepted {
		t.Fatalf("queued: %d %s", a.code, a.body)
	}
	full := do(t, "POST", e.ls.URL+"/api/v1/log/entries", e.v1Body(t, "no room"), async)
	if full.code != http.StatusServiceUnavailable || full.header.Get("Retry-After") != "30" {
		t.Fatalf("full queue: %d %v %s", full.code, full.header, full.body)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM queue_entries"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}
