package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"gopkg.in/yaml.v3"

	"github.com/stellaops/tlog/deployment/localrun"
	"github.com/stellaops/tlog/deployment/mariadb"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// TestLive runs the monitoring files against the running appliance: the
// appliance as `make run` deploys it (deployment/localrun: MariaDB, the
// signer over SoftHSM2, the witness, the logserver with its v1 and v2
// logs), the mirror's export daemon against its v2 log, and the real
// Prometheus server with prometheus.yml (only the targets pointed at the
// local services, 1 s intervals) and a copy of alerts.yml whose `for:` are
// 1 s. Through Prometheus's HTTP API: every target is up, every metric a
// rule or a dashboard panel names has series, every rule evaluates without
// error; then, with the appliance stopped, StellaServiceDown fires for each
// of its services and StellaMirrorExportFailing for the mirror's failed
// export.
func TestLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the appliance and Prometheus (about a minute); not with -short")
	}
	prom := stack.Prometheus.Install(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-tags", "batched_queue", "-o", bin,
		"github.com/stellaops/tlog/logserver/cmd/logserver", "github.com/stellaops/tlog/witness/cmd/witness",
		"github.com/stellaops/tlog/signer/cmd/signer", "github.com/stellaops/tlog/mirror/cmd/mirror")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the services: %v\n%s", err, out)
	}

	// The appliance.
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localrun.Run(ctx, localrun.Options{Dir: dir, BinDir: bin, Out: io.Discard}) }()
	stopped := false
	stopAppliance := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("make run: %v", err)
		}
	}
	t.Cleanup(stopAppliance)
	env := waitEnv(t, filepath.Join(dir, "env"), done)
	writeEntries(t, env)
	refuseSignerRequests(t, env["SIGNER_URL"], filepath.Join(dir, "logserver", "secrets", "signer-token"))

	// The mirror's export daemon, as compose runs it (every 2 s here).
	ports, err := mariadb.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	mirrorAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	mirror := exec.Command(filepath.Join(bin, "mirror"), "export", "--source", env["LOG_V2_URL"]+"/api/v2/",
		"--policy", filepath.Join(env["TRUST_DIR"], "witness-policy-v2"), "--dir", t.TempDir(),
		"--every", "2s", "--metrics-listen", mirrorAddr)
	mirrorLog, err := os.Create(filepath.Join(dir, "mirror.log"))
	if err != nil {
		t.Fatal(err)
	}
	mirror.Stdout, mirror.Stderr = mirrorLog, mirrorLog
	startProcess(t, mirror)
	// Its first successful export (the witness has cosigned the v2
	// checkpoint): failures before it would be counted, so Prometheus
	// starts after it and the mirror's alerts start quiet.
	waitFor(t, "a successful mirror export (see "+mirrorLog.Name()+")", 2*time.Minute, func() error {
		b, err := get("http://" + mirrorAddr + "/metrics")
		if err == nil && metricValue(b, "mirror_export_snapshot_size") < 1 {
			err = errors.New("no snapshot yet")
		}
		return err
	})

	// Prometheus with the appliance's files.
	targets := map[string]string{
		"logserver": hostPort(t, env["LOG_URL"]), "signer": hostPort(t, env["SIGNER_URL"]),
		"witness": hostPort(t, env["WITNESS_URL"]), "mirror": mirrorAddr,
	}
	cfgDir := t.TempDir()
	writeRulesCopy(t, filepath.Join(cfgDir, "alerts.yml"))
	writeConfigCopy(t, filepath.Join(cfgDir, "prometheus.yml"), filepath.Join(cfgDir, "alerts.yml"), targets)
	promURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	promLog, err := os.Create(filepath.Join(cfgDir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	p := exec.Command(prom, "--config.file="+filepath.Join(cfgDir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(cfgDir, "data"), "--web.listen-address=127.0.0.1:"+strconv.Itoa(ports[1]))
	p.Stdout, p.Stderr = promLog, promLog
	startProcess(t, p)
	waitFor(t, "Prometheus ready (see "+promLog.Name()+")", time.Minute, func() error {
		_, err := get(promURL + "/-/ready")
		return err
	})
	api := promAPI{t: t, url: promURL}

	// (a) Every target is up.
	waitFor(t, "every target up", time.Minute, func() error {
		var r struct {
			ActiveTargets []struct {
				Labels    map[string]string
				Health    string
				LastError string
			}
		}
		api.get("/api/v1/targets", &r)
		var problems []string
		for _, tg := range r.ActiveTargets {
			if tg.Health != "up" {
				problems = append(problems, fmt.Sprintf("%s: %s %s", tg.Labels["job"], tg.Health, tg.LastError))
			}
		}
		if len(r.ActiveTargets) != len(targets) {
			problems = append(problems, fmt.Sprintf("%d targets, want %d", len(r.ActiveTargets), len(targets)))
		}
		return joinProblems(problems)
	})

	// (b) Every metric named by a rule or a panel has series.
	names := namedMetrics(t)
	t.Logf("%d metrics named by the rules and panels", len(names))
	waitFor(t, "series for every metric the rules and panels name", 30*time.Second, func() error {
		var have []string
		api.get("/api/v1/label/__name__/values", &have)
		var missing []string
		for _, n := range names {
			if !slices.Contains(have, n) {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no series for %v", missing)
		}
		return nil
	})

	// (c) Every rule loads and evaluates without error.
	want := ruleCount(t)
	waitFor(t, "every rule evaluated", 30*time.Second, func() error {
		rules := api.rules()
		if len(rules) != want {
			t.Fatalf("Prometheus loaded %d rules, alerts.yml has %d", len(rules), want)
		}
		var problems []string
		for _, r := range rules {
			switch r.Health {
			case "ok":
			case "err":
				t.Fatalf("rule %s: %s", r.Name, r.LastError)
			default:
				problems = append(problems, r.Name+": "+r.Health)
			}
		}
		return joinProblems(problems)
	})
	t.Logf("%d rules evaluated without error", want)
	// Quiet while everything runs: the alerts below fire for the stop.
	for _, a := range api.alerts() {
		if a.Labels["alertname"] == "StellaServiceDown" || strings.HasPrefix(a.Labels["alertname"], "StellaMirror") {
			t.Fatalf("%s is %s before anything was stopped: %v", a.Labels["alertname"], a.State, a.Labels)
		}
	}

	// (d) Stop the appliance: its three services are down for
	// Prometheus, and the mirror's next export fails to fetch.
	stopAppliance()
	stoppedAt := time.Now()
	waitFor(t, "StellaServiceDown firing for logserver, signer and witness, and StellaMirrorExportFailing (fetch)", time.Minute, func() error {
		down := map[string]bool{}
		mirrorFailing := false
		for _, a := range api.alerts() {
			if a.State != "firing" {
				continue
			}
			switch a.Labels["alertname"] {
			case "StellaServiceDown":
				down[a.Labels["job"]] = true
			case "StellaMirrorExportFailing":
				mirrorFailing = mirrorFailing || a.Labels["reason"] == "fetch"
			}
		}
		if !down["logserver"] || !down["signer"] || !down["witness"] || !mirrorFailing {
			return fmt.Errorf("firing: StellaServiceDown for %v, StellaMirrorExportFailing (fetch) %v", down, mirrorFailing)
		}
		return nil
	})
	t.Logf("StellaServiceDown (logserver, signer, witness) and StellaMirrorExportFailing firing %v after the stop", time.Since(stoppedAt).Round(100*time.Millisecond))
}

// namedMetrics are the metric names in every expression of alerts.yml and
// grafana-dashboard.json, found by Prometheus's own PromQL parser.
func namedMetrics(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct{ Targets []struct{ Expr string } }
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	seen := map[string]bool{}
	for _, e := range exprs {
		ast, err := parser.ParseExpr(e)
		if err != nil {
			t.Fatalf("%q: %v", e, err)
		}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			if v, ok := n.(*parser.VectorSelector); ok {
				name := v.Name
				for _, m := range v.LabelMatchers {
					if m.Name == "__name__" {
						name = m.Value
					}
				}
				if name == "" {
					t.Fatalf("%q selects no metric by name", e)
				}
				seen[name] = true
			}
			return nil
		})
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	// The files are read: the appliance's rules and panels name dozens.
	if len(exprs) < 30 || len(names) < 30 {
		t.Fatalf("%d expressions naming %d metrics: the files were not read", len(exprs), len(names))
	}
	return names
}

type ruleFile struct {
	Groups []struct {
		Rules []struct{ Alert, Expr string }
	}
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

func ruleCount(t *testing.T) int {
	n := 0
	for _, g := range readRules(t).Groups {
		n += len(g.Rules)
	}
	return n
}

// writeRulesCopy writes alerts.yml with every `for:` set to 1s, so that an
// alert whose condition holds fires within seconds.
func writeRulesCopy(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf map[string][]map[string]any
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf["groups"] {
		rules, _ := g["rules"].([]any)
		for _, r := range rules {
			if r, ok := r.(map[string]any); ok && r["for"] != nil {
				r["for"] = "1s"
			}
		}
	}
	writeYAML(t, path, rf)
}

// writeConfigCopy writes prometheus.yml with its targets replaced by the
// local services' addresses (by job name: every job must have one, and
// every local service a job), 1 s scrape and evaluation intervals, and the
// rule file at rules.
func writeConfigCopy(t *testing.T, path, rules string, targets map[string]string) {
	t.Helper()
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		t.Fatal("prometheus.yml has no global section")
	}
	global["scrape_interval"], global["evaluation_interval"], global["scrape_timeout"] = "1s", "1s", "1s"
	if fmt.Sprint(cfg["rule_files"]) != "[/etc/prometheus/alerts.yml]" {
		t.Fatalf("prometheus.yml rule_files %v: want the compose mount of alerts.yml", cfg["rule_files"])
	}
	cfg["rule_files"] = []string{rules}
	jobs := map[string]bool{}
	scrapes, _ := cfg["scrape_configs"].([]any)
	for _, s := range scrapes {
		sc, _ := s.(map[string]any)
		job, _ := sc["job_name"].(string)
		addr, ok := targets[job]
		if !ok {
			t.Fatalf("prometheus.yml job %q: no local service for it in this test", job)
		}
		jobs[job] = true
		sc["static_configs"] = []map[string]any{{"targets": []string{addr}}}
	}
	for job := range targets {
		if !jobs[job] {
			t.Fatalf("prometheus.yml does not scrape %s", job)
		}
	}
	writeYAML(t, path, cfg)
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeEntries logs entries as clients do: hashedrekord and DSSE to the
// v1 log, a sigstore-go bundle through the v2 log.
func writeEntries(t *testing.T, env map[string]string) {
	t.Helper()
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		pe, err := s.HashedRekord(fmt.Appendf(nil, "observability %d %d", i, time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		dsse, err := s.DSSE(fmt.Appendf(nil, "observability dsse %d %d", i, time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []any{pe, dsse} {
			body, _ := json.Marshal(e)
			resp, err := http.Post(env["LOG_URL"]+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("v1 entry: %s", resp.Status)
			}
		}
	}
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Bundle(&sign.PlainData{Data: fmt.Appendf(nil, "observability v2 %d", time.Now().UnixNano())}, kp, sign.BundleOptions{
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: env["LOG_V2_URL"], Version: 2})},
	}); err != nil {
		t.Fatalf("v2 entry: %v", err)
	}
}

// refuseSignerRequests makes the signer refuse two requests, so that its
// rejection counters have series: one with no valid token, one with the
// logserver's token for a scope it lacks.
func refuseSignerRequests(t *testing.T, signerURL, tokenFile string) {
	t.Helper()
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, bearer := range []string{"not-a-token", strings.TrimSpace(string(tok))} {
		req, _ := http.NewRequest("POST", signerURL+"/api/v1/signer/sign/cosignature", strings.NewReader(`{"key":"witness","text":"x\n"}`))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Fatalf("signer request with bearer %.8s…: %s, want 401 or 403", bearer, resp.Status)
		}
	}
}

type promAPI struct {
	t   *testing.T
	url string
}

// get decodes the data of a Prometheus API answer into v.
func (p promAPI) get(path string, v any) {
	p.t.Helper()
	b, err := get(p.url + path)
	if err != nil {
		p.t.Fatal(err)
	}
	var r struct {
		Status string
		Error  string
		Data   json.RawMessage
	}
	if err := json.Unmarshal([]byte(b), &r); err != nil || r.Status != "success" {
		p.t.Fatalf("GET %s: %v %s", path, err, b)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
}

type promRule struct {
	Name, Health, LastError string
}

func (p promAPI) rules() []promRule {
	var r struct {
		Groups []struct{ Rules []promRule }
	}
	p.get("/api/v1/rules", &r)
	var out []promRule
	for _, g := range r.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

type promAlert struct {
	Labels map[string]string
	State  string
}

func (p promAPI) alerts() []promAlert {
	var r struct{ Alerts []promAlert }
	p.get("/api/v1/alerts", &r)
	return r.Alerts
}

func get(u string) (string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), err
}

// metricValue is the value of an unlabelled sample in a Prometheus text
// exposition, -1 if absent.
func metricValue(exposition, name string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func hostPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("URL %q: %v", raw, err)
	}
	return u.Host
}

func waitEnv(t *testing.T, path string, done <-chan error) map[string]string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if data, err := os.ReadFile(path); err == nil {
			env := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
				env[k] = strings.Trim(v, "'")
			}
			return env
		}
		select {
		case err := <-done:
			t.Fatalf("make run ended before ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("make run not ready within 3 minutes")
		}
	}
}

// startProcess starts cmd and stops it (SIGTERM, then SIGKILL) at the end
// of the test.
func startProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
}

// waitFor polls check until it returns nil, failing the test with its
// last error after limit.
func waitFor(t *testing.T, what string, limit time.Duration, check func() error) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v: %v", what, limit, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func joinProblems(p []string) error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}
