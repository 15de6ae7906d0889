package audit

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/testing/stack"
)

// TestBatchBytes queues two large records (one tenant's statements with
// thousands of subjects) and many small ones behind a blocked INSERT, on
// a server whose max_allowed_packet (1 MiB) holds one large record but not
// two. With the byte bound every record is committed; without it (the
// control) the one INSERT holding all of them fails, small ones included.
func TestBatchBytes(t *testing.T) {
	m := stack.TestMariaDB(t, false)
	rc := mysql.NewConfig()
	rc.User, rc.Net, rc.Addr = "root", "unix", filepath.Join(m.Dir, "mysqld.sock")
	root, err := sql.Open("mysql", rc.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Exec("SET GLOBAL max_allowed_packet = 1048576"); err != nil {
		t.Fatal(err)
	}
	db, err := OpenDB(stack.TestDatabase(t, m, "auditbytes"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	subjects := make([]string, 8400) // ≈ 620 kB of subject digests
	for i := range subjects {
		subjects[i] = fmt.Sprintf("sha256:%064x", i)
	}
	large := Record{RequestID: "large", Tenant: "big", Endpoint: "dsse", Decision: Signed, Status: 200, Subjects: subjects}
	if s := large.Size(); s < 600_000 || s > 700_000 {
		t.Fatalf("large record size %d", s)
	}

	run := func(t *testing.T, maxBytes int) (errs []error, batches []int) {
		if _, err := db.Exec("DELETE FROM signer_audit"); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		l := New(db, Options{Committers: 1, MaxBatchBytes: maxBytes, OnCommit: func(n int, _ time.Duration, _ error) {
			mu.Lock()
			batches = append(batches, n)
			mu.Unlock()
		}})
		defer l.Close()
		lock, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if _, err := lock.ExecContext(ctx, "LOCK TABLES signer_audit WRITE"); err != nil {
			t.Fatal(err)
		}
		const small = 40
		recs := []Record{{RequestID: "first", Tenant: "small", Endpoint: "dsse", Decision: Signed, Status: 200}, large, large}
		for i := range small {
			recs = append(recs, Record{RequestID: fmt.Sprintf("small-%d", i), Tenant: "small", Endpoint: "checkpoint", Decision: Signed, Status: 200})
		}
		errs = make([]error, len(recs))
		var wg sync.WaitGroup
		for i, r := range recs {
			wg.Go(func() { errs[i] = l.Write(ctx, r) })
			if i == 0 { // until the first INSERT waits for the lock
				for {
					var waiting int
					if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO signer_audit%'").Scan(&waiting); err != nil {
						t.Fatal(err)
					}
					if waiting > 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				continue
			}
			for l.waiting.Load() < int64(i) { // queued in this order
				time.Sleep(time.Millisecond)
			}
		}
		if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return errs, batches
	}

	t.Run("bounded", func(t *testing.T) {
		errs, batches := run(t, 700_000)
		for i, err := range errs {
			if err != nil {
				t.Errorf("record %d: %v", i, err)
			}
		}
		var rows, long int
		if err := db.QueryRow("SELECT COUNT(*), COALESCE(SUM(LENGTH(subject_digests) > 600000), 0) FROM signer_audit").Scan(&rows, &long); err != nil {
			t.Fatal(err)
		}
		if rows != len(errs) || long != 2 {
			t.Errorf("%d rows (want %d), %d with the large subject list (want 2)", rows, len(errs), long)
		}
		if fmt.Sprint(batches) != "[1 1 41]" {
			t.Errorf("batches %v, want [1 1 41]: each large record with what fits beside it", batches)
		}
	})
	t.Run("control: rows only", func(t *testing.T) {
		errs, batches := run(t, 64<<20)
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
			}
		}
		if failed != len(errs)-1 || fmt.Sprint(batches) != "[1 42]" {
			t.Errorf("without the byte bound: %d of %d writes failed, batches %v; want all but the first to fail in one INSERT (the test would not show the bound)",
				failed, len(errs), batches)
		}
	})
}
