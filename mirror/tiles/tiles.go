// Package tiles verifies a copy of a tlog-tiles tree against a checkpoint
// and answers proofs from it.
//
// Verify checks, for the tiles a tree of size n has beyond a tree of size m:
// every tile has its exact size; every entry in an entry bundle hashes
// (RFC 6962 leaf hash) to its leaf hash in the level-0 tile; every hash of a
// level-L tile is the root of the level L-1 tile below it; and the tree
// built from the tiles has the checkpoint's root. Tiles below m are read
// from the trusted layer (verified earlier) and not re-hashed. A mismatch
// names the tile and, for an entry, its index.
package tiles

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/c2sp"
)

// Reader reads tiles. Trusted reports whether a tile comes from a copy
// verified earlier (a mismatch against it is a fork, not a bad download).
type Reader interface {
	Tile(ref c2sp.TileRef) (data []byte, trusted bool, err error)
}

// Error is a tile that does not verify.
type Error struct {
	Path   string // the tile at fault (or the one that disagrees with a trusted one)
	Reason string
	// Fork is set when the tile disagrees with a tile verified earlier.
	Fork bool
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason }

// ErrRoot is returned (wrapped) when the tiles build a tree with another
// root than the checkpoint's.
var ErrRoot = errors.New("tiles: tree root differs from the checkpoint")

// LeafHash is the RFC 6962 leaf hash of an entry.
func LeafHash(entry []byte) tree.Hash { return tree.Hash(rfc6962.DefaultHasher.HashLeaf(entry)) }

// SubtreeRoot is the RFC 6962 root of a full tile's 256 hashes.
func SubtreeRoot(data []byte) tree.Hash {
	level := make([]tree.Hash, len(data)/c2sp.HashSize)
	for i := range level {
		copy(level[i][:], data[i*c2sp.HashSize:])
	}
	for len(level) > 1 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = tlog.NodeHash(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0]
}

// Progress is told how many of the tiles to check are done.
type Progress func(done, total int)

// Verify checks the tiles of tree (n, root) beyond size m (see the package
// comment) and returns the tree, ready for proofs at any size ≤ n.
func Verify(ctx context.Context, r Reader, m, n int64, root tree.Hash, progress Progress) (*tree.Tree, error) {
	if m > n || m < 0 {
		return nil, fmt.Errorf("tiles: cannot verify from size %d to %d", m, n)
	}
	refs := c2sp.Tiles(m, n)
	// Hash tiles top-down, then the root, then the entries: a mismatch is
	// blamed on the lowest thing that disagrees with verified hashes above.
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].Level > refs[j].Level })
	done := 0
	tick := func() {
		done++
		if progress != nil {
			progress(done, len(refs))
		}
	}
	var bundles []c2sp.TileRef
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if ref.Level == c2sp.EntriesLevel {
			bundles = append(bundles, ref)
			continue
		}
		if err := checkTile(r, ref); err != nil {
			return nil, err
		}
		tick()
	}
	tr, err := Open(ctx, r, n)
	if err != nil {
		return nil, err
	}
	got, err := tr.Root(ctx, n)
	if err != nil {
		return nil, err
	}
	if got != root {
		return nil, fmt.Errorf("%w: tiles give %s, checkpoint %s", ErrRoot, got, root)
	}
	for _, ref := range bundles {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := checkTile(r, ref); err != nil {
			return nil, err
		}
		tick()
	}
	return tr, nil
}

// Open builds the tree of size n from its tiles, without checking them.
func Open(ctx context.Context, r Reader, n int64) (*tree.Tree, error) {
	tr := tree.New(treeReader{r}, 1024)
	var leaves []tree.Hash
	if w := int(n % c2sp.TileWidth); w > 0 {
		data, _, err := r.Tile(c2sp.TileRef{Level: 0, Index: n / c2sp.TileWidth, Width: w})
		if err != nil {
			return nil, err
		}
		if len(data) != w*c2sp.HashSize {
			return nil, &Error{Path: c2sp.TilePath(0, n/c2sp.TileWidth, w), Reason: "truncated"}
		}
		leaves = hashes(data)
	}
	if err := tr.Restore(ctx, n, leaves); err != nil {
		return nil, err
	}
	return tr, nil
}

