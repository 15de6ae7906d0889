// Package store is the logserver's own MySQL/MariaDB state, kept next to
// Trillian's tables: the active tree, one row per integrated entry (body,
// integration time, and the SET signed once), full Merkle tiles, the
// published checkpoints, the search index, the highest head published per
// origin and key (log_published_heads), and the tree's sequencing lease.
//
// Contract: Publish writes a pass's entries, tiles, search keys, checkpoint
// and head records in one transaction, so after a crash the store holds a
// prefix of the log with matching tiles; the sequencer re-publishes what
// follows from Trillian. Nothing is truncated: values that do not fit fail
// (strict SQL mode is set by the caller's DSN; no INSERT IGNORE), and
// CheckServer sizes statements to the server's max_allowed_packet.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/stellaops/tlog/logserver/tree"
)

// ErrNotFound is returned when no entry matches.
var ErrNotFound = errors.New("store: not found")

// Column limits. The write path refuses larger values before it
// acknowledges an entry (see logserver/sequence); Publish checks them again
// rather than let the database refuse a pass it can never store.
const (
	// MaxBodyBytes is the largest canonical entry log_entries.body holds
	// (MEDIUMBLOB).
	MaxBodyBytes = 1<<24 - 1
	// MaxIndexKeyBytes is the longest search key log_index.lookup_key holds.
	MaxIndexKeyBytes = 2048
	maxSETBytes      = 1024
)

// Store wraps the database handle.
type Store struct {
	db     *sql.DB
	packet atomic.Int64 // the server's max_allowed_packet, once checked
}

// New returns a Store over db, whose schema must be migrated.
func New(db *sql.DB) *Store { return &Store{db: db} }

// statementBytes is the budget of raw values in one statement.
func (s *Store) statementBytes() int {
	p := s.packet.Load()
	if p == 0 {
		p = 16 << 20 // MariaDB's and MySQL's default, until CheckServer has read it
	}
	return int((p - 64<<10) / 2)
}

// Entry is one integrated log entry.
type Entry struct {
	TreeID         int64
	Index          int64 // leaf index in the tree
	LeafHash       tree.Hash
	IntegratedTime int64 // Unix seconds
	SET            []byte
	Body           []byte // canonical entry: the Merkle leaf
}

// ActiveTree returns the active tree's ID, or 0 if none was created yet.
func (s *Store) ActiveTree(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, "SELECT tree_id FROM log_trees WHERE state = 'active'").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// SetActiveTree records id as the active tree. It fails if another tree is
// already active, so two processes racing at first start cannot both win.
func (s *Store) SetActiveTree(ctx context.Context, id int64) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var existing int64
	err = tx.QueryRowContext(ctx, "SELECT tree_id FROM log_trees WHERE state = 'active' FOR UPDATE").Scan(&existing)
	switch {
	case err == nil:
		return fmt.Errorf("store: tree %d is already active", existing)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO log_trees (tree_id, state) VALUES (?, 'active')", id); err != nil {
		return err
	}
	return tx.Commit()
}

// PublishedSize is the number of entries of tree published so far.
func (s *Store) PublishedSize(ctx context.Context, treeID int64) (int64, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT MAX(leaf_index) FROM log_entries WHERE tree_id = ?", treeID).Scan(&n)
	if err != nil || !n.Valid {
		return 0, err
	}
	return n.Int64 + 1, nil
}

// LeafHashes returns the leaf hashes of entries [from, to) in order.
func (s *Store) LeafHashes(ctx context.Context, treeID, from, to int64) ([]tree.Hash, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT leaf_index, leaf_hash FROM log_entries WHERE tree_id = ? AND leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
		treeID, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tree.Hash
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, err
		}
		if idx != from+int64(len(out)) || len(h) != len(tree.Hash{}) {
			return nil, fmt.Errorf("store: entries of tree %d are not contiguous at %d", treeID, idx)
		}
		var x tree.Hash
		copy(x[:], h)
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if int64(len(out)) != to-from {
		return nil, fmt.Errorf("store: tree %d has %d of entries [%d, %d)", treeID, len(out), from, to)
	}
	return out, nil
}

// Tiles reads the full tiles of one tree; it implements tree.TileReader.
type Tiles struct {
	s      *Store
	treeID int64
}

