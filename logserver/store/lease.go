package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// ErrLeaseHeld is returned when another logserver holds a tree's lease.
var ErrLeaseHeld = errors.New("store: the tree is sequenced by another logserver")

// Lease is a tree's sequencing lease: a named lock (GET_LOCK) held on a
// dedicated connection for as long as the logserver sequences the tree.
// The server releases it when that connection ends, so a crashed logserver
// never keeps it.
type Lease struct {
	db     *sql.DB
	treeID int64
	name   string

	mu   sync.Mutex
	conn *sql.Conn // nil once lost or released
}

// AcquireLease takes the lease of treeID, or fails with ErrLeaseHeld.
func (s *Store) AcquireLease(ctx context.Context, treeID int64) (*Lease, error) {
	var dbName sql.NullString
	if err := s.db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
		return nil, err
	}
	// Lock names are server-wide and at most 64 characters.
	sum := sha256.Sum256([]byte(dbName.String + "\x00" + strconv.FormatInt(treeID, 10)))
	l := &Lease{db: s.db, treeID: treeID, name: "stella-tree-" + hex.EncodeToString(sum[:20])}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.acquireLocked(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Lease) acquireLocked(ctx context.Context) error {
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return err
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", l.name).Scan(&got); err != nil {
		conn.Close()
		return fmt.Errorf("tree %d lease: %w", l.treeID, err)
	}
	if got.Int64 != 1 {
		holder := ""
		var id sql.NullInt64
		var host sql.NullString
		if conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", l.name).Scan(&id) == nil && id.Valid {
			_ = conn.QueryRowContext(ctx, "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = ?", id.Int64).Scan(&host)
			holder = fmt.Sprintf(" (database connection %d from %s)", id.Int64, host.String)
		}
		conn.Close()
		return fmt.Errorf("%w: tree %d is locked%s; run one logserver per tree in embedded mode", ErrLeaseHeld, l.treeID, holder)
	}
	l.conn = conn
	return nil
}

// Check confirms the lease is still held. If its connection was lost (the
// database restarted) it takes the lease again; ErrLeaseHeld means another
// logserver took it meanwhile.
func (l *Lease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		var mine sql.NullInt64
		err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine)
		if err == nil && mine.Int64 == 1 {
			return nil
		}
		// A connection going back to the pool must not keep the lock.
		_, _ = l.conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", l.name)
		l.conn.Close()
		l.conn = nil
	}
	return l.acquireLocked(ctx)
}

// Release gives the lease up.
func (l *Lease) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		_, _ = l.conn.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", l.name)
		l.conn.Close()
		l.conn = nil
	}
}
