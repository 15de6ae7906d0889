package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/logserver/witnessing/sqlstore"
	sqlschema "github.com/stellaops/tlog/sql"
	"github.com/stellaops/tlog/testing/stack"
)

func TestStoreOnMariaDB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB")
	}
	m := stack.TestMariaDB(t, false)
	db, err := sql.Open("mysql", stack.TestDatabase(t, m, "witnessing"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for range 2 { // the migrations are idempotent
		if err := migrate.Apply(ctx, db, sqlschema.FS, "logserver", "logserver"); err != nil {
			t.Fatal(err)
		}
	}
	s, other := sqlstore.New(db, 7), sqlstore.New(db, 8)
	if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, witnessing.ErrNoCheckpoint) {
		t.Fatalf("empty: %v", err)
	}
	before := time.Now().Add(-time.Minute)
	versions := []struct {
		size int64
		note string
	}{{10, "a"}, {20, "b"}, {20, "b\n\u2014 w1.example/witness AAAA\n"}, {15, "late older size"}}
	for i, v := range versions {
		if err := s.SaveCheckpoint(ctx, v.size, [32]byte{byte(i)}, []byte(v.note)); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.SaveCheckpoint(ctx, 99, [32]byte{}, []byte("other tree")); err != nil {
		t.Fatal(err)
	}
	got, err := s.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 20 || got.Root != ([32]byte{2}) || !bytes.Equal(got.Note, []byte("b\n\u2014 w1.example/witness AAAA\n")) || got.Created.Before(before) {
		t.Fatalf("latest = %+v", got)
	}
	var n int
	db.QueryRow("SELECT COUNT(*) FROM log_c2sp_checkpoints WHERE tree_id = 7").Scan(&n)
	if n != 4 {
		t.Fatalf("%d versions kept, want 4", n)
	}

	// Witness sizes: per tree, overwritten, read back by vkey.
	if sizes, err := s.WitnessSizes(ctx); err != nil || len(sizes) != 0 {
		t.Fatalf("no witness sizes yet: %v %v", sizes, err)
	}
	for _, w := range []struct {
		vkey string
		size int64
	}{{"w1+01020304+BAAA", 10}, {"w2+01020305+BAAB", 5}, {"w1+01020304+BAAA", 20}} {
		if err := s.SaveWitnessSize(ctx, w.vkey, w.size); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.SaveWitnessSize(ctx, "w1+01020304+BAAA", 99); err != nil {
		t.Fatal(err)
	}
	sizes, err := s.WitnessSizes(ctx)
	if err != nil || len(sizes) != 2 || sizes["w1+01020304+BAAA"] != 20 || sizes["w2+01020305+BAAB"] != 5 {
		t.Fatalf("witness sizes %v %v", sizes, err)
	}
}
