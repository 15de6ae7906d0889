package server_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/testing/stack"
)

const (
	tokenLabel     = "signer-svc"
	removableLabel = "signer-svc-removable" // taken away and brought back by TestTokenRemoval
)

// Key pairs created in the token by TestMain.
var tokenKeys = map[string]pkcs11.KeyType{
	"attest-ecdsa":  pkcs11.ECDSAP256,
	"attest-ed":     pkcs11.Ed25519,
	"other-attest":  pkcs11.ECDSAP256,
	"ckpt-ed-v1":    pkcs11.Ed25519,
	"ckpt-ed-v2":    pkcs11.Ed25519,
	"ckpt-ed-v3":    pkcs11.Ed25519,
	"rekor-ecdsa":   pkcs11.ECDSAP256,
	"log-ecdsa":     pkcs11.ECDSAP256,
	"witness-ed":    pkcs11.Ed25519,
	"bench-ecdsa":   pkcs11.ECDSAP256,
	"bench-attest":  pkcs11.ECDSAP256,
	"tiny-attest":   pkcs11.ECDSAP256,
	"unready-other": pkcs11.ECDSAP256,
}

// Key pairs created in the removable token by TestMain.
var removableKeys = map[string]pkcs11.KeyType{"rm-attest": pkcs11.ECDSAP256, "rm-log": pkcs11.ECDSAP256}

var (
	hsmModule   string
	hsmTokenDir string
	mariadb     *stack.MariaDB
	// setupToken stays open for the whole run so that the PKCS#11 module
	// is initialised once per process.
	setupToken *pkcs11.Token
	dbCounter  atomic.Int64
)

