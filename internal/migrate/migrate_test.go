package migrate_test

import (
	"context"
	"database/sql"
	"io/fs"
	"testing"
	"testing/fstest"

	_ "github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/internal/migrate"
	sqlschema "github.com/stellaops/tlog/sql"
	"github.com/stellaops/tlog/testing/stack"
)

func TestStatements(t *testing.T) {
	got := migrate.Statements("-- c\n# c2\nCREATE TABLE a (x INT);\n\nCREATE INDEX i\n  ON a(x);\nSELECT 1")
	want := []string{"CREATE TABLE a (x INT)", "CREATE INDEX i\n  ON a(x)", "SELECT 1"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("statement %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// TestApplyRealMariaDB applies Trillian's schema (from the pinned module) and
// ours twice against a real MariaDB: the second run must change nothing.
func TestApplyRealMariaDB(t *testing.T) {
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "logdb")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	schema, err := migrate.TrillianSchemaFile("")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := migrate.ApplyTrillian(ctx, db, schema); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if err := migrate.Apply(ctx, db, sqlschema.FS, "logserver", "logserver"); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	for _, table := range []string{"Trees", "LeafData", "SequencedLeafData", "Unsequenced", "log_entries", "log_index", "merkle_tiles"} {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: count %d, err %v", table, n, err)
		}
	}
	var applied int
	if err := db.QueryRow("SELECT COUNT(*) FROM schema_migrations WHERE component = 'logserver'").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, _ := fs.Glob(sqlschema.FS, "logserver/*.sql")
	if applied != len(files) || applied == 0 {
		t.Errorf("schema_migrations has %d logserver rows, want one per file (%d)", applied, len(files))
	}

	// A broken migration fails with the file's name and is not recorded.
	bad := fstest.MapFS{"x/001_ok.sql": {Data: []byte("CREATE TABLE IF NOT EXISTS t1 (a INT);")},
		"x/002_bad.sql": {Data: []byte("CREATE TABLE nope (;")}}
	if err := migrate.Apply(ctx, db, bad, "x", "x"); err == nil {
		t.Fatal("broken migration applied without error")
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM schema_migrations WHERE component = 'x'").Scan(&applied); err != nil || applied != 1 {
		t.Errorf("component x: %d recorded (err %v), want only 001", applied, err)
	}
}
