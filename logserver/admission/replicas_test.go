package admission_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/rekorstack"
	"github.com/stellaops/tlog/testing/stack"
)

// TestReplicasShareBudgets runs two logserver replicas in remote Trillian
// mode (real trillian_log_server and trillian_log_signer) on one tree and
// one database, and hammers both at once for one tenant: exactly the
// budget is admitted in total, for the graph hourly limit and the edge
// daily limit, and each replica's metrics add up to it.
func TestReplicasShareBudgets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB, Trillian and two logservers")
	}
	avoidHourBoundary(t)
	bin, err := stack.CacheBin()
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range rekorstack.Tools[:2] { // trillian_log_server, trillian_log_signer
		tl.Install(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := stack.TestMariaDB(t, false)
	tr, err := rekorstack.StartTrillian(ctx, m, rekorstack.Options{Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Stop)
	dsn := stack.TestDatabase(t, m, "rekor")
	const hourly, daily = 100, 50
	// Both replicas sign under one hostname and key, as replicas behind
	// a load balancer do: each publishes what it has seen of the tree, the
	// late one behind the other's record.
	mutate := func(c *config.Config) {
		c.Trillian = config.Trillian{Mode: "remote", Address: tr.Address}
		c.Budgets = config.Budgets{Enabled: true,
			// A burst cap above the hourly limit: the hourly limit binds.
			Default: config.BudgetLimits{HourlyLimit: hourly, BurstLimit: 1200, BurstWindow: 10 * time.Minute, EdgeBundleDailyLimit: daily}}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := stack.StartLogserver(t, dsn, dirA, mutate)
	// The second replica signs with the same log key, and finds the tree
	// the first one recorded in the shared database.
	key, err := os.ReadFile(filepath.Join(dirA, "log-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "log-key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := stack.StartLogserver(t, dsn, dirB, mutate)
	replicas := []client{{a.URL, &http.Client{Timeout: time.Minute}}, {b.URL, &http.Client{Timeout: time.Minute}}}

	signer, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	v1Body := v1Encoder(t)
	const attempts, edgeAttempts = 300, 150
	bodies := make([][]byte, attempts+edgeAttempts)
	for i := range bodies {
		bodies[i] = v1Body(signer.HashedRekord(fmt.Appendf(nil, "replicated artifact %d", i)))
	}
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[string]map[int]int{"graph": {}, "edge": {}}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := replicas[g%2]
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				tier := "graph"
				if i%3 == 2 && i/3 < edgeAttempts {
					tier = "edge"
				}
				r := c.post(t, "/api/v1/log/entries", bodies[i], "X-Stella-Tier", tier)
				mu.Lock()
				if r.code != 201 && r.code != 429 && codes[tier][r.code] == 0 {
					t.Logf("%s: %d %s", c.base, r.code, r.body)
				}
				codes[tier][r.code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("answers: %v", codes)
	graphTotal, edgeTotal := 0, 0
	for _, n := range codes["graph"] {
		graphTotal += n
	}
	for _, n := range codes["edge"] {
		edgeTotal += n
	}
	if codes["graph"][201] != hourly || codes["graph"][429] != graphTotal-hourly {
		t.Errorf("graph: %v of %d, want exactly %d × 201 and the rest 429", codes["graph"], graphTotal, hourly)
	}
	if codes["edge"][201] != daily || codes["edge"][429] != edgeTotal-daily {
		t.Errorf("edge: %v of %d, want exactly %d × 201 and the rest 429", codes["edge"], edgeTotal, daily)
	}
	// Each replica counts its own; together they are the budget.
	sum := map[string]float64{}
	for _, c := range replicas {
		got := c.metrics(t)
		for _, tier := range []string{"graph", "edge"} {
			for _, s := range []string{"logged", "rejected", "failed"} {
				sum[tier+" "+s] += got[subm(tier, s)]
			}
		}
		sum["rejected"] += got["attestor_rekor_submissions_rejected"]
	}
	want := map[string]float64{"graph logged": hourly, "graph rejected": float64(graphTotal - hourly), "graph failed": 0,
		"edge logged": daily, "edge rejected": float64(edgeTotal - daily), "edge failed": 0,
		"rejected": float64(graphTotal - hourly + edgeTotal - daily)}
	for k, v := range want {
		if sum[k] != v {
			t.Errorf("replicas' metrics: %s = %v, want %v", k, sum[k], v)
		}
	}
	// Both replicas serve the same log: its size is what was admitted.
	for i, c := range replicas {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := c.http.Get(c.base + "/api/v1/log")
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				TreeSize int64 `json:"treeSize"`
			}
			err = jsonDecode(resp, &info)
			if err == nil && info.TreeSize == hourly+daily {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d: tree size %d (%v), want %d", i, info.TreeSize, err, hourly+daily)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
