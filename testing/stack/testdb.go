package stack

import (
	"context"
	"testing"
	"time"
)

// TestMariaDB starts a private MariaDB for one test, in a temp dir, stopped
// when the test ends. Durability is relaxed for speed unless durable is set.
func TestMariaDB(t testing.TB, durable bool) *MariaDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := StartMariaDB(ctx, t.TempDir(), MariaDBOptions{Durable: durable})
	if err != nil {
		t.Fatalf("start MariaDB: %v", err)
	}
	t.Cleanup(func() { m.Stop() })
	return m
}

// TestDatabase creates database name on m and returns its DSN.
func TestDatabase(t testing.TB, m *MariaDB, name string) string {
	t.Helper()
	dsn, err := m.CreateDatabase(context.Background(), name, "pw-"+name)
	if err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return dsn
}