// TestMain creates a private SoftHSM2 token with every key the tests use,
// and starts one private MariaDB shared by the tests (each test gets its
// own database).
func TestMain(m *testing.M) {
	code, err := testMain(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "signer/server tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func testMain(m *testing.M) (int, error) {
	env, cleanup, err := softhsmtest.Setup(tokenLabel, removableLabel)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	hsmModule, hsmTokenDir = env.Module, env.TokenDir
	ctx := context.Background()
	setupToken, err = pkcs11.Open(ctx, pkcs11.Config{Module: hsmModule, TokenLabel: tokenLabel, PIN: softhsmtest.PIN, Sessions: 1})
	if err != nil {
		return 0, err
	}
	defer setupToken.Close()
	for label, kt := range tokenKeys {
		if _, err := setupToken.Generate(ctx, label, kt); err != nil {
			return 0, fmt.Errorf("generate %s: %w", label, err)
		}
	}
	rt, err := pkcs11.Open(ctx, pkcs11.Config{Module: hsmModule, TokenLabel: removableLabel, PIN: softhsmtest.PIN, Sessions: 1})
	if err != nil {
		return 0, err
	}
	for label, kt := range removableKeys {
		if _, err := rt.Generate(ctx, label, kt); err != nil {
			rt.Close()
			return 0, fmt.Errorf("generate %s: %w", label, err)
		}
	}
	if err := rt.Close(); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "signer-svc-mariadb-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	mariadb, err = stack.StartMariaDB(sctx, dir, stack.MariaDBOptions{})
	if err != nil {
		return 0, err
	}
	defer mariadb.Stop()
	return m.Run(), nil
}

// Bearer tokens of the test tenants.
const (
	tokAcme      = "acme-token-0123456789abcdef0123456789abcdef"
	tokAcmeNoDS  = "acme-token-without-dsse-scope-0123456789ab"
	tokOther     = "other-token-0123456789abcdef0123456789abcd"
	tokLog       = "logserver-token-0123456789abcdef0123456789"
	tokWitness   = "witness-token-0123456789abcdef0123456789ab"
	tokTiny      = "tiny-token-0123456789abcdef0123456789abcde"
	tokBench     = "bench-token-0123456789abcdef0123456789abcd"
	tokSingleton = "single-token-0123456789abcdef0123456789abc"
)

func hashTok(t string) string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

// baseConfig is the configuration most tests use; now anchors the key
// validity windows.
func baseConfig(now time.Time) *server.Config {
	hour := time.Hour
	return &server.Config{
		Token: &pkcs11.Config{Module: hsmModule, TokenLabel: tokenLabel, PIN: softhsmtest.PIN, Sessions: 2},
		Keys: []server.KeyConfig{
			{Name: "acme-attest", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "attest-ecdsa"}}},
			{Name: "acme-attest-ed", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "attest-ed"}}},
			{Name: "other-attest", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "other-attest"}}},
			{Name: "checkpoint", Purposes: []string{"checkpoint"}, NoteName: "log.example/stella", Versions: []server.KeyVersionConfig{
				{Version: 1, Label: "ckpt-ed-v1", NotAfter: now.Add(hour)},
				{Version: 2, Label: "ckpt-ed-v2", NotBefore: now.Add(-hour)},
				{Version: 3, Label: "ckpt-ed-v3", NotBefore: now.Add(24 * hour)},
			}},
			{Name: "rekor", Purposes: []string{"checkpoint"}, NoteName: "rekor.example", Versions: []server.KeyVersionConfig{{Version: 1, Label: "rekor-ecdsa"}}},
			{Name: "log", Purposes: []string{"digests"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "log-ecdsa"}}},
			{Name: "witness", Purposes: []string{"cosignature"}, NoteName: "witness.example", Versions: []server.KeyVersionConfig{{Version: 1, Label: "witness-ed"}}},
			{Name: "bench-attest", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "bench-attest"}}},
			{Name: "bench-log", Purposes: []string{"digests"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "bench-ecdsa"}}},
			{Name: "tiny-attest", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "tiny-attest"}}},
		},
		Tenants: []server.TenantConfig{
			{Name: "acme", Tokens: []server.TokenConfig{
				{ID: "acme-ci", SHA256: hashTok(tokAcme), Scopes: []string{"sign:dsse"}},
				{ID: "acme-readonly", SHA256: hashTok(tokAcmeNoDS), Scopes: []string{"sign:checkpoint"}},
			}, Keys: []string{"acme-attest", "acme-attest-ed"},
				AllowedPredicateTypes: []string{"https://slsa.dev/provenance/v1", "stella.ops/promotion@v1"},
				AllowedPayloadTypes:   []string{"application/vnd.cyclonedx+json"}},
			{Name: "other", Tokens: []server.TokenConfig{{ID: "other-ci", SHA256: hashTok(tokOther), Scopes: []string{"sign:dsse"}}},
				Keys: []string{"other-attest"}},
			{Name: "logserver", Tokens: []server.TokenConfig{{ID: "logserver", SHA256: hashTok(tokLog), Scopes: []string{"sign:digests", "sign:checkpoint"}}},
				Keys: []string{"checkpoint", "rekor", "log"}, Quota: server.QuotaConfig{RPS: 10000, MaxPayloadBytes: 8 << 20}},
			{Name: "witness", Tokens: []server.TokenConfig{{ID: "witness", SHA256: hashTok(tokWitness), Scopes: []string{"sign:cosignature"}}},
				Keys: []string{"witness"}},
			{Name: "tiny", Tokens: []server.TokenConfig{{ID: "tiny", SHA256: hashTok(tokTiny), Scopes: []string{"sign:dsse"}}},
				Keys: []string{"tiny-attest"}, Quota: server.QuotaConfig{RPS: 0.001, Burst: 1, MaxPayloadBytes: 2048}},
			{Name: "single", Tokens: []server.TokenConfig{{ID: "single", SHA256: hashTok(tokSingleton), Scopes: []string{"sign:dsse"}}},
				Keys: []string{"tiny-attest"}, Quota: server.QuotaConfig{RPS: 1e6, Burst: 1000, Concurrency: 1}},
			{Name: "bench", Tokens: []server.TokenConfig{{ID: "bench", SHA256: hashTok(tokBench), Scopes: []string{"sign:dsse", "sign:digests"}}},
				Keys: []string{"bench-attest", "bench-log"}, Quota: server.QuotaConfig{RPS: 1e6, Burst: 100000, Concurrency: 256, MaxPayloadBytes: 8 << 20}},
		},
		ReadinessInterval: time.Hour, // tests call CheckReady themselves
	}
}