func hashes(data []byte) []tree.Hash {
	hs := make([]tree.Hash, len(data)/c2sp.HashSize)
	for i := range hs {
		copy(hs[i][:], data[i*c2sp.HashSize:])
	}
	return hs
}

func read(r Reader, ref c2sp.TileRef) ([]byte, bool, error) {
	data, trusted, err := r.Tile(ref)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, &Error{Path: ref.Path(), Reason: "missing"}
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", ref.Path(), err)
	}
	if ref.Level >= 0 && len(data) != ref.Width*c2sp.HashSize {
		return nil, false, &Error{Path: ref.Path(), Reason: fmt.Sprintf("truncated or padded: %d bytes, want %d", len(data), ref.Width*c2sp.HashSize)}
	}
	return data, trusted, nil
}

func checkTile(r Reader, ref c2sp.TileRef) error {
	data, _, err := read(r, ref)
	if err != nil {
		return err
	}
	if ref.Level == c2sp.EntriesLevel {
		entries, err := c2sp.ParseEntryBundle(data, ref.Width)
		if err != nil {
			return &Error{Path: ref.Path(), Reason: err.Error()}
		}
		leafRef := c2sp.TileRef{Level: 0, Index: ref.Index, Width: ref.Width}
		lt, _, err := read(r, leafRef)
		if err != nil {
			return err
		}
		for i, e := range entries {
			h := LeafHash(e)
			if string(h[:]) != string(lt[i*c2sp.HashSize:(i+1)*c2sp.HashSize]) {
				return &Error{Path: ref.Path(), Reason: fmt.Sprintf("entry %d (log index %d) does not hash to its leaf hash in %s: entry modified",
					i, ref.Index*c2sp.TileWidth+int64(i), leafRef.Path())}
			}
		}
		return nil
	}
	if ref.Level == 0 {
		return nil // checked against its entry bundle and its parent
	}
	for i := 0; i < ref.Width; i++ {
		child := c2sp.TileRef{Level: ref.Level - 1, Index: ref.Index*c2sp.TileWidth + int64(i), Width: c2sp.TileWidth}
		cd, trusted, err := read(r, child)
		if err != nil {
			return err
		}
		if h := SubtreeRoot(cd); string(h[:]) != string(data[i*c2sp.HashSize:(i+1)*c2sp.HashSize]) {
			e := &Error{Path: ref.Path(), Reason: fmt.Sprintf("hash %d is not the root of %s", i, child.Path())}
			if trusted {
				e.Reason += ", which an earlier snapshot verified: the log rewrote its history"
				e.Fork = true
			} else {
				e.Reason += ": one of the two tiles is altered"
			}
			return e
		}
	}
	return nil
}

// treeReader adapts a Reader to logserver/tree's full-tile reader.
type treeReader struct{ r Reader }

func (t treeReader) ReadTile(_ context.Context, level int, index int64) ([]byte, error) {
	data, _, err := read(t.r, c2sp.TileRef{Level: level, Index: index, Width: c2sp.TileWidth})
	return data, err
}

// Layers reads a tile from the first layer that has it; tiles from the
// last layer are trusted when TrustLast is set.
type Layers struct {
	Layers []interface {
		Tile(c2sp.TileRef) ([]byte, error)
	}
	TrustLast bool
}

// Tile implements Reader.
func (l Layers) Tile(ref c2sp.TileRef) ([]byte, bool, error) {
	for i, layer := range l.Layers {
		data, err := layer.Tile(ref)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return data, err == nil && l.TrustLast && i == len(l.Layers)-1, err
	}
	return nil, false, fs.ErrNotExist
}
