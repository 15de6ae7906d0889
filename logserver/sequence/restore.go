package sequence

import (
	"context"
	"fmt"

	"github.com/stellaops/tlog/logserver/tree"
)

// restore rebuilds the tiles and the head from the store, and checks them
// against the log key and the published-head records.
func (l *Log) restore(ctx context.Context) error {
	treeID := l.backend.TreeID()
	size, err := l.store.PublishedSize(ctx, treeID)
	if err != nil {
		return fmt.Errorf("published size: %w", err)
	}
	tail, err := l.store.LeafHashes(ctx, treeID, size-size%tree.Width, size)
	if err != nil {
		return err
	}
	if err := l.tree.Restore(ctx, size, tail); err != nil {
		return err
	}
	root, err := l.tree.Root(ctx, size)
	if err != nil {
		return err
	}
	h := &Head{TreeID: treeID, Size: size, Root: root}
	if size > 0 {
		cp, err := l.store.LatestCheckpoint(ctx, treeID, l.notary.Format())
		if err != nil {
			return fmt.Errorf("latest checkpoint: %w", err)
		}
		if cp.TreeSize != size || cp.RootHash != root {
			return fmt.Errorf("stored checkpoint (size %d) does not match the stored entries (size %d)", cp.TreeSize, size)
		}
		if err := l.notary.CheckNote(cp.Note); err != nil {
			return err
		}
		h.Checkpoint = cp.Note
	} else {
		// The empty tree's checkpoint is signed now and not stored.
		if _, h.Checkpoint, err = l.notary.Sign(ctx, treeID, nil, 0, root); err != nil {
			return err
		}
	}
	if _, err := l.guard.check(ctx, l.tree, h, true); err != nil {
		return err
	}
	l.head.Store(h)
	l.m.treeSize.Set(float64(size))
	l.log.Info("log restored", "size", size)
	return nil
}

// sync integrates everything queued and publishes it (at start-up, before
// the loops run). Any failure fails the start-up.
func (l *Log) sync(ctx context.Context) error {
	for {
		_, full, err := l.step(ctx)
		if err != nil {
			return err
		}
		if full {
			continue
		}
		for {
			p, err := l.compute(ctx)
			if err != nil || p == nil {
				return err
			}
			if err := l.sign(ctx, p); err != nil {
				return err
			}
			if err := l.commit(ctx, p); err != nil {
				return err
			}
			if !p.more {
				return nil
			}
		}
	}
}
