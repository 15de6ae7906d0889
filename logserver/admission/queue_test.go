package admission_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// TestQueuedDrainsWithinBudget: with a burst cap of 1 per second, the
// second of two submissions is over budget; asked to be queued, it gets
// 202, and the logserver's drainer logs it once the next window admits
// it, charging the same budget store (the queue's Budget, wired by app).
func TestQueuedDrainsWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB and a logserver")
	}
	avoidHourBoundary(t)
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "rekor")
	ls := stack.StartLogserver(t, dsn, t.TempDir(), func(c *config.Config) {
		c.Budgets = config.Budgets{Enabled: true,
			Default: config.BudgetLimits{HourlyLimit: 1000, BurstLimit: 3600, BurstWindow: time.Second}}
	})
	c := client{ls.URL, &http.Client{Timeout: time.Minute}}
	signer, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	v1Body := v1Encoder(t)
	var loc string
	for i := 0; loc == ""; i++ {
		// Two submissions in one second: the second is over the burst cap
		// (retried if a window boundary fell between them).
		if i == 5 {
			t.Fatal("never refused within one burst window")
		}
		if r := c.post(t, "/api/v1/log/entries", v1Body(signer.HashedRekord(fmt.Appendf(nil, "first %d", i)))); r.code != 201 && r.code != 429 {
			t.Fatalf("first: %d %s", r.code, r.body)
		}
		r := c.post(t, "/api/v1/log/entries", v1Body(signer.HashedRekord(fmt.Appendf(nil, "second %d", i))), "Prefer", "respond-async")
		switch r.code {
		case http.StatusAccepted:
			loc = r.header.Get("Location")
		case http.StatusCreated:
		default:
			t.Fatalf("second: %d %s", r.code, r.body)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.http.Get(ls.URL + loc)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Status   string          `json:"status"`
			LogIndex *int64          `json:"log_index"`
			Entry    json.RawMessage `json:"entry"`
		}
		if err := jsonDecode(resp, &st); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", loc, resp.StatusCode, err)
		}
		if st.Status == "logged" {
			if st.LogIndex == nil || len(st.Entry) == 0 {
				t.Fatalf("logged without index or entry: %+v", st)
			}
			break
		}
		if st.Status != "transparency_pending" || time.Now().After(deadline) {
			t.Fatalf("queued entry: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The drained entry was charged to the same budget row: the hour's
	// count is every logged entry, the middleware's and the drainer's.
	var size struct {
		TreeSize int64 `json:"treeSize"`
	}
	resp, err := c.http.Get(ls.URL + "/api/v1/log")
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonDecode(resp, &size); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var charged int64
	if err := db.QueryRow(`SELECT window_count FROM budget_counters WHERE tenant = 'default' AND tier = 'graph'`).Scan(&charged); err != nil {
		t.Fatal(err)
	}
	if charged != size.TreeSize {
		t.Fatalf("budget charged %d, tree size %d: every logged entry, drained or not, is charged once", charged, size.TreeSize)
	}
	if q := c.metrics(t)[subm("graph", "queued")]; q != 1 {
		t.Fatalf("queued count %v, want 1", q)
	}
}
