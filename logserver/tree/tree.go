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
	key  tileKey
	data []byte
}

// New returns an empty tree that reads full tiles from r and caches up to
// cacheTiles of them (8 KiB each) in memory.
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
	t.put(tileKey{level, index}, data)
	full = append(full, tile)
	return t.push(level+1, subtreeHash(row), full)
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
			data, err := t.tile(ctx, level-1, i)
			if err != nil {
				return fmt.Errorf("tree: restore: %w", err)
			}
			row = append(row, subtreeHash(hashesOf(data)))
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
		return t.tile(ctx, level, index)
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
		row := level / Height
		sub := level % Height
		// The node covers row entries [n<<sub, (n+1)<<sub), all in one tile.
		first := n << sub
		count := int64(1) << sub
		hs, err := r.t.rowHashes(r.ctx, row, first, count)
		if err != nil {
			return nil, err
		}
		out[i] = subtreeHash(hs)
	}
	return out, nil
}

// rowHashes returns count hashes of tile level row starting at first; they
// must lie in one tile.
func (t *Tree) rowHashes(ctx context.Context, row int, first, count int64) ([]Hash, error) {
	tileIndex := first / Width
	off := first % Width
	t.mu.RLock()
	full := t.size >> (Height * (row + 1))
	if tileIndex == full {
		// The partial tile.
		var hs []Hash
		if row < len(t.rows) && off+count <= int64(len(t.rows[row])) {
			hs = append(hs, t.rows[row][off:off+count]...)
		}
		t.mu.RUnlock()
		if hs == nil {
			return nil, fmt.Errorf("tree: hash row %d [%d,+%d) not available: %w", row, first, count, ErrSize)
		}
		return hs, nil
	}
	t.mu.RUnlock()
	if tileIndex > full {
		return nil, fmt.Errorf("tree: tile %d/%d beyond size: %w", row, tileIndex, ErrSize)
	}
	data, err := t.tile(ctx, row, tileIndex)
	if err != nil {
		return nil, err
	}
	return hashesOf(data[off*tlog.HashSize : (off+count)*tlog.HashSize]), nil
}

// tile returns a full tile from the cache or the reader.
func (t *Tree) tile(ctx context.Context, level int, index int64) ([]byte, error) {
	k := tileKey{level, index}
	t.cacheMu.Lock()
	if e, ok := t.cache[k]; ok {
		t.lru.MoveToFront(e)
		d := e.Value.(*cached).data
		t.cacheMu.Unlock()
		return d, nil
	}
	t.cacheMu.Unlock()
	data, err := t.reader.ReadTile(ctx, level, index)
	if err != nil {
		return nil, fmt.Errorf("tree: read tile %d/%d: %w", level, index, err)
	}
	if len(data) != Width*tlog.HashSize {
		return nil, fmt.Errorf("tree: tile %d/%d has %d bytes", level, index, len(data))
	}
	t.put(k, data)
	return data, nil
}

func (t *Tree) put(k tileKey, data []byte) {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	if e, ok := t.cache[k]; ok {
		t.lru.MoveToFront(e)
		return
	}
	t.cache[k] = t.lru.PushFront(&cached{k, data})
	for t.lru.Len() > t.cacheCap {
		e := t.lru.Back()
		t.lru.Remove(e)
		delete(t.cache, e.Value.(*cached).key)
	}
}
