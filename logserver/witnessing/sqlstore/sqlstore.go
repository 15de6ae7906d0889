// Package sqlstore keeps the logserver's published C2SP checkpoints in
// MySQL/MariaDB: it implements witnessing.Store on log_c2sp_checkpoints
// (sql/logserver/002_c2sp_checkpoints.sql) and the last size of each
// witness on log_witness_sizes (sql/logserver/003_witness_sizes.sql).
//
// Contract: every SaveCheckpoint inserts one row, never updated or deleted,
// so the table is the history of /checkpoint. One tree size may have several
// rows (the same checkpoint republished with more cosignatures); the latest
// is the row with the largest size, then the largest id.
package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/stellaops/tlog/logserver/witnessing"
)

// Store is the witnessing.Store of one tree.
type Store struct {
	db     *sql.DB
	treeID int64
}

var _ witnessing.Store = (*Store)(nil)

// New returns the store of tree treeID over db (schema migrated).
func New(db *sql.DB, treeID int64) *Store { return &Store{db: db, treeID: treeID} }

// SaveCheckpoint inserts one published version.
func (s *Store) SaveCheckpoint(ctx context.Context, size int64, root [32]byte, note []byte) error {
	if _, err := s.db.ExecContext(ctx,
		"INSERT INTO log_c2sp_checkpoints (tree_id, tree_size, root_hash, note) VALUES (?,?,?,?)",
		s.treeID, size, root[:], note); err != nil {
		return fmt.Errorf("store C2SP checkpoint: %w", err)
	}
	return nil
}

// LatestCheckpoint returns the last version of the largest size, or
// witnessing.ErrNoCheckpoint.
func (s *Store) LatestCheckpoint(ctx context.Context) (witnessing.StoredCheckpoint, error) {
	var cp witnessing.StoredCheckpoint
	var root []byte
	var created sql.NullString
	err := s.db.QueryRowContext(ctx,
		`SELECT tree_size, root_hash, note, UNIX_TIMESTAMP(created_at) FROM log_c2sp_checkpoints
		 WHERE tree_id = ? ORDER BY tree_size DESC, id DESC LIMIT 1`, s.treeID).Scan(&cp.Size, &root, &cp.Note, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return cp, witnessing.ErrNoCheckpoint
	}
	if err != nil {
		return cp, fmt.Errorf("load C2SP checkpoint: %w", err)
	}
	if len(root) != 32 {
		return cp, fmt.Errorf("load C2SP checkpoint: root hash of %d bytes", len(root))
	}
	copy(cp.Root[:], root)
	if created.Valid {
		if f, err := strconv.ParseFloat(created.String, 64); err == nil {
			sec, frac := math.Modf(f)
			cp.Created = time.Unix(int64(sec), int64(frac*1e9))
		}
	}
	return cp, nil
}

// WitnessSizes returns the stored size of every witness of the tree, by vkey.
func (s *Store) WitnessSizes(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT witness_vkey, tree_size FROM log_witness_sizes WHERE tree_id = ?", s.treeID)
	if err != nil {
		return nil, fmt.Errorf("load witness sizes: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int64)
	for rows.Next() {
		var vkey string
		var size int64
		if err := rows.Scan(&vkey, &size); err != nil {
			return nil, fmt.Errorf("load witness sizes: %w", err)
		}
		out[vkey] = size
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load witness sizes: %w", err)
	}
	return out, nil
}

// SaveWitnessSize records the witness's size (insert or overwrite).
func (s *Store) SaveWitnessSize(ctx context.Context, vkey string, size int64) error {
	key := sha256.Sum256([]byte(vkey))
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO log_witness_sizes (tree_id, witness_key, witness_vkey, tree_size) VALUES (?,?,?,?)
		 ON DUPLICATE KEY UPDATE tree_size = VALUES(tree_size), witness_vkey = VALUES(witness_vkey)`,
		s.treeID, key[:], vkey, size); err != nil {
		return fmt.Errorf("store witness size: %w", err)
	}
	return nil
}