// env is one running service on 127.0.0.1 with its own database.
type env struct {
	t       testing.TB
	srv     *server.Server
	ts      *httptest.Server
	url     string
	dbName  string
	svcUser string
	root    *sql.DB // root over the unix socket
	appDB   *sql.DB // the test's view of the database (all privileges)
}

// newEnv creates a database, applies the migrations with a privileged
// user, creates a service user with INSERT and SELECT on signer_audit only,
// and starts the service with it.
func newEnv(t testing.TB, cfg *server.Config, opts server.Options) *env {
	t.Helper()
	ctx := context.Background()
	n := dbCounter.Add(1)
	e := &env{t: t, dbName: fmt.Sprintf("signer%d", n), svcUser: fmt.Sprintf("svc%d", n)}
	adminDSN := stack.TestDatabase(t, mariadb, e.dbName)
	var err error
	if e.appDB, err = audit.OpenDB(adminDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.appDB.Close() })
	if err := audit.Migrate(ctx, e.appDB); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	rc := mysql.NewConfig()
	rc.User, rc.Net, rc.Addr = "root", "unix", filepath.Join(mariadb.Dir, "mysqld.sock")
	if e.root, err = sql.Open("mysql", rc.FormatDSN()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.root.Close() })
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY 'pw'", e.svcUser),
		fmt.Sprintf("GRANT INSERT, SELECT ON `%s`.signer_audit TO '%s'@'127.0.0.1'", e.dbName, e.svcUser),
	} {
		if _, err := e.root.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sc := mysql.NewConfig()
	sc.User, sc.Passwd, sc.Net, sc.Addr, sc.DBName = e.svcUser, "pw", "tcp", fmt.Sprintf("127.0.0.1:%d", mariadb.Port), e.dbName
	cfg.Audit.DSN = sc.FormatDSN()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if opts.Logger == nil && !testing.Verbose() {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e.srv, err = server.New(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		e.ts = httptest.NewUnstartedServer(e.srv.Handler())
		e.ts.TLS = tc
		e.ts.StartTLS()
	} else {
		e.ts = httptest.NewServer(e.srv.Handler())
	}
	e.url = e.ts.URL
	t.Cleanup(func() {
		e.ts.Close()
		if err := e.srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
	})
	return e
}

func (e *env) client(token string) *client.Client { return client.New(e.url, token, nil) }

// post sends a raw body and returns status, headers and decoded JSON body.
func (e *env) post(path, token, body string) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		e.t.Fatalf("%s: body is not JSON: %v", path, err)
	}
	return resp.StatusCode, resp.Header, m
}

// auditRow is the part of an audit row tests look at.
type auditRow struct {
	Tenant, Caller, Endpoint, KeyName, KeyVersions, PayloadType, PredicateType string
	Subjects                                                                   sql.NullString
	PAE                                                                        []byte
	Items                                                                      int
	Decision                                                                   string
	Status                                                                     int
	Reason, Ticket                                                             string
}

// audit returns the audit row of a request id (as the service user would
// read it), failing the test when there is not exactly one.
func (e *env) audit(requestID string) auditRow {
	e.t.Helper()
	rows := e.auditWhere("request_id = ?", requestID)
	if len(rows) != 1 {
		e.t.Fatalf("audit rows for request %s: %d, want 1", requestID, len(rows))
	}
	return rows[0]
}

func (e *env) auditWhere(where string, args ...any) []auditRow {
	e.t.Helper()
	rows, err := e.appDB.Query(`SELECT tenant, caller, endpoint, key_name, key_versions, payload_type, predicate_type,
		subject_digests, pae_sha256, items, decision, http_status, reason, redaction_ticket FROM signer_audit WHERE `+where+` ORDER BY id`, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.Tenant, &r.Caller, &r.Endpoint, &r.KeyName, &r.KeyVersions, &r.PayloadType, &r.PredicateType,
			&r.Subjects, &r.PAE, &r.Items, &r.Decision, &r.Status, &r.Reason, &r.Ticket); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) auditCount() int {
	e.t.Helper()
	var n int
	if err := e.appDB.QueryRow("SELECT COUNT(*) FROM signer_audit").Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}
