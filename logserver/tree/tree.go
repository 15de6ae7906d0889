// Package tree keeps the log's Merkle tree as C2SP tlog-tiles (height 8) and
// answers RFC 6962 inclusion and consistency proofs and tree hashes from
// them, without a database round trip per proof.
//
// Full tiles are immutable: once a tile of 256 hashes is complete it is
// handed to the caller to persist (Append returns it) and read back through a
// TileReader when it is no longer in the in-memory cache. The rightmost,
// partial tile of each level lives only in memory; it is rebuilt at start-up
// from leaf hashes and full tiles (Restore).
//
// A Tree is safe for concurrent use: one appender, many readers. Proofs and
// hashes are available for every size up to Size.
package tree

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// Height is the tile height: 2^8 = 256 hashes per full tile.
const Height = 8

// Width is the number of hashes in a full tile.
const Width = 1 << Height

// Hash is a SHA-256 Merkle tree hash.
type Hash = tlog.Hash

// Tile is a full tile: the 256 hashes of one tile level, concatenated.
type Tile struct {
	Level int   // tile level: its hashes are tree nodes at height 8*Level
	Index int64 // tile index within the level
	Data  []byte
}

// TileReader reads full tiles that the Tree handed out earlier.
type TileReader interface {
	// ReadTile returns the data of full tile (level, index). It must return
	// an error if the tile was never stored.
	ReadTile(ctx context.Context, level int, index int64) ([]byte, error)
}

// ErrSize is returned for proofs or hashes beyond the tree's size.
var ErrSize = errors.New("tree: size out of range")

// Tree is the Merkle tree of the log's leaf hashes.
type Tree struct {
	reader TileReader

	mu   sync.RWMutex
	size int64
	// rows[L] holds the hashes of tile level L after the last full tile of
	// that level: at most 255 of them.
	rows [][]Hash

	cacheMu  sync.Mutex
	cacheCap int
	cache    map[tileKey]*list.Element
	lru      *list.List
}

type tileKey struct {
	level int
	index int64
}

type cached struct {
	key    tileKey
	data   []byte
	levels [][]Hash // levels[r][i]: root of the 2^r hashes from i<<r; levels[8] is the tile's root
}

// New returns an empty tree that reads full tiles from r and caches up to
// cacheTiles of them in memory (16 KiB each with their interior hashes).
func New(r TileReader, cacheTiles int) *Tree {
	if cacheTiles < 16 {
		cacheTiles = 16
	}
	return &Tree{reader: r, cacheCap: cacheTiles, cache: map[tileKey]*list.Element{}, lru: list.New()}
}

// Size is the number of leaves in the tree.
func (t *Tree) Size() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.size
}

// Append adds leaf hashes to the tree and returns the tiles that became full,
// which the caller must persist so that TileReader can return them later.
// They are also kept in the cache, so proofs work before they are persisted.
func (t *Tree) Append(leafHashes []Hash) []Tile {
	t.mu.Lock()
	defer t.mu.Unlock()
	var full []Tile
	for _, h := range leafHashes {
		full = t.push(0, h, full)
		t.size++
	}
	return full
}

// push adds hash h to row level, completing tiles upwards. Called with mu held.
func (t *Tree) push(level int, h Hash, full []Tile) []Tile {
	for len(t.rows) <= level {
		t.rows = append(t.rows, nil)
	}
	t.rows[level] = append(t.rows[level], h)
	if len(t.rows[level]) < Width {
		return full
	}
	row := t.rows[level]
	data := make([]byte, 0, Width*tlog.HashSize)
	for _, x := range row {
		data = append(data, x[:]...)
	}
	index := t.fullTiles(level)
	tile := Tile{Level: level, Index: index, Data: data}
	t.rows[level] = nil
	c := t.put(tileKey{level, index}, data)
	full = append(full, tile)
	return t.push(level+1, c.levels[Height][0], full)
}

// fullTiles is the number of full tiles at level for the current size, not
// counting a tile completed by the leaf being pushed. Called with mu held.
func (t *Tree) fullTiles(level int) int64 {
	// Leaves covered by one tile at this level.
	span := int64(1) << (Height * (level + 1))
	return t.size / span
}

// subtreeHash is the RFC 6962 root of a complete power-of-two run of hashes.
func subtreeHash(hs []Hash) Hash {
	level := append([]Hash(nil), hs...)
	for len(level) > 1 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = tlog.NodeHash(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0]
}

