package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// C2SPCheckpointAt returns the latest version (the one with the most
// cosignatures collected) of the C2SP checkpoint published for tree at
// size, from the append-only history in log_c2sp_checkpoints, or
// ErrNotFound if none was published at that size.
func (s *Store) C2SPCheckpointAt(ctx context.Context, treeID, size int64) ([]byte, error) {
	var n []byte
	err := s.db.QueryRowContext(ctx,
		"SELECT note FROM log_c2sp_checkpoints WHERE tree_id = ? AND tree_size = ? ORDER BY id DESC LIMIT 1",
		treeID, size).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("checkpoint of size %d: %w", size, ErrNotFound)
	}
	return n, err
}
