package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/stack"
)

// TestBudgetsRealClients: rekor-cli and cosign, which send no credentials,
// log through the default tenant while its budget lasts, then fail within
// seconds (max_retry_after 1s: they retry three times), rekor-cli printing
// the log's 429 message.
func TestBudgetsRealClients(t *testing.T) {
	if left := time.Until(time.Now().UTC().Truncate(time.Hour).Add(time.Hour)); left < 3*time.Minute {
		t.Logf("waiting %v for the next hour (hourly budgets)", left)
		time.Sleep(left + time.Second)
	}
	rekor := rekorCLI(t)
	cosign := stack.Cosign.Install(t)
	e := newEnvWith(t, func(c *config.Config) {
		c.Tenants.DefaultTenant = "pipelines"
		c.Budgets = config.Budgets{Enabled: true, MaxRetryAfter: time.Second, EdgeKinds: []string{"dsse"},
			Default: config.BudgetLimits{HourlyLimit: 2, EdgeBundleDailyLimit: 1}}
	})
	cli := &rekorCLIEnv{bin: rekor, url: e.ls.URL, home: t.TempDir(), pinKey: e.logPublicKeyPEM(t)}
	dir := t.TempDir()
	s := newSigner(t)
	keyFile := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(keyFile, s.PubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	upload := func(i int) []string {
		data := []byte(fmt.Sprintf("budgeted artifact %d\n", i))
		sig, err := s.SignBlob(data)
		if err != nil {
			t.Fatal(err)
		}
		file, sigFile := filepath.Join(dir, fmt.Sprintf("a%d", i)), filepath.Join(dir, fmt.Sprintf("a%d.sig", i))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sigFile, sig, 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"upload", "--artifact", file, "--signature", sigFile, "--public-key", keyFile, "--pki-format", "x509", "--type", "hashedrekord"}
	}
	cosignRun := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(dir, "tuf"),
			"SIGSTORE_REKOR_PUBLIC_KEY="+e.ls.PublicKeyFile)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("cosign %s: err=%v, want ok=%v\n%s", strings.Join(args, " "), err, wantOK, out.String())
		}
		return out.String()
	}
	cosignRun(true, "generate-key-pair")
	blob := func(i int) string {
		p := filepath.Join(dir, fmt.Sprintf("release-%d.txt", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("release %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pred := filepath.Join(dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"buildType":"https://example.com/build","builder":{"id":"ci"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	signBlob := func(i int) []string {
		return []string{"sign-blob", "--yes", "--key", "cosign.key", "--rekor-url", e.ls.URL, "--bundle", fmt.Sprintf("b%d.bundle", i), blob(i)}
	}
	attest := func(i int) []string {
		return []string{"attest-blob", "--yes", "--key", "cosign.key", "--rekor-url", e.ls.URL, "--predicate", pred,
			"--type", "slsaprovenance", "--bundle", fmt.Sprintf("att%d.bundle", i), blob(i)}
	}

	// Within budget: two graph entries (rekor-cli, cosign sign-blob) and
	// one edge bundle (cosign attest-blob logs a dsse entry).
	cli.must(t, []string{`^Created entry at index 0`}, upload(0)...)
	cosignRun(true, signBlob(1)...)
	cosignRun(true, attest(2)...)
	if out := cosignRun(true, "verify-blob", "--key", "cosign.pub", "--bundle", "b1.bundle", blob(1)); !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob: %s", out)
	}
	// Over budget: each client fails with the log's message.
	start := time.Now()
	cli.fails(t, `tenant \"pipelines\" is over its graph budget: hourly limit of 2 submissions reached`, upload(3)...)
	// cosign v2.6.5 is built with Rekor's v1.4.3 client, whose retry
	// wrapper drops the last answer's body: it prints only "giving up after
	// 4 attempt(s)" (Rekor's client prints the body from v1.5, as
	// rekor-cli v1.5.4 above). It fails, promptly, on each tier.
	if out := cosignRun(false, signBlob(4)...); !strings.Contains(out, `giving up after 4 attempt(s)`) {
		t.Fatalf("cosign sign-blob over budget: %s", out)
	}
	if out := cosignRun(false, attest(5)...); !strings.Contains(out, `giving up after 4 attempt(s)`) {
		t.Fatalf("cosign attest-blob over budget: %s", out)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("three refused clients took %v, want seconds (max_retry_after 1s)", took)
	}
	if size := e.treeSize(t); size != 3 {
		t.Fatalf("tree size %d, want 3", size)
	}
	// Each refused client retried 3 times (go-retryablehttp): 4 refusals
	// each.
	got := scrape(t, e.ls.URL)
	for k, v := range map[string]float64{
		`attestor_rekor_submissions_total{status="logged",tier="graph"}`:   2,
		`attestor_rekor_submissions_total{status="rejected",tier="graph"}`: 8,
		`attestor_rekor_submissions_total{status="logged",tier="edge"}`:    1,
		`attestor_rekor_submissions_total{status="rejected",tier="edge"}`:  4,
		`attestor_rekor_submissions_rejected`:                              12,
		`attestor_rekor_budget_remaining{tenant="pipelines"}`:              0,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// scrape reads the logserver's /metrics: sample (as printed) -> value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v float64
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
