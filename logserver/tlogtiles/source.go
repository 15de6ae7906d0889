package tlogtiles

import (
	"context"
	"errors"
	"fmt"

	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// Log is the Source of one tree of the logserver: full tiles and entry
// bundles from the store (where the publish transaction wrote them), the
// rightmost partial tiles from the in-memory tree, partial bundles from the
// stored entries, checkpoints from the witnessing feeder (newest) and the
// store (history).
type Log struct {
	TreeID int64
	Store  *store.Store
	Tree   *tree.Tree
	// Size returns the published tree size: every entry, tile and bundle
	// below it is stored.
	Size func() int64
	// Latest returns the newest published checkpoint, nil before the first.
	Latest func() []byte
}

var _ Source = (*Log)(nil)

// Checkpoint implements Source.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	if cp := l.Latest(); cp != nil {
		return cp, nil
	}
	return nil, ErrNoCheckpoint
}

// CheckpointAt implements Source.
func (l *Log) CheckpointAt(ctx context.Context, n int64) ([]byte, error) {
	return mapErr(l.Store.C2SPCheckpointAt(ctx, l.TreeID, n))
}

// available is how many of the width-256 resource (level, index) the
// published tree of size holds.
func available(size int64, level int, index int64) int64 {
	span := size >> (tree.Height * level) // hashes at this level
	return min(tree.Width, span-index*tree.Width)
}

// Tile implements Source.
func (l *Log) Tile(ctx context.Context, level int, index int64, width int) ([]byte, error) {
	avail := available(l.Size(), level, index)
	if index < 0 || int64(width) > avail {
		return nil, fmt.Errorf("tile %d/%d.p/%d: %w", level, index, width, ErrNotFound)
	}
	var data []byte
	var err error
	if avail == tree.Width {
		data, err = l.Store.Tiles(l.TreeID).ReadTile(ctx, level, index)
	} else {
		data, err = l.Tree.TileData(ctx, level, index)
	}
	if err != nil {
		// Published, so it must be there.
		return nil, fmt.Errorf("tile %d/%d of the published tree: %v", level, index, err)
	}
	if len(data) < width*32 {
		return nil, fmt.Errorf("tile %d/%d has %d bytes, want %d", level, index, len(data), width*32)
	}
	return data[:width*32], nil
}

// Bundle implements Source.
func (l *Log) Bundle(ctx context.Context, index int64, width int) ([]byte, error) {
	if index < 0 || int64(width) > available(l.Size(), 0, index) {
		return nil, fmt.Errorf("entry bundle %d.p/%d: %w", index, width, ErrNotFound)
	}
	return mapErr(l.Store.Bundle(ctx, l.TreeID, index, width))
}

func mapErr(b []byte, err error) ([]byte, error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, store.ErrEntryTooLarge):
		return nil, fmt.Errorf("%w: %v", ErrUnservable, err)
	}
	return b, err
}