// Restore rebuilds the in-memory state for a tree of size leaves. leafHashes
// are the hashes of the leaves after the last full level-0 tile, that is
// leaves [size - size%256, size). Full tiles are read through the TileReader.
func (t *Tree) Restore(ctx context.Context, size int64, leafHashes []Hash) error {
	if int64(len(leafHashes)) != size%Width {
		return fmt.Errorf("tree: restore of size %d needs %d leaf hashes, got %d", size, size%Width, len(leafHashes))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.size = size
	t.rows = [][]Hash{append([]Hash(nil), leafHashes...)}
	for level := 1; ; level++ {
		// Row `level` holds one hash per full tile of level-1 after the last
		// full tile of this level.
		below := size >> (Height * level) // full tiles at level-1
		if below == 0 {
			break
		}
		n := below % Width
		first := below - n
		row := make([]Hash, 0, n)
		for i := first; i < below; i++ {
			c, err := t.tile(ctx, level-1, i)
			if err != nil {
				return fmt.Errorf("tree: restore: %w", err)
			}
			row = append(row, c.levels[Height][0])
		}
		t.rows = append(t.rows, row)
	}
	return nil
}

func hashesOf(data []byte) []Hash {
	hs := make([]Hash, len(data)/tlog.HashSize)
	for i := range hs {
		copy(hs[i][:], data[i*tlog.HashSize:])
	}
	return hs
}

// Root returns the tree hash at size n (n <= Size).
func (t *Tree) Root(ctx context.Context, n int64) (Hash, error) {
	if n < 0 || n > t.Size() {
		return Hash{}, ErrSize
	}
	return tlog.TreeHash(n, t.hashes(ctx))
}

// InclusionProof returns the RFC 6962 audit path of leaf index in the tree of
// size n, ordered from the leaf up.
func (t *Tree) InclusionProof(ctx context.Context, index, n int64) ([]Hash, error) {
	if index < 0 || index >= n || n > t.Size() {
		return nil, ErrSize
	}
	p, err := tlog.ProveRecord(n, index, t.hashes(ctx))
	return p, err
}

// ConsistencyProof returns the RFC 6962 consistency proof from size m to n.
func (t *Tree) ConsistencyProof(ctx context.Context, m, n int64) ([]Hash, error) {
	if m < 0 || m > n || n > t.Size() {
		return nil, ErrSize
	}
	if m == 0 || m == n {
		return []Hash{}, nil
	}
	return tlog.ProveTree(n, m, t.hashes(ctx))
}

// TileData returns the current data of tile (level, index): a full tile, or
// the hashes of a partial rightmost tile, as C2SP tlog-tiles serves them.
func (t *Tree) TileData(ctx context.Context, level int, index int64) ([]byte, error) {
	t.mu.RLock()
	full := t.size >> (Height * (level + 1))
	var partial []byte
	if index == full && level < len(t.rows) {
		for _, h := range t.rows[level] {
			partial = append(partial, h[:]...)
		}
	}
	t.mu.RUnlock()
	if index < full {
		c, err := t.tile(ctx, level, index)
		if err != nil {
			return nil, err
		}
		return c.data, nil
	}
	if index == full && len(partial) > 0 {
		return partial, nil
	}
	return nil, ErrSize
}

type hashReader struct {
	t   *Tree
	ctx context.Context
}

func (t *Tree) hashes(ctx context.Context) tlog.HashReader { return hashReader{t, ctx} }

// ReadHashes returns stored hashes (x/mod/sumdb/tlog numbering): the roots of
// complete subtrees, computed from the tile row that contains them.
func (r hashReader) ReadHashes(indexes []int64) ([]Hash, error) {
	out := make([]Hash, len(indexes))
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		h, err := r.t.node(r.ctx, level/Height, level%Height, n<<(level%Height))
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// node returns the root of the complete subtree of 2^sub hashes of tile
// level row starting at entry first (all within one tile): a lookup for a
// full tile, whose interior hashes are cached with it, or a computation over
// the in-memory partial tile.
func (t *Tree) node(ctx context.Context, row, sub int, first int64) (Hash, error) {
	tileIndex := first / Width
	off := first % Width
	count := int64(1) << sub
	t.mu.RLock()
	full := t.size >> (Height * (row + 1))
	if tileIndex == full {
		var hs []Hash
		if row < len(t.rows) && off+count <= int64(len(t.rows[row])) {
			hs = append(hs, t.rows[row][off:off+count]...)
		}
		t.mu.RUnlock()
		if hs == nil {
			return Hash{}, fmt.Errorf("tree: hash row %d [%d,+%d) not available: %w", row, first, count, ErrSize)
		}
		return subtreeHash(hs), nil
	}
	t.mu.RUnlock()
	if tileIndex > full {
		return Hash{}, fmt.Errorf("tree: tile %d/%d beyond size: %w", row, tileIndex, ErrSize)
	}
	c, err := t.tile(ctx, row, tileIndex)
	if err != nil {
		return Hash{}, err
	}
	return c.levels[sub][off>>sub], nil
}

// tile returns a full tile from the cache or the reader.
func (t *Tree) tile(ctx context.Context, level int, index int64) (*cached, error) {
	k := tileKey{level, index}
	t.cacheMu.Lock()
	if e, ok := t.cache[k]; ok {
		t.lru.MoveToFront(e)
		c := e.Value.(*cached)
		t.cacheMu.Unlock()
		return c, nil
	}
	t.cacheMu.Unlock()
	data, err := t.reader.ReadTile(ctx, level, index)
	if err != nil {
		return nil, fmt.Errorf("tree: read tile %d/%d: %w", level, index, err)
	}
	if len(data) != Width*tlog.HashSize {
		return nil, fmt.Errorf("tree: tile %d/%d has %d bytes", level, index, len(data))
	}
	return t.put(k, data), nil
}

// put caches a full tile with its interior hashes and returns the entry.
func (t *Tree) put(k tileKey, data []byte) *cached {
	c := &cached{key: k, data: data, levels: [][]Hash{hashesOf(data)}}
	for l := c.levels[0]; len(l) > 1; {
		up := make([]Hash, len(l)/2)
		for i := range up {
			up[i] = tlog.NodeHash(l[2*i], l[2*i+1])
		}
		c.levels = append(c.levels, up)
		l = up
	}
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	if e, ok := t.cache[k]; ok {
		t.lru.MoveToFront(e)
		return e.Value.(*cached)
	}
	t.cache[k] = t.lru.PushFront(c)
	for t.lru.Len() > t.cacheCap {
		e := t.lru.Back()
		t.lru.Remove(e)
		delete(t.cache, e.Value.(*cached).key)
	}
	return c
}
