package bootstrap

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	lsconfig "github.com/stellaops/tlog/logserver/config"
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
	for _, want := range []string{"token stella", "key log-rekor", "key witness-ed25519", "database rekor",
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
	if len(wc.Logs) != 1 || wc.Logs[0].VKeys[0] != r1.LogNoteVKey {
		t.Fatalf("witness does not trust the log: %+v", wc.Logs)
	}
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
	if string(pub1) != string(pub2) || r1.WitnessVKey != r2.WitnessVKey || r1.LogNoteVKey != r2.LogNoteVKey {
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
	audit := open(sc.Audit.DSN)
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
