package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stellaops/tlog/logserver/tree"
)

// ErrHeadConflict is returned when a published-head record would go back
// (a smaller size), fork (another root at the recorded size) or move to
// another tree.
var ErrHeadConflict = errors.New("store: published head conflict")

// HeadBehindError is the ErrHeadConflict of a head smaller than the record
// of its origin on the same tree: another replica of the tree (remote
// Trillian) published further, or the tree lost entries. The caller tells
// them apart.
type HeadBehindError struct {
	Origin         string
	Recorded, Size int64
}

func (e *HeadBehindError) Error() string {
	return fmt.Sprintf("%v: origin %q was published up to size %d, not back to %d", ErrHeadConflict, e.Origin, e.Recorded, e.Size)
}

func (e *HeadBehindError) Unwrap() error { return ErrHeadConflict }

// PublishedHead is the highest head published for one checkpoint origin
// and signing key.
type PublishedHead struct {
	Origin string
	KeyID  [32]byte // SHA-256 of the key's public form
	TreeID int64
	Size   int64
	Root   tree.Hash
}

// PublishedHead returns the record of origin and key, or ErrNotFound.
func (s *Store) PublishedHead(ctx context.Context, origin string, keyID [32]byte) (PublishedHead, error) {
	h := PublishedHead{Origin: origin, KeyID: keyID}
	var root []byte
	err := s.db.QueryRowContext(ctx,
		"SELECT tree_id, tree_size, root_hash FROM log_published_heads WHERE origin = ? AND key_id = ?",
		[]byte(origin), keyID[:]).Scan(&h.TreeID, &h.Size, &root)
	if errors.Is(err, sql.ErrNoRows) {
		return h, ErrNotFound
	}
	copy(h.Root[:], root)
	return h, err
}

// recordHeads advances each record compare-and-swap, in tx: one UPDATE
// that only moves a record forward on its tree; when it changes nothing,
// the record is read to tell a new record, an unchanged one and a conflict
// apart.
func recordHeads(ctx context.Context, tx *sql.Tx, heads []PublishedHead) error {
	for _, h := range heads {
		res, err := tx.ExecContext(ctx,
			"UPDATE log_published_heads SET tree_size = ?, root_hash = ? WHERE origin = ? AND key_id = ? AND tree_id = ? AND tree_size < ?",
			h.Size, h.Root[:], []byte(h.Origin), h.KeyID[:], h.TreeID, h.Size)
		if err != nil {
			return fmt.Errorf("record published head: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			continue
		}
		var treeID, size int64
		var root []byte
		err = tx.QueryRowContext(ctx,
			"SELECT tree_id, tree_size, root_hash FROM log_published_heads WHERE origin = ? AND key_id = ? FOR UPDATE",
			[]byte(h.Origin), h.KeyID[:]).Scan(&treeID, &size, &root)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO log_published_heads (origin, key_id, tree_id, tree_size, root_hash) VALUES (?,?,?,?,?)",
				[]byte(h.Origin), h.KeyID[:], h.TreeID, h.Size, h.Root[:]); err != nil {
				return fmt.Errorf("record published head: %w", err)
			}
			continue
		case err != nil:
			return fmt.Errorf("read published head: %w", err)
		}
		switch {
		case treeID != h.TreeID:
			return fmt.Errorf("%w: origin %q was published from tree %d, not %d", ErrHeadConflict, h.Origin, treeID, h.TreeID)
		case h.Size < size:
			return &HeadBehindError{Origin: h.Origin, Recorded: size, Size: h.Size}
		case h.Size == size && string(root) != string(h.Root[:]):
			return fmt.Errorf("%w: origin %q was published at size %d with root %x, not %x", ErrHeadConflict, h.Origin, size, root, h.Root[:])
		case h.Size == size:
			continue
		}
		return fmt.Errorf("record published head of %q: the record moved during the update", h.Origin)
	}
	return nil
}