// Tiles returns the tile reader of treeID.
func (s *Store) Tiles(treeID int64) Tiles { return Tiles{s, treeID} }

// ReadTile returns a stored full tile.
func (t Tiles) ReadTile(ctx context.Context, level int, index int64) ([]byte, error) {
	var data []byte
	err := t.s.db.QueryRowContext(ctx,
		"SELECT hashes FROM merkle_tiles WHERE tree_id = ? AND tile_level = ? AND tile_index = ?",
		t.treeID, level, index).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("tile %d/%d of tree %d: %w", level, index, t.treeID, ErrNotFound)
	}
	return data, err
}

// Checkpoint is a signed tree head as published.
type Checkpoint struct {
	Format   string // "rekor": the Rekor v1 note
	TreeSize int64
	RootHash tree.Hash
	Note     []byte
}

// Pass is what one publishing pass stores, in one transaction.
type Pass struct {
	TreeID     int64
	Entries    []Entry
	Tiles      []tree.Tile
	Keys       []IndexKey
	Checkpoint Checkpoint
	// Heads are the published-head records to advance (compare-and-swap):
	// see RecordHeads.
	Heads []PublishedHead
}

// Publish stores, in one transaction, the entries integrated by one pass,
// the tiles and entry bundles they completed, their search keys, the checkpoint that covers
// them and the published-head records. Re-publishing the same entries
// (after a crash) is harmless: rows already present are kept. Nothing is
// ever truncated: a value that does not fit its column is an error (the
// write path refuses such values before it acknowledges them), and a
// published-head record that would go back or fork fails with
// ErrHeadConflict.
func (s *Store) Publish(ctx context.Context, p Pass) error {
	for _, e := range p.Entries {
		if len(e.Body) > MaxBodyBytes || len(e.SET) > maxSETBytes {
			return fmt.Errorf("store: entry %d: body of %d bytes or SET of %d bytes exceeds the columns (%d, %d)",
				e.Index, len(e.Body), len(e.SET), MaxBodyBytes, maxSETBytes)
		}
	}
	for _, k := range p.Keys {
		if len(k.Key) > MaxIndexKeyBytes {
			return fmt.Errorf("store: search key of %d bytes exceeds %d", len(k.Key), MaxIndexKeyBytes)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := recordHeads(ctx, tx, p.Heads); err != nil {
		return err
	}
	if err := writeBundles(ctx, tx, p.TreeID, p.Entries); err != nil {
		return err
	}
	// Statements are bounded by count and by bytes (the server's
	// max_allowed_packet): with client-side interpolation a binary value can
	// take twice its size in the statement.
	budget := s.statementBytes()
	entries := p.Entries
	for len(entries) > 0 {
		n, bytes := 0, 0
		for n < len(entries) && n < 256 && (n == 0 || bytes+len(entries[n].Body)+len(entries[n].SET) <= budget) {
			bytes += len(entries[n].Body) + len(entries[n].SET)
			n++
		}
		var q strings.Builder
		q.WriteString("INSERT INTO log_entries (tree_id, leaf_index, leaf_hash, integrated_time, entry_set, body) VALUES ")
		args := make([]any, 0, n*6)
		for i, e := range entries[:n] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?,?,?)")
			args = append(args, p.TreeID, e.Index, e.LeafHash[:], e.IntegratedTime, e.SET, e.Body)
		}
		// A row already stored (a pass re-published after a crash) is kept
		// as it is; unlike INSERT IGNORE, this never turns an error into a
		// warning.
		q.WriteString(" ON DUPLICATE KEY UPDATE tree_id = tree_id")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("store entries: %w", err)
		}
		entries = entries[n:]
	}
	for _, t := range p.Tiles {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO merkle_tiles (tree_id, tile_level, tile_index, hashes) VALUES (?,?,?,?) ON DUPLICATE KEY UPDATE tree_id = tree_id",
			p.TreeID, t.Level, t.Index, t.Data); err != nil {
			return fmt.Errorf("store tile: %w", err)
		}
	}
	if err := addIndexKeys(ctx, tx, p.TreeID, p.Keys); err != nil {
		return err
	}
	if cp := p.Checkpoint; cp.Note != nil {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO log_checkpoints (tree_id, format, tree_size, root_hash, note) VALUES (?,?,?,?,?) ON DUPLICATE KEY UPDATE tree_id = tree_id",
			p.TreeID, cp.Format, cp.TreeSize, cp.RootHash[:], cp.Note); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
	}
	return tx.Commit()
}

