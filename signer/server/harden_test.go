package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

// metric returns the value of the sample whose line starts with prefix
// (name{labels}), or -1.
func (e *env) metric(prefix string) float64 {
	e.t.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return v
		}
	}
	return -1
}

func (e *env) readyz() (int, http.Header, map[string]any) {
	e.t.Helper()
	resp, err := http.Get(e.url + "/readyz")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestUnauthenticatedCostsNothingDurable: requests with no or unknown
// credentials, on every signing endpoint, write no audit row; they are
// counted, logged once per log interval, and past the global budget get
// 429 with Retry-After. Authenticated callers are not affected by the
// budget, and their refusals keep exactly one audit row each.
func TestUnauthenticatedCostsNothingDurable(t *testing.T) {
	cfg := baseConfig(time.Now())
	cfg.Unauthenticated = server.UnauthenticatedConfig{RPS: 0.01, Burst: 6, LogInterval: time.Hour}
	var logs syncBuffer
	e := newEnv(t, cfg, server.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	st := `{"statement":` + statement("https://spdx.dev/Document", "") + `}`
	paths := []string{api.PathDSSE, api.PathDigests, api.PathCheckpoint, api.PathCosignature}
	statuses := map[int]int{}
	var lastHeader http.Header
	var lastBody map[string]any
	for i := range 20 {
		token := "not-a-token"
		if i%2 == 1 {
			token = ""
		}
		status, h, m := e.post(paths[i%len(paths)], token, st)
		statuses[status]++
		if status == http.StatusTooManyRequests {
			lastHeader, lastBody = h, m
		} else if status != http.StatusUnauthorized || m["error"] != "unauthenticated" {
			t.Fatalf("request %d: %d %v", i, status, m)
		}
	}
	if statuses[401] != 6 || statuses[429] != 14 {
		t.Errorf("statuses %v, want 6×401 (the burst) then 14×429", statuses)
	}
	if lastBody["error"] != "unauthenticated_rate_limited" || lastHeader.Get("Retry-After") == "" || lastHeader.Get("Retry-After") == "0" {
		t.Errorf("429: %v, Retry-After %q", lastBody, lastHeader.Get("Retry-After"))
	}
	if n := e.auditCount(); n != 0 {
		t.Errorf("%d audit rows after unauthenticated requests only, want 0", n)
	}
	got := e.metric(`signer_unauthenticated_total{code="unauthenticated",endpoint="dsse"}`) +
		e.metric(`signer_unauthenticated_total{code="unauthenticated",endpoint="digests"}`) +
		e.metric(`signer_unauthenticated_total{code="unauthenticated",endpoint="checkpoint"}`) +
		e.metric(`signer_unauthenticated_total{code="unauthenticated",endpoint="cosignature"}`)
	if got != 6 {
		t.Errorf("signer_unauthenticated_total{code=unauthenticated} sums to %v, want 6", got)
	}
	if n := strings.Count(logs.String(), "refused an unauthenticated request"); n != 1 {
		t.Errorf("%d log lines for 20 unauthenticated requests, want 1 (log_interval 1h)\n%s", n, logs.String())
	}

	// Authenticated callers still sign while the budget is exhausted, and
	// an authenticated refusal is audited exactly once.
	resp, err := e.client(tokAcme).SignDSSE(context.Background(), api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(statement("https://slsa.dev/provenance/v1", ""))})
	if err != nil {
		t.Fatalf("authenticated request with the unauthenticated budget spent: %v", err)
	}
	if row := e.audit(resp.RequestID); row.Decision != "signed" {
		t.Errorf("audit %+v", row)
	}
	status, _, m := e.post(api.PathDSSE, tokAcmeNoDS, st)
	if status != 403 || m["error"] != "scope_missing" {
		t.Fatalf("missing scope: %d %v", status, m)
	}
	if row := e.audit(m["requestId"].(string)); row.Decision != "refused" || row.Tenant != "acme" || row.Reason != "scope_missing" {
		t.Errorf("audit %+v", row)
	}
	if n := e.auditCount(); n != 2 {
		t.Errorf("%d audit rows, want 2 (one signed, one authenticated refusal)", n)
	}
}

// TestReadyzNeverStartsAPass: /readyz, with or without refresh, answers
// the last pass; polling it does not sign.
func TestReadyzNeverStartsAPass(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	status, _, first := e.readyz()
	if status != 200 {
		t.Fatalf("readyz %d %v", status, first)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			resp, err := http.Get(e.url + "/readyz?refresh=1")
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	_, _, after := e.readyz()
	if after["checked"] != first["checked"] {
		t.Errorf("a readiness pass ran for /readyz?refresh=1: checked %v → %v", first["checked"], after["checked"])
	}
	// CheckReady (the periodic pass) does run one.
	time.Sleep(time.Millisecond)
	e.srv.CheckReady(context.Background())
	if _, _, m := e.readyz(); m["checked"] == first["checked"] {
		t.Error("CheckReady did not publish a new pass (the assertion above could not fail)")
	}
}

// TestLargeStatementsDoNotFailOtherTenants sends statements with
// thousands of subjects from one tenant while another sends many small
// ones, on a database whose max_allowed_packet (4 MiB) holds one large
// audit row but not two. The audit table is locked until every request
// waits for its row, so that all rows meet in one group commit (one
// committer): every request must still succeed and every row be there.
// (Without the byte bound the one INSERT exceeds the packet limit and all
// 203 requests fail.)
func TestLargeStatementsDoNotFailOtherTenants(t *testing.T) {
	rc := mysql.NewConfig()
	rc.User, rc.Net, rc.Addr = "root", "unix", filepath.Join(mariadb.Dir, "mysqld.sock")
	root, err := sql.Open("mysql", rc.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var packet int
	if err := root.QueryRow("SELECT @@GLOBAL.max_allowed_packet").Scan(&packet); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Exec("SET GLOBAL max_allowed_packet = 4194304"); err != nil {
		t.Fatal(err)
	}
	defer root.Exec(fmt.Sprintf("SET GLOBAL max_allowed_packet = %d", packet))
	cfg := baseConfig(time.Now())
	cfg.Tenants[2].Quota.Concurrency = 256 // logserver: the many small requests
	cfg.Audit.Committers = 1
	e := newEnv(t, cfg, server.Options{}) // its connections see the 4 MiB limit
	ctx := context.Background()
	lock, err := e.appDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "LOCK TABLES signer_audit WRITE"); err != nil {
		t.Fatal(err)
	}

	var subj strings.Builder
	for i := range 30000 { // ≈ 2.2 MB of subject digests in the audit row
		if i > 0 {
			subj.WriteByte(',')
		}
		fmt.Fprintf(&subj, `{"name":"f%d","digest":{"sha256":"%064x"}}`, i, i)
	}
	large := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[%s],"predicateType":"https://spdx.dev/Document","predicate":{}}`, subj.String())
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256}}
	big := client.New(e.url, tokBench, hc)
	small := client.New(e.url, tokLog, hc)
	const nLarge, nSmall = 3, 200
	var wg sync.WaitGroup
	ids := make([]string, nLarge+nSmall)
	errs := make([]error, nLarge+nSmall)
	for i := range nLarge {
		wg.Go(func() {
			resp, err := big.SignDSSE(context.Background(), api.DSSERequest{Key: "bench-attest", Statement: json.RawMessage(large)})
			if err == nil {
				ids[i] = resp.RequestID
			}
			errs[i] = err
		})
	}
	for i := range nSmall {
		wg.Go(func() {
			text := fmt.Sprintf("log.example/stella\n%d\n%s\n", i+1, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
			resp, err := small.SignCheckpoint(context.Background(), "checkpoint", text)
			if err == nil {
				ids[nLarge+i] = resp.RequestID
			}
			errs[nLarge+i] = err
		})
	}
	deadline := time.Now().Add(time.Minute)
	for e.metric("signer_requests_in_flight") < nLarge+nSmall {
		if time.Now().After(deadline) {
			t.Fatalf("only %v requests in flight", e.metric("signer_requests_in_flight"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the last ones finish signing and queue their rows
	if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d (large: %v): %v", i, i < nLarge, err)
		}
	}
	for i, id := range ids {
		row := e.audit(id)
		if row.Decision != "signed" {
			t.Fatalf("request %d: audit %+v", i, row)
		}
		if i < nLarge && strings.Count(row.Subjects.String, "sha256:") != 30000 {
			t.Errorf("large request %d: %d subjects in the audit row", i, strings.Count(row.Subjects.String, "sha256:"))
		}
	}
	if n := e.auditCount(); n != nLarge+nSmall {
		t.Errorf("%d audit rows, want %d", n, nLarge+nSmall)
	}
}

// TestDigestsKeyPairSharedAtRuntime: the same key pair in two files, one
// under a digests key and one under a DSSE key, passes the configuration
// check (different files) but the second one opened stays unavailable.
func TestDigestsKeyPairSharedAtRuntime(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	dir := t.TempDir()
	var files []string
	for _, n := range []string{"a.pem", "b.pem"} {
		f := filepath.Join(dir, n)
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cfg := baseConfig(time.Now())
	cfg.Keys = append(cfg.Keys,
		server.KeyConfig{Name: "file-log", Purposes: []string{"digests"}, Versions: []server.KeyVersionConfig{{Version: 1, File: files[0]}}},
		server.KeyConfig{Name: "file-attest", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, File: files[1]}}})
	cfg.Tenants[1].Keys = append(cfg.Tenants[1].Keys, "file-attest")
	e := newEnv(t, cfg, server.Options{})
	status, _, m := e.readyz()
	if status != 503 || !strings.Contains(fmt.Sprint(m["problems"]), "also file-log version 1") {
		t.Fatalf("readyz %d %v", status, m)
	}
	st, _, body := e.post(api.PathDSSE, tokOther, `{"key":"file-attest","statement":`+statement("https://spdx.dev/Document", "")+`}`)
	if st != 503 || body["error"] != "key_unavailable" {
		t.Errorf("signing with the shared key pair: %d %v", st, body)
	}
}

// removableConfig serves two keys of the removable token.
func removableConfig() *server.Config {
	return &server.Config{
		Token: &pkcs11.Config{Module: hsmModule, TokenLabel: removableLabel, PIN: softhsmtest.PIN, Sessions: 2, RetryInterval: 200 * time.Millisecond},
		Keys: []server.KeyConfig{
			{Name: "rm-attest", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "rm-attest"}}},
			{Name: "rm-log", Purposes: []string{"digests"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "rm-log"}}},
		},
		Tenants: []server.TenantConfig{{Name: "acme", Tokens: []server.TokenConfig{
			{ID: "acme-ci", SHA256: hashTok(tokAcme), Scopes: []string{"sign:dsse", "sign:digests"}}},
			Keys: []string{"rm-attest", "rm-log"}}},
		ReadinessInterval: time.Hour, // while ready; every second while not
	}
}

// softhsmDir returns the directory SoftHSM2 keeps the token labelled
// label in.
func softhsmDir(t *testing.T, label string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(hsmTokenDir, "*", "token.object"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(label)) && !bytes.Contains(b, []byte(label+"-")) {
			return filepath.Dir(f)
		}
	}
	t.Fatalf("no SoftHSM2 directory holds token %q", label)
	return ""
}

// TestTokenRemoval takes the service's SoftHSM2 token away while it runs
// (its directory moved out of the token store, or the whole store moved)
// and brings it back: meanwhile /readyz is 503 and signing answers 503
// token_unavailable with Retry-After, each such request audited once as
// failed; afterwards the service is ready and signs again, without a
// restart.
func TestTokenRemoval(t *testing.T) {
	e := newEnv(t, removableConfig(), server.Options{})
	c := e.client(tokAcme)
	ctx := context.Background()
	st := json.RawMessage(statement("https://spdx.dev/Document", ""))
	sign := func() (int, http.Header, map[string]any) {
		return e.post(api.PathDSSE, tokAcme, `{"key":"rm-attest","statement":`+string(st)+`}`)
	}
	if status, _, m := sign(); status != 200 {
		t.Fatalf("before: %d %v", status, m)
	}
	for _, tc := range []struct{ name, dir string }{
		{"token directory", softhsmDir(t, removableLabel)},
		{"whole token store", hsmTokenDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			away := filepath.Join(filepath.Dir(hsmTokenDir), "away-"+filepath.Base(tc.dir))
			if err := os.Rename(tc.dir, away); err != nil {
				t.Fatal(err)
			}
			back := false
			restore := func() {
				if !back {
					back = true
					if err := os.Rename(away, tc.dir); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer restore()
			before := e.auditCount()
			for i := range 3 {
				status, h, m := sign()
				if status != 503 || m["error"] != "token_unavailable" || h.Get("Retry-After") == "" {
					t.Fatalf("signing without the token (%d): %d %v Retry-After %q", i, status, m, h.Get("Retry-After"))
				}
				if row := e.audit(m["requestId"].(string)); row.Decision != "failed" || row.Status != 503 || row.Reason != "token_unavailable" {
					t.Errorf("audit %+v", row)
				}
			}
			_, err := c.SignDigests(ctx, "rm-log", 0, make([][32]byte, 3))
			if ce, ok := err.(*client.Error); !ok || ce.Status != 503 || ce.Code != "token_unavailable" || ce.RetryAfter < time.Second || !ce.Temporary() {
				t.Errorf("digests without the token: %v", err)
			}
			if n := e.auditCount(); n != before+4 {
				t.Errorf("audit rows %d → %d for 4 failed requests", before, n)
			}
			status, h, m := e.readyz()
			if status != 503 || h.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(m["problems"]), "token") {
				t.Errorf("readyz without the token: %d %v", status, m)
			}
			time.Sleep(1500 * time.Millisecond) // a background pass or two fail meanwhile
			if status, _, m := e.readyz(); status != 503 {
				t.Errorf("readyz after a pass without the token: %d %v", status, m)
			}
			restore()
			deadline := time.Now().Add(20 * time.Second)
			for {
				status, _, m := e.readyz()
				if status == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not ready 20 s after the token came back: %v", m)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if status, _, m := sign(); status != 200 {
				t.Fatalf("signing after the token came back: %d %v", status, m)
			} else if row := e.audit(m["requestId"].(string)); row.Decision != "signed" {
				t.Errorf("audit %+v", row)
			}
			if _, err := c.SignDigests(ctx, "rm-log", 0, make([][32]byte, 3)); err != nil {
				t.Errorf("digests after the token came back: %v", err)
			}
		})
	}
	// The other token of the module (the one the other tests use) came
	// through the module's re-initialisations.
	if _, err := setupToken.Keys(ctx); err != nil {
		t.Errorf("the other token after the re-initialisations: %v", err)
	}
}
