package localrun

import (
	"bytes"
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/deployment/bootstrap"
	"github.com/stellaops/tlog/testing/entries"
)

// TestRunContract checks what `make run` promises: .run/env appears with
// LOG_URL and LOG_PUBLIC_KEY once the log answers, disappears on stop, and a
// second run serves the same tree with the same key and entries.
func TestRunContract(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-tags", "batched_queue", "-o", bin,
		"github.com/stellaops/tlog/logserver/cmd/logserver", "github.com/stellaops/tlog/witness/cmd/witness",
		"github.com/stellaops/tlog/signer/cmd/signer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build logserver: %v\n%s", err, out)
	}
	dir := t.TempDir()

	type run struct {
		env    map[string]string
		cancel context.CancelFunc
		done   chan error
	}
	start := func() run {
		ctx, cancel := context.WithCancel(context.Background())
		r := run{cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- Run(ctx, Options{Dir: dir, BinDir: bin, Out: io.Discard}) }()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			data, err := os.ReadFile(filepath.Join(dir, "env"))
			if err == nil {
				r.env = parseEnv(t, string(data))
				return r
			}
			select {
			case err := <-r.done:
				t.Fatalf("run ended before ready: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("env not written within 3 minutes")
			}
		}
	}
	stop := func(r run) {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Fatalf("run: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "env")); !os.IsNotExist(err) {
			t.Fatalf("env still present after stop: %v", err)
		}
	}

	r1 := start()
	for _, k := range []string{"LOG_URL", "LOG_PUBLIC_KEY", "LOG_NOTE_VKEY", "WITNESS_URL", "WITNESS_VKEY", "SIGNER_URL", "TRUST_DIR", "LOG_TILES_URL", "LOG_V2_URL", "TRUSTED_ROOT", "SIGNING_CONFIG", "TUF_URL"} {
		if r1.env[k] == "" {
			t.Fatalf("env lacks %s: %v", k, r1.env)
		}
	}
	checkAccounts(t, dir)
	// The TUF repository serves a timestamp, and its root is in TRUST_DIR
	// for `cosign initialize --mirror $TUF_URL --root $TRUST_DIR/root.json`.
	if _, err := os.Stat(filepath.Join(r1.env["TRUST_DIR"], "root.json")); err != nil {
		t.Fatalf("TUF root: %v", err)
	}
	if resp, err := http.Get(r1.env["TUF_URL"] + "/timestamp.json"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("TUF timestamp: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	key1, err := os.ReadFile(r1.env["LOG_PUBLIC_KEY"])
	if err != nil || !strings.Contains(string(key1), "PUBLIC KEY") {
		t.Fatalf("public key file: %v", err)
	}
	// The log key is the signer's (in the SoftHSM2 token), not a file.
	resp, err := http.Get(r1.env["SIGNER_URL"] + "/api/v1/signer/keys")
	if err != nil {
		t.Fatal(err)
	}
	keysBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(keysBody, []byte(`"publicKeyPem":`+strconvQuote(string(key1)))) {
		t.Fatalf("the signer does not publish the log key %s:\n%s", key1, keysBody)
	}
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	pe, err := s.HashedRekord([]byte("make run contract"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(pe)
	resp, err = http.Post(r1.env["LOG_URL"]+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create entry: %s", resp.Status)
	}
	// Its SET and checkpoint, signed in the HSM through the signer, verify
	// with Rekor's code against LOG_PUBLIC_KEY.
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(key1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var le models.LogEntry
	if err := json.Unmarshal(created, &le); err != nil {
		t.Fatal(err)
	}
	for _, a := range le {
		if err := verify.VerifyLogEntry(context.Background(), &a, v); err != nil {
			t.Fatalf("entry does not verify: %v", err)
		}
	}
	info1 := logInfo(t, r1.env["LOG_URL"])
	checkWitnessed(t, r1.env, *info1.TreeSize)
	checkV2(t, r1.env)
	stop(r1)

	r2 := start()
	defer stop(r2)
	info2 := logInfo(t, r2.env["LOG_URL"])
	if *info2.TreeID != *info1.TreeID || *info2.TreeSize != *info1.TreeSize || *info2.RootHash != *info1.RootHash {
		t.Fatalf("second run serves tree %s size %d, first served %s size %d", *info2.TreeID, *info2.TreeSize, *info1.TreeID, *info1.TreeSize)
	}
	key2, _ := os.ReadFile(r2.env["LOG_PUBLIC_KEY"])
	if !bytes.Equal(key1, key2) {
		t.Fatal("the log key changed between runs")
	}
	resp, err = http.Post(r2.env["LOG_URL"]+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("re-submitting after restart: %s, want 409", resp.Status)
	}
}

func parseEnv(t *testing.T, s string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 {
			t.Fatalf("env line %q is not an export", line)
		}
		env[k] = strings.Trim(v, "'")
	}
	return env
}

func logInfo(t *testing.T, url string) models.LogInfo {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var li models.LogInfo
	if err := json.NewDecoder(resp.Body).Decode(&li); err != nil {
		t.Fatal(err)
	}
	return li
}

// checkWitnessed waits for GET /checkpoint to carry the witness's
// cosignature on a checkpoint of at least size, and verifies the log's
// signature and the cosignature with transparency-dev/formats.
func checkWitnessed(t *testing.T, env map[string]string, size int64) {
	t.Helper()
	logV, err := fnote.NewVerifier(env["LOG_NOTE_VKEY"])
	if err != nil {
		t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(env["WITNESS_VKEY"])
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(env["LOG_URL"] + "/checkpoint")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			n, err := note.Open(body, note.VerifierList(logV, witV))
			if err == nil && len(n.Sigs) == 2 {
				cp, _, _, err := log.ParseCheckpoint(body, logV.Name(), logV)
				if err == nil && int64(cp.Size) >= size {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no witnessed checkpoint of size >= %d within a minute: %v", size, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// strconvQuote is s as encoding/json writes it.
func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkAccounts checks the database accounts make run gives the services:
// no password-less root over TCP, the signer's audit account reads and
// appends audit rows but can neither change nor delete them, and the
// logserver's account cannot drop its tables.
func checkAccounts(t *testing.T, dir string) {
	t.Helper()
	var p ports
	data, err := os.ReadFile(filepath.Join(dir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	open := func(user, pass, db string) *sql.DB {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, pass, "tcp", "127.0.0.1:"+strconv.Itoa(p.MariaDB), db
		d, err := sql.Open("mysql", c.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	pass := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	// Access denied: 1045, or 1698 for an account authenticated otherwise.
	denied := func(err error) bool {
		var e *mysql.MySQLError
		return errors.As(err, &e) && (e.Number == 1045 || e.Number == 1698)
	}
	if err := open("root", "", "").Ping(); !denied(err) {
		t.Fatalf("root over TCP without a password: want access denied, got %v", err)
	}
	audit := open(bootstrap.AuditAccount, pass("signer/secrets/audit-db-password"), bootstrap.AuditDatabase)
	var n int
	if err := audit.QueryRow("SELECT COUNT(*) FROM signer_audit").Scan(&n); err != nil {
		t.Fatalf("the audit account cannot read audit rows: %v", err)
	}
	if n == 0 {
		t.Fatal("no audit rows after start-up (the signer's canary and the services' calls are audited)")
	}
	for _, q := range []string{"DELETE FROM signer_audit", "UPDATE signer_audit SET decision = decision", "DROP TABLE signer_audit"} {
		if _, err := audit.Exec(q); err == nil {
			t.Fatalf("the audit account may %q", q)
		}
	}
	logdb := open(bootstrap.LogAccount, pass("logserver/secrets/db-password"), bootstrap.LogDatabase)
	if _, err := logdb.Exec("DROP TABLE log_entries"); err == nil {
		t.Fatal("the logserver's account may drop its tables")
	}
	for _, legacy := range []string{"rekor", "signer"} {
		err := open(legacy, pass(map[string]string{"rekor": "logserver/secrets/db-password", "signer": "signer/secrets/audit-db-password"}[legacy]), "").Ping()
		if !denied(err) {
			t.Fatalf("the legacy all-privileges account %q: want access denied, got %v", legacy, err)
		}
	}
}
