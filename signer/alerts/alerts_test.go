// Package alerts holds the signer's Prometheus alert rules
// (signer-alerts.yml) and their promtool unit tests; it has no Go code.
package alerts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/stellaops/tlog/testing/stack"
)

var promtool = stack.Promtool

// TestRulesWithPromtool runs `promtool check rules` and `promtool test
// rules` (the alert unit tests in signer-alerts_test.yml).
func TestRulesWithPromtool(t *testing.T) {
	bin := promtool.Install(t)
	for _, args := range [][]string{{"check", "rules", "signer-alerts.yml"}, {"test", "rules", "signer-alerts_test.yml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
		t.Logf("promtool %v:\n%s", args, out)
	}
}

// TestRulesUseServedMetrics checks that every metric the rules use is a
// metric the signer registers (a renamed metric would silently disable
// its alert).
func TestRulesUseServedMetrics(t *testing.T) {
	rules, err := os.ReadFile("signer-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	srcs, _ := filepath.Glob(filepath.Join("..", "server", "*.go"))
	nameRE := regexp.MustCompile(`(?:Name: |NewDesc\()"(signer_[a-z0-9_]+)"`)
	for _, f := range srcs {
		b, _ := os.ReadFile(f)
		for _, m := range nameRE.FindAllSubmatch(b, -1) {
			served = append(served, string(m[1]))
		}
	}
	if len(served) < 10 {
		t.Fatalf("found only %d metric names in signer/server", len(served))
	}
	used := regexp.MustCompile(`\bsigner_[a-z0-9_]+`).FindAll(rules, -1)
	if len(used) == 0 {
		t.Fatal("no metric in the rules")
	}
	for _, u := range used {
		if !slices.Contains(served, string(u)) {
			t.Errorf("rule metric %s is not registered by signer/server", u)
		}
	}
}
