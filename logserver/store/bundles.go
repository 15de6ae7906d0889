package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stellaops/tlog/logserver/tree"
)

// MaxBundleEntry is the largest entry a C2SP tlog-tiles entry bundle can
// hold: entries are prefixed by a big-endian uint16 length.
const MaxBundleEntry = 1<<16 - 1

// ErrEntryTooLarge is returned (wrapped) for an entry bundle that holds an
// entry larger than MaxBundleEntry: the tiles of such a log stay valid, but
// that bundle cannot be served.
var ErrEntryTooLarge = errors.New("store: entry larger than a tlog-tiles entry bundle can hold")

// appendBundleEntry appends one entry in entry-bundle encoding.
func appendBundleEntry(dst, body []byte) ([]byte, error) {
	if len(body) > MaxBundleEntry {
		return dst, fmt.Errorf("%w (%d bytes)", ErrEntryTooLarge, len(body))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(body)))
	return append(dst, body...), nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// bodies returns the canonical bodies of entries [from, to) of tree, which
// must all be stored.
func bodies(ctx context.Context, q querier, treeID, from, to int64) ([][]byte, error) {
	rows, err := q.QueryContext(ctx,
		"SELECT leaf_index, body FROM log_entries WHERE tree_id = ? AND leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
		treeID, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, err
		}
		if idx != from+int64(len(out)) {
			return nil, fmt.Errorf("store: entries of tree %d are not contiguous at %d", treeID, idx)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if int64(len(out)) != to-from {
		return nil, fmt.Errorf("store: tree %d has %d of entries [%d, %d): %w", treeID, len(out), from, to, ErrNotFound)
	}
	return out, nil
}

func encodeBundle(bs [][]byte) ([]byte, error) {
	n := 0
	for _, b := range bs {
		n += 2 + len(b)
	}
	out := make([]byte, 0, n)
	var err error
	for _, b := range bs {
		if out, err = appendBundleEntry(out, b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeBundles stores, within the publish transaction tx, every full entry
// bundle that the pass's entries complete. Entries of the bundle published
// by earlier passes are read back from log_entries. A bundle with an entry
// too large for the encoding is skipped, never failing the pass: its
// entries are stored and provable, only that bundle cannot be served.
func writeBundles(ctx context.Context, tx *sql.Tx, treeID int64, entries []Entry) error {
	for i, e := range entries {
		if e.Index%tree.Width != tree.Width-1 {
			continue
		}
		first := e.Index - (tree.Width - 1)
		// The entries of this pass before e, in order, then earlier passes.
		fromPass := min(int64(i+1), tree.Width)
		bs := make([][]byte, 0, tree.Width)
		if fromPass < tree.Width {
			old, err := bodies(ctx, tx, treeID, first, first+tree.Width-fromPass)
			if err != nil {
				return fmt.Errorf("store bundle %d: %w", e.Index/tree.Width, err)
			}
			bs = append(bs, old...)
		}
		for _, pe := range entries[i+1-int(fromPass) : i+1] {
			bs = append(bs, pe.Body)
		}
		data, err := encodeBundle(bs)
		if errors.Is(err, ErrEntryTooLarge) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT IGNORE INTO entry_bundles (tree_id, bundle_index, data) VALUES (?,?,?)",
			treeID, e.Index/tree.Width, data); err != nil {
			return fmt.Errorf("store bundle %d: %w", e.Index/tree.Width, err)
		}
	}
	return nil
}

// Bundle returns the first width entries (1 to 256) of entry bundle index
// of tree, in tlog-tiles entry-bundle encoding. A full bundle (width 256)
// is read as stored; one missing (published before bundles were stored) is
// computed from the entries and stored. A partial bundle is read from the
// entries. ErrNotFound if the entries are not all published.
func (s *Store) Bundle(ctx context.Context, treeID, index int64, width int) ([]byte, error) {
	if width < 1 || width > tree.Width || index < 0 {
		return nil, fmt.Errorf("bundle %d.p/%d: %w", index, width, ErrNotFound)
	}
	if width == tree.Width {
		var data []byte
		err := s.db.QueryRowContext(ctx,
			"SELECT data FROM entry_bundles WHERE tree_id = ? AND bundle_index = ?", treeID, index).Scan(&data)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	first := index * tree.Width
	bs, err := bodies(ctx, s.db, treeID, first, first+int64(width))
	if err != nil {
		return nil, err
	}
	data, err := encodeBundle(bs)
	if err != nil {
		return nil, fmt.Errorf("bundle %d: %w", index, err)
	}
	if width == tree.Width {
		if _, err := s.db.ExecContext(ctx,
			"INSERT IGNORE INTO entry_bundles (tree_id, bundle_index, data) VALUES (?,?,?)", treeID, index, data); err != nil {
			return nil, fmt.Errorf("store bundle %d: %w", index, err)
		}
	}
	return data, nil
}
