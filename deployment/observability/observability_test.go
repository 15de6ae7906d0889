// Package observability holds the monitoring files of the appliance
// (prometheus.yml, alerts.yml, grafana-dashboard.json); these tests check
// them with the real promtool (rules, unit tests of the alerts) and run
// them in the real Prometheus against the running appliance (live_test.go).
package observability

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stellaops/tlog/testing/stack"
)

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtool(t *testing.T) {
	bin := stack.Promtool.Install(t)
	run(t, bin, "check", "rules", "alerts.yml")
	// The scrape configuration names the rule file where the compose
	// profile mounts it; check it with the path pointing here.
	cfg, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("alerts.yml")
	local := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(local, []byte(strings.Replace(string(cfg), "/etc/prometheus/alerts.yml", abs, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, bin, "check", "config", local)
	run(t, bin, "test", "rules", "alerts_test.yml")
}

// TestDashboard: the dashboard is valid JSON whose panels all query.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard uid %q with %d panels", d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}

// TestComposeProfile: the compose file's observability profile is valid
// and runs the Prometheus image built here (no pull) with these files
// where prometheus.yml names them; Grafana, which is pulled, is left out
// of it (profile grafana).
func TestComposeProfile(t *testing.T) {
	if err := exec.Command("docker", "compose", "version").Run(); err != nil {
		t.Skip("the docker compose v2 plugin is not installed (make compose-plugin)")
	}
	out, err := exec.Command("docker", "compose", "-f", "../../docker-compose.yml", "--profile", "observability",
		"config", "--format", "json").Output()
	if err != nil {
		t.Fatalf("docker compose --profile observability config: %v\n%s", err, out)
	}
	var c struct {
		Services map[string]struct {
			Image   string
			Build   *struct{ Target string }
			Volumes []struct{ Source, Target string }
		}
	}
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	p, ok := c.Services["prometheus"]
	if !ok || p.Build == nil || p.Build.Target != "prometheus" || !strings.HasPrefix(p.Image, "stella/prometheus:") {
		t.Fatalf("prometheus service: %+v, want the stella/prometheus image built from the Dockerfile's prometheus target", p)
	}
	mounts := map[string]string{}
	for _, v := range p.Volumes {
		mounts[v.Target] = v.Source
	}
	for target, file := range map[string]string{"/etc/prometheus/prometheus.yml": "prometheus.yml", "/etc/prometheus/alerts.yml": "alerts.yml"} {
		abs, _ := filepath.Abs(file)
		if mounts[target] != abs {
			t.Errorf("prometheus mounts %q at %s, want %s", mounts[target], target, abs)
		}
	}
	if _, ok := c.Services["grafana"]; ok {
		t.Error("the observability profile starts grafana, whose image must be pulled")
	}
}
