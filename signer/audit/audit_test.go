package audit

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stellaops/tlog/testing/stack"
)

// TestGroupCommit blocks the first INSERT with a table lock, queues more
// records meanwhile, and checks that they are committed together in one
// INSERT, each Write returning only after its row is there.
func TestGroupCommit(t *testing.T) {
	m := stack.TestMariaDB(t, false)
	db, err := OpenDB(stack.TestDatabase(t, m, "audittest"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, db); err != nil { // re-runnable
		t.Fatal(err)
	}
	var mu sync.Mutex
	var batches []int
	l := New(db, Options{Committers: 1, OnCommit: func(n int, _ time.Duration, err error) {
		if err != nil {
			t.Errorf("commit: %v", err)
		}
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
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	write := func(i int) {
		wg.Go(func() {
			errs[i] = l.Write(ctx, Record{RequestID: strings.Repeat("r", 70), Tenant: "t", Endpoint: "dsse",
				Decision: Signed, Status: 200, Detail: strings.Repeat("é", 2000), PAESHA256: make([]byte, 32)})
		})
	}
	write(0)
	for { // until the first record's INSERT waits for the lock
		var waiting int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO signer_audit%'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i < n; i++ {
		write(i)
	}
	for l.waiting.Load() < n-1 { // all queued behind the blocked INSERT
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var count int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM signer_audit").Scan(&count); err != nil || count != n {
		t.Fatalf("rows %d %v", count, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || batches[0] != 1 || batches[1] != n-1 {
		t.Errorf("batches %v, want [1 %d]", batches, n-1)
	}
	l.Close()
	if err := l.Write(ctx, Record{}); err != ErrClosed {
		t.Errorf("write after close: %v", err)
	}
}
