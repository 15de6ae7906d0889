package sequence

import (
	"context"

	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// Store is what the write path needs of the log's own storage
// (*store.Store over MySQL; a fake in tests).
//
// Contract:
//   - Publish is atomic: after it returns nil, every entry, signature,
//     tile, search key, the checkpoint and the head records of the pass are
//     durable; after it returns an error (or a timeout) either all of them
//     are or none is. Publishing rows already stored (a pass re-published
//     after a crash or a lost answer) keeps the stored rows and succeeds.
//   - Publish advances each store.PublishedHead compare-and-swap and fails
//     with store.ErrHeadConflict, storing nothing, if one would go back
//     (then as a *store.HeadBehindError), fork or change tree.
//   - Publish never truncates: a value that does not fit fails the pass.
//   - PublishedSize, LeafHashes and LatestCheckpoint reflect exactly the
//     passes published: the entries are a prefix [0, size) of the tree.
type Store interface {
	// PublishedSize is the number of entries of tree published so far.
	PublishedSize(ctx context.Context, treeID int64) (int64, error)
	// LeafHashes returns the leaf hashes of entries [from, to) in order.
	LeafHashes(ctx context.Context, treeID, from, to int64) ([]tree.Hash, error)
	// LatestCheckpoint returns the last checkpoint of format, or
	// store.ErrNotFound.
	LatestCheckpoint(ctx context.Context, treeID int64, format string) (store.Checkpoint, error)
	// PublishedHead returns the record of origin and key, or
	// store.ErrNotFound.
	PublishedHead(ctx context.Context, origin string, keyID [32]byte) (store.PublishedHead, error)
	// Publish stores one pass.
	Publish(ctx context.Context, p store.Pass) error
	// Tiles reads the stored full tiles of tree.
	Tiles(treeID int64) tree.TileReader
}

// storeAdapter gives *store.Store's concrete Tiles method the interface's
// type.
type storeAdapter struct{ *store.Store }

func (s storeAdapter) Tiles(treeID int64) tree.TileReader { return s.Store.Tiles(treeID) }

// MySQLStore adapts s to Store.
func MySQLStore(s *store.Store) Store { return storeAdapter{s} }
