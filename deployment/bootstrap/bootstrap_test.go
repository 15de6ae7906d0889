package bootstrap

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	sumnote "golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/service"
	lsconfig "github.com/stellaops/tlog/logserver/config"
	signernote "github.com/stellaops/tlog/signer/note"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/stack"
	wconfig "github.com/stellaops/tlog/witness/config"
)

func plan(t *testing.T, db *stack.MariaDB, dir string) Plan {
	return Plan{
		LogserverDir: filepath.Join(dir, "logserver"), SignerDir: filepath.Join(dir, "signer"),
		WitnessDir: filepath.Join(dir, "witness"), TrustDir: filepath.Join(dir, "trust"),
		AdminDSN: db.AdminDSN(""), DBAddr: db.Addr(), AccountHost: "127.0.0.1",
		Hostname: "stella.test", Origin: "stella.test/log", WitnessName: "stella.test/witness",
		LogserverListen: "127.0.0.1:3000", SignerListen: "127.0.0.1:8090", WitnessListen: "127.0.0.1:7380",
		SignerURL: "http://127.0.0.1:8090", WitnessURL: "http://127.0.0.1:7380",
		LogURL: "http://stella.test:3000", V2URL: "http://rekor-v2.stella.test:3000",
	}
}

// TestIdempotent: the first run makes everything, the configurations load
// with the services' own loaders, and a second run changes nothing (same
// files, same keys).
func TestIdempotent(t *testing.T) {
	if err := stack.EnsurePackages(context.Background(), map[string]string{"softhsm2-util": "softhsm2"}); err != nil {
		t.Fatal(err)
	}
	db := stack.TestMariaDB(t, false)
	dir := t.TempDir()
	ctx := context.Background()
	r1, err := Run(ctx, plan(t, db, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"token stella", "key log-rekor", "key witness-ed25519", "key rekor-v2-ed25519", "key tuf-root", "key tuf-online", "database rekor",
		"database account 'logserver'@'127.0.0.1'", "database account 'signer_audit'@'127.0.0.1'", "migrations rekor", "migrations signer"} {
		if !strings.Contains(strings.Join(r1.Changed, "\n"), want) {
			t.Errorf("first run did not report %q:\n%s", want, strings.Join(r1.Changed, "\n"))
		}
	}
	lc, err := lsconfig.Load(r1.LogserverConfig)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Key.Signer == nil || lc.Key.Signer.Key != LogKeyName || lc.Witnessing.Origin != "stella.test/log" || lc.Database.DSN == "" {
		t.Fatalf("logserver config: %+v", lc)
	}
	raw, _ := os.ReadFile(r1.LogserverConfig)
	if strings.Contains(string(raw), "null") || strings.Contains(string(raw), "tree_id") {
		t.Errorf("zero fields were written:\n%s", raw)
	}
	wc, err := wconfig.Load(r1.WitnessConfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(wc.Logs) != 2 || wc.Logs[0].VKeys[0] != r1.LogNoteVKey ||
		wc.Logs[1].Origin != "rekor-v2.stella.test" || wc.Logs[1].VKeys[0] != r1.V2NoteVKey {
		t.Fatalf("witness does not trust both logs: %+v", wc.Logs)
	}
	checkV2(t, r1, lc, dir)
	sc, err := server.LoadConfig(r1.SignerConfig)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Audit.MigrateDSN != "" {
		t.Fatal("the signer holds a migration DSN")
	}
	policy, _ := os.ReadFile(filepath.Join(dir, "trust", "witness-policy"))
	if !strings.Contains(string(policy), r1.WitnessVKey) || !strings.Contains(string(policy), "log "+r1.LogNoteVKey) {
		t.Fatalf("policy:\n%s", policy)
	}
	pub1, _ := os.ReadFile(r1.LogPublicKeyFile)

	r2, err := Run(ctx, plan(t, db, dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Changed) != 0 {
		t.Fatalf("second run changed:\n%s", strings.Join(r2.Changed, "\n"))
	}
	pub2, _ := os.ReadFile(r2.LogPublicKeyFile)
	if string(pub1) != string(pub2) || r1.WitnessVKey != r2.WitnessVKey || r1.LogNoteVKey != r2.LogNoteVKey || r1.V2NoteVKey != r2.V2NoteVKey {
		t.Fatal("keys changed on the second run")
	}

	// An account given more than it should have is put back.
	admin, err := sql.Open("mysql", db.AdminDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("GRANT ALL ON `signer`.* TO 'signer_audit'@'127.0.0.1'"); err != nil {
		t.Fatal(err)
	}
	r3, err := Run(ctx, plan(t, db, dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(r3.Changed) != 1 || !strings.Contains(r3.Changed[0], "privileges reset") {
		t.Fatalf("third run: %q", r3.Changed)
	}
	checkPrivileges(t, db, sc, lc)
}

// checkPrivileges logs in as each service account and tries what it must
// and must not be able to do.
func checkPrivileges(t *testing.T, db *stack.MariaDB, sc *server.Config, lc *lsconfig.Config) {
	t.Helper()
	open := func(dsn string) *sql.DB {
		d, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	deny := func(d *sql.DB, q string) {
		t.Helper()
		_, err := d.Exec(q)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || (me.Number != 1142 && me.Number != 1044 && me.Number != 1143 && me.Number != 1227) {
			t.Errorf("%s: %v, want access denied", q, err)
		}
	}
	allow := func(d *sql.DB, q string) {
		t.Helper()
		if _, err := d.Exec(q); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
	auditDSN, err := service.ReadSecret(sc.Audit.DSNFile)
	if err != nil || sc.Audit.DSN != "" {
		t.Fatalf("the signer's audit DSN is not in its secret file: %v", err)
	}
	if fi, err := os.Stat(sc.Audit.DSNFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit DSN file: %v %v", fi, err)
	}
	audit := open(auditDSN)
	allow(audit, "INSERT INTO signer_audit (recorded_at, request_id, endpoint, decision, http_status) VALUES (NOW(6), 't', 'test', 'refused', 401)")
	allow(audit, "SELECT COUNT(*) FROM signer_audit")
	deny(audit, "UPDATE signer_audit SET reason = 'x'")
	deny(audit, "DELETE FROM signer_audit")
	deny(audit, "DROP TABLE signer_audit")
	deny(audit, "CREATE TABLE evil (id INT)")
	deny(audit, "SELECT * FROM rekor.log_trees")

	logs := open(lc.Database.DSN)
	allow(logs, "SELECT COUNT(*) FROM Trees")
	allow(logs, "CREATE TABLE IF NOT EXISTS schema_migrations (component VARCHAR(64))")
	deny(logs, "DROP TABLE Trees")
	deny(logs, "SELECT * FROM signer.signer_audit")
	deny(logs, "CREATE USER 'x'@'%'")

	// No account logs in over TCP without a password.
	for _, user := range []string{"root", "", "mysql", "mariadb.sys"} {
		c := mysql.NewConfig()
		c.User, c.Net, c.Addr = user, "tcp", db.Addr()
		d := open(c.FormatDSN())
		if err := d.Ping(); err == nil {
			t.Errorf("%q logs in over TCP without a password", user)
		}
	}
}

// checkV2: the Rekor v2 log is configured end to end: its note key is in the
// token (a note signed there verifies with the published vkey), the signer
// serves it to the logserver's tenant for checkpoints under the v2 origin,
// the logserver runs the v2 log witnessed by the same witness and writes the
// trust files into the trust directory.
func checkV2(t *testing.T, r *Result, lc *lsconfig.Config, dir string) {
	t.Helper()
	if lc.RekorV2 == nil || lc.RekorV2.URL != "http://rekor-v2.stella.test:3000" || lc.RekorV2.Signer == nil ||
		lc.RekorV2.Signer.Key != V2KeyName || lc.RekorV2.Origin() != r.V2Origin || r.V2Origin != "rekor-v2.stella.test" {
		t.Fatalf("rekor_v2: %+v (origin %q)", lc.RekorV2, r.V2Origin)
	}
	if lc.Trust == nil || lc.Trust.URL != "http://stella.test:3000" || lc.Trust.Dir != filepath.Join(dir, "trust") ||
		lc.Trust.TUF == nil || lc.Trust.TUF.RootKey.Signer == nil || lc.Trust.TUF.RootKey.Signer.Key != TUFRootKey ||
		lc.Trust.TUF.OnlineKey.Signer == nil || lc.Trust.TUF.OnlineKey.Signer.Key != TUFOnlineKey {
		t.Fatalf("trust: %+v", lc.Trust)
	}
	policy, err := os.ReadFile(lc.RekorV2.PolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "log " + r.V2NoteVKey + "\nwitness w1 " + r.WitnessVKey + " http://127.0.0.1:7380\nquorum w1\n"; string(policy) != want {
		t.Fatalf("v2 policy:\n%s\nwant\n%s", policy, want)
	}
	if tp, _ := os.ReadFile(filepath.Join(dir, "trust", "witness-policy-v2")); string(tp) != string(policy) {
		t.Fatalf("trust/witness-policy-v2:\n%s", tp)
	}
	if vk, _ := os.ReadFile(filepath.Join(dir, "trust", "rekor-v2.vkey")); string(vk) != r.V2NoteVKey+"\n" {
		t.Fatalf("trust/rekor-v2.vkey %q, want %q", vk, r.V2NoteVKey)
	}

	sc, err := server.LoadConfig(r.SignerConfig)
	if err != nil {
		t.Fatal(err)
	}
	var key *server.KeyConfig
	for i := range sc.Keys {
		if sc.Keys[i].Name == V2KeyName {
			key = &sc.Keys[i]
		}
	}
	if key == nil || key.NoteName != r.V2Origin || strings.Join(key.Purposes, ",") != server.PurposeCheckpoint ||
		len(key.Versions) != 1 || key.Versions[0].Label != V2KeyLabel {
		t.Fatalf("signer key %s: %+v", V2KeyName, key)
	}
	var ls *server.TenantConfig
	for i := range sc.Tenants {
		if sc.Tenants[i].Name == "logserver" {
			ls = &sc.Tenants[i]
		}
	}
	if ls == nil || !slices.Contains(ls.Keys, V2KeyName) || !slices.Contains(ls.Tokens[0].Scopes, server.ScopeCheckpoint) {
		t.Fatalf("logserver tenant: %+v", ls)
	}

	// The key in the token is the one the vkey names.
	pin, err := os.ReadFile(filepath.Join(dir, "signer", "secrets", "hsm-pin"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pkcs11.Open(context.Background(), pkcs11.Config{Module: pkcs11.DefaultModule, TokenLabel: TokenLabel,
		PIN: strings.TrimSpace(string(pin)), Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.Signer(context.Background(), V2KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := signernote.NewSigner(r.V2Origin, k)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sumnote.Sign(&sumnote.Note{Text: "rekor-v2.stella.test\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, ns)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sumnote.NewVerifier(r.V2NoteVKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sumnote.Open(msg, sumnote.VerifierList(v)); err != nil {
		t.Fatalf("a note signed by the token's %s does not verify with %s: %v", V2KeyLabel, r.V2NoteVKey, err)
	}
}
