package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/loadgen"
	"github.com/stellaops/tlog/testing/stack"
)

// BenchmarkBudgetCost measures what budget accounting costs on write
// throughput at c=16: two logservers on one MariaDB (one database each),
// budgets off and budgets on (limits far above the load, one tenant: every
// write updates the same counter row, the worst case), driven in
// alternating rounds of 2000 writes so that both see the same machine.
//
//	go test -run '^$' -bench BudgetCost -benchtime 1x ./logserver/admission
func BenchmarkBudgetCost(b *testing.B) {
	m := stack.TestMariaDB(b, false)
	off := stack.StartLogserver(b, stack.TestDatabase(b, m, "off"), b.TempDir(), nil)
	on := stack.StartLogserver(b, stack.TestDatabase(b, m, "on"), b.TempDir(), func(c *config.Config) {
		c.Budgets = config.Budgets{Enabled: true, Default: config.BudgetLimits{HourlyLimit: 1e9, BurstLimit: 6e9, EdgeBundleDailyLimit: 1e9}}
	})
	const rounds, n, c = 3, 2000, 16
	rate := map[string][]float64{}
	p50 := map[string][]time.Duration{}
	p99 := map[string][]time.Duration{}
	for range b.N {
		for r := range rounds {
			for _, target := range []struct {
				name string
				ls   *stack.Logserver
			}{{"off", off}, {"on", on}} {
				res, err := loadgen.Write(context.Background(), loadgen.Config{URL: target.ls.URL, N: n, Concurrency: c})
				if err != nil {
					b.Fatal(err)
				}
				if res.Errors > 0 {
					b.Fatalf("budgets %s: %d errors (%s)", target.name, res.Errors, res.FirstError)
				}
				b.Logf("round %d budgets %-3s %s", r, target.name, res)
				rate[target.name] = append(rate[target.name], res.Rate())
				p50[target.name] = append(p50[target.name], res.Pct(0.5))
				p99[target.name] = append(p99[target.name], res.Pct(0.99))
			}
		}
	}
	for _, name := range []string{"off", "on"} {
		var sum float64
		for _, r := range rate[name] {
			sum += r
		}
		b.ReportMetric(sum/float64(len(rate[name])), "writes/s-budgets-"+name)
		b.Logf("budgets %s: mean %.0f writes/s over %d rounds, p50 %v, p99 %v", name, sum/float64(len(rate[name])), len(rate[name]), p50[name], p99[name])
	}
}
