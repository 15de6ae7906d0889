package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RoleTree returns the tree recorded for role (another log than the
// Rekor v1 one, e.g. "rekor-v2"), or 0 if none was recorded yet.
func (s *Store) RoleTree(ctx context.Context, role string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, "SELECT tree_id FROM log_tree_roles WHERE role = ?", role).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// SetRoleTree records id as role's tree. It fails if role already has a
// tree or id is recorded for another role or is the v1 log's tree.
func (s *Store) SetRoleTree(ctx context.Context, role string, id int64) error {
	if active, err := s.ActiveTree(ctx); err != nil {
		return err
	} else if active == id {
		return fmt.Errorf("store: tree %d is the Rekor v1 log's", id)
	}
	if _, err := s.db.ExecContext(ctx, "INSERT INTO log_tree_roles (role, tree_id) VALUES (?, ?)", role, id); err != nil {
		return fmt.Errorf("store: record tree %d for %s: %w", id, role, err)
	}
	return nil
}

// TreeCreated returns when tree was recorded (as the v1 log's or for a
// role): the start of its key's validity in trusted roots.
func (s *Store) TreeCreated(ctx context.Context, treeID int64) (time.Time, error) {
	var ts sql.NullString
	err := s.db.QueryRowContext(ctx,
		`SELECT UNIX_TIMESTAMP(created_at) FROM log_trees WHERE tree_id = ?
		 UNION ALL SELECT UNIX_TIMESTAMP(created_at) FROM log_tree_roles WHERE tree_id = ? LIMIT 1`, treeID, treeID).Scan(&ts)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("tree %d: %w", treeID, ErrNotFound)
	}
	if err != nil {
		return time.Time{}, err
	}
	sec, _, _ := strings.Cut(ts.String, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("tree %d: created_at %q: %w", treeID, ts.String, err)
	}
	return time.Unix(n, 0), nil
}