// LatestCheckpoint returns the last checkpoint of format published for tree.
func (s *Store) LatestCheckpoint(ctx context.Context, treeID int64, format string) (Checkpoint, error) {
	var cp Checkpoint
	var root []byte
	err := s.db.QueryRowContext(ctx,
		"SELECT tree_size, root_hash, note FROM log_checkpoints WHERE tree_id = ? AND format = ? ORDER BY tree_size DESC LIMIT 1",
		treeID, format).Scan(&cp.TreeSize, &root, &cp.Note)
	if errors.Is(err, sql.ErrNoRows) {
		return cp, ErrNotFound
	}
	cp.Format = format
	copy(cp.RootHash[:], root)
	return cp, err
}

const entryCols = "tree_id, leaf_index, leaf_hash, integrated_time, entry_set, body"

func scanEntry(row *sql.Row) (Entry, error) {
	var e Entry
	var h []byte
	err := row.Scan(&e.TreeID, &e.Index, &h, &e.IntegratedTime, &e.SET, &e.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	copy(e.LeafHash[:], h)
	return e, err
}

// EntryByIndex returns entry index of tree.
func (s *Store) EntryByIndex(ctx context.Context, treeID, index int64) (Entry, error) {
	return scanEntry(s.db.QueryRowContext(ctx,
		"SELECT "+entryCols+" FROM log_entries WHERE tree_id = ? AND leaf_index = ?", treeID, index))
}

// EntryByHash returns the entry of tree with the given leaf hash.
func (s *Store) EntryByHash(ctx context.Context, treeID int64, leafHash []byte) (Entry, error) {
	return scanEntry(s.db.QueryRowContext(ctx,
		"SELECT "+entryCols+" FROM log_entries WHERE tree_id = ? AND leaf_hash = ?", treeID, leafHash))
}

// IndexKey maps a search key to an entry.
type IndexKey struct {
	Key      string // lower-cased lookup key
	LeafHash tree.Hash
}

// AddIndexKeys records search keys for entries of tree; existing ones are kept.
func (s *Store) AddIndexKeys(ctx context.Context, treeID int64, keys []IndexKey) error {
	return addIndexKeys(ctx, s.db, treeID, keys)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func addIndexKeys(ctx context.Context, db execer, treeID int64, keys []IndexKey) error {
	for len(keys) > 0 {
		n := min(512, len(keys))
		var q strings.Builder
		q.WriteString("INSERT INTO log_index (lookup_key, tree_id, leaf_hash) VALUES ")
		args := make([]any, 0, 3*n)
		for i, k := range keys[:n] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?)")
			args = append(args, k.Key, treeID, k.LeafHash[:])
		}
		q.WriteString(" ON DUPLICATE KEY UPDATE tree_id = tree_id")
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("store index keys: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// LookupIndex returns, for each key, the entries (tree ID, leaf hash) that
// carry it.
func (s *Store) LookupIndex(ctx context.Context, key string) ([]IndexHit, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT tree_id, leaf_hash FROM log_index WHERE lookup_key = ?", key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []IndexHit
	for rows.Next() {
		var h IndexHit
		var lh []byte
		if err := rows.Scan(&h.TreeID, &lh); err != nil {
			return nil, err
		}
		copy(h.LeafHash[:], lh)
		out = append(out, h)
	}
	return out, rows.Err()
}

// IndexHit is one entry found by a search key.
type IndexHit struct {
	TreeID   int64
	LeafHash tree.Hash
}

// Entries returns up to n entries of tree from index from on, in order.
func (s *Store) Entries(ctx context.Context, treeID, from int64, n int) ([]Entry, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT "+entryCols+" FROM log_entries WHERE tree_id = ? AND leaf_index >= ? ORDER BY leaf_index LIMIT ?", treeID, from, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var h []byte
		if err := rows.Scan(&e.TreeID, &e.Index, &h, &e.IntegratedTime, &e.SET, &e.Body); err != nil {
			return nil, err
		}
		copy(e.LeafHash[:], h)
		out = append(out, e)
	}
	return out, rows.Err()
}
