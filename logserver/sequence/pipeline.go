package sequence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/sync/errgroup"

	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// pass is one publish step: leaves read from Trillian and appended to the
// tiles, then signed, then stored.
type pass struct {
	entries []store.Entry
	keys    []store.IndexKey
	tiles   []tree.Tile
	cp      store.Checkpoint
	head    *Head // set once signed
	more    bool  // Trillian's tree was larger than this pass
	start   time.Time
}

// maxPass caps the leaves of one publish pass (with Options.MaxPassBytes),
// e.g. when catching up after downtime.
func (l *Log) maxPass() int64 { return max(int64(4*l.opts.BatchSize), 10000) }

// sequenceLoop integrates (embedded) or watches (remote) the tree and wakes
// the prepare loop when it grew, so the next sequencing pass runs while the
// previous batch is being signed and stored.
func (l *Log) sequenceLoop(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTimer(l.opts.Interval)
	defer t.Stop()
	for {
		// Submissions kick the loop; the timer is a safety net while writers
		// wait, and an idle poll (other writers, in remote mode) otherwise.
		wait := l.opts.Interval
		if !l.waiting() {
			wait = 10 * l.opts.Interval
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-t.C:
		}
		if l.health.stopped() != nil {
			return // nothing more is published: stop integrating too
		}
		for {
			var grew, full bool
			if err := l.retry(ctx, "integrate", func() (err error) {
				grew, full, err = l.step(ctx)
				return err
			}); err != nil {
				return
			}
			if grew {
				select {
				case l.grew <- struct{}{}:
				default:
				}
			}
			if !full {
				break
			}
		}
	}
}

// step runs one sequencing pass (embedded) or reads the tree head (remote).
// grew says the tree may be ahead of the head; full that the pass was
// limited by the batch size, so another should follow at once.
func (l *Log) step(ctx context.Context) (grew, full bool, err error) {
	if err := l.checkLease(ctx); err != nil {
		return false, false, err
	}
	if l.backend.Sequences() {
		start := time.Now()
		n, err := l.backend.Integrate(ctx, l.opts.BatchSize)
		if err != nil {
			return false, false, fmt.Errorf("integrate: %w", err)
		}
		if n > 0 {
			l.m.integrateLatency.Observe(time.Since(start).Seconds())
		}
		return n > 0, n >= l.opts.BatchSize, nil
	}
	root, err := l.backend.Root(ctx)
	if err != nil {
		return false, false, fmt.Errorf("tree head: %w", err)
	}
	return int64(root.TreeSize) > l.Head().Size, false, nil
}

// checkLease confirms the sequencing lease at most once a second.
func (l *Log) checkLease(ctx context.Context) error {
	if l.opts.Lease == nil || time.Since(l.leaseChecked) < time.Second {
		return nil
	}
	if err := l.opts.Lease.Check(ctx); err != nil {
		if errors.Is(err, store.ErrLeaseHeld) {
			return fatal(err)
		}
		return fmt.Errorf("tree lease: %w", err)
	}
	l.leaseChecked = time.Now()
	return nil
}

// prepareLoop turns tree growth into computed passes, each time it is
// woken, and hands them on in order: the next pass is read while the
// previous ones are being signed and stored.
func (l *Log) prepareLoop(ctx context.Context) {
	defer l.wg.Done()
	defer close(l.computed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.grew:
		}
		for {
			var p *pass
			if err := l.retry(ctx, "read", func() (err error) {
				p, err = l.compute(ctx)
				return err
			}); err != nil {
				return
			}
			if p == nil {
				break
			}
			select {
			case l.computed <- p:
			case <-ctx.Done():
				return
			}
			if !p.more {
				break
			}
		}
	}
}

// signLoop signs computed passes in order (one signer call each) and hands
// them to the commit loop. A pass whose signing fails is signed again.
func (l *Log) signLoop(ctx context.Context) {
	defer l.wg.Done()
	defer close(l.prepared)
	for p := range l.computed {
		if err := l.retry(ctx, "sign", func() error { return l.sign(ctx, p) }); err != nil {
			return
		}
		select {
		case l.prepared <- p:
		case <-ctx.Done():
			return
		}
	}
}

// commitLoop stores prepared passes in order and publishes their heads.
func (l *Log) commitLoop(ctx context.Context) {
	defer l.wg.Done()
	for p := range l.prepared {
		if err := l.retry(ctx, "store", func() error { return l.commit(ctx, p) }); err != nil {
			return
		}
	}
}

// behindReplica returns nil when a head behind the database's record of
// its origin comes from a replica that is late, not from a tree that lost
// entries: with remote Trillian several logservers sequence-read one tree
// and publish what each has seen, so one may publish size 95 after another
// recorded 100. Trillian's own head then has reached the record; after a
// restore of Trillian's storage it has not (fatal, ErrForked). The late
// pass is then published without moving the record. What this cannot see
// is a Trillian restored and grown past the record again with other
// entries; the state files of each replica still guard its own history.
func (l *Log) behindReplica(ctx context.Context, behind *store.HeadBehindError) error {
	root, err := l.backend.Root(ctx)
	if err != nil {
		return fmt.Errorf("tree head, to check a published head behind the record: %w", err)
	}
	if int64(root.TreeSize) < behind.Recorded {
		return fmt.Errorf("%w: %v, and the tree itself is only at size %d", ErrForked, behind, root.TreeSize)
	}
	l.log.Debug("published a head behind another replica's", "origin", behind.Origin, "size", behind.Size, "recorded", behind.Recorded, "tree_size", root.TreeSize)
	return nil
}

// compute reads Trillian's head and the leaves after ours in one snapshot,
// extends the tiles and checks the root against Trillian's. It returns nil
// when there is nothing new.
func (l *Log) compute(ctx context.Context) (*pass, error) {
	start := time.Now()
	from := l.tree.Size() // passes prepared but not yet committed are in the tiles
	root, leaves, err := l.backend.Since(ctx, from, l.maxPass(), l.opts.MaxPassBytes)
	if err != nil {
		return nil, fmt.Errorf("read leaves from %d: %w", from, err)
	}
	if int64(root.TreeSize) <= from || len(leaves) == 0 {
		return nil, nil
	}
	treeID := l.backend.TreeID()
	entries := make([]store.Entry, 0, len(leaves))
	var keys []store.IndexKey
	for i, lf := range leaves {
		next := from + int64(i)
		if lf.LeafIndex != next {
			return nil, fmt.Errorf("read leaves: got index %d, want %d", lf.LeafIndex, next)
		}
		e := store.Entry{TreeID: treeID, Index: next, IntegratedTime: lf.IntegrateTimestamp.AsTime().Unix(), Body: lf.LeafValue}
		copy(e.LeafHash[:], rfc6962.DefaultHasher.HashLeaf(lf.LeafValue))
		if !bytes.Equal(e.LeafHash[:], lf.MerkleLeafHash) {
			return nil, fatal(fmt.Errorf("INTEGRITY: leaf %d: stored Merkle hash does not match its value", next))
		}
		// Limits are checked before a leaf is queued; a leaf over them here
		// was queued by someone else (remote mode) and can never be stored.
		if len(e.Body) > store.MaxBodyBytes {
			return nil, fatal(fmt.Errorf("leaf %d is %d bytes, more than the store holds (%d)", next, len(e.Body), store.MaxBodyBytes))
		}
		ks, err := decodeKeys(lf.ExtraData)
		if err != nil {
			return nil, fatal(fmt.Errorf("leaf %d: %w", next, err))
		}
		for _, k := range ks {
			if len(k) <= store.MaxIndexKeyBytes {
				keys = append(keys, store.IndexKey{Key: k, LeafHash: e.LeafHash})
			}
		}
		entries = append(entries, e)
	}
	size := from + int64(len(entries))
	hashes := make([]tree.Hash, len(entries))
	for i := range entries {
		hashes[i] = entries[i].LeafHash
	}
	tiles := l.tree.Append(hashes)
	ours, err := l.tree.Root(ctx, size)
	if err != nil {
		// The tiles already hold this pass: it cannot be read again.
		return nil, fatal(fmt.Errorf("root at %d after extending the tiles: %w", size, err))
	}
	// The tiles must give Trillian's root. A pass cut short by its bounds
	// ends below Trillian's size, where only the last pass's root is checked.
	if size == int64(root.TreeSize) && !bytes.Equal(ours[:], root.RootHash) {
		// The tiles and Trillian disagree: never publish a head we cannot
		// prove. The tiles are now ahead of anything publishable: stop.
		return nil, fatal(fmt.Errorf("INTEGRITY: computed root %x at size %d differs from Trillian's %x", ours[:], size, root.RootHash))
	}
	return &pass{
		entries: entries,
		keys:    keys,
		tiles:   tiles,
		cp:      store.Checkpoint{Format: l.notary.Format(), TreeSize: size, RootHash: ours},
		more:    size < int64(root.TreeSize),
		start:   start,
	}, nil
}

// sign has the Notary sign the pass.
func (l *Log) sign(ctx context.Context, p *pass) error {
	treeID := l.backend.TreeID()
	sets, note, err := l.notary.Sign(ctx, treeID, p.entries, p.cp.TreeSize, p.cp.RootHash)
	if err != nil {
		return err
	}
	if sets != nil && len(sets) != len(p.entries) {
		return fmt.Errorf("sign pass up to %d: %d entry signatures for %d entries", p.cp.TreeSize, len(sets), len(p.entries))
	}
	for i := range p.entries {
		p.entries[i].SET = []byte{} // a personality without entry signatures
		if sets != nil {
			p.entries[i].SET = sets[i]
		}
	}
	p.cp.Note = note
	p.head = &Head{TreeID: treeID, Size: p.cp.TreeSize, Root: p.cp.RootHash, Checkpoint: note}
	return nil
}

// commit checks a signed pass against the published-head records, stores
// it (and the records: in the database and, at the same time, in the state
// files), then publishes its head and answers the writers it covers. Passes
// must be committed in the order prepared.
func (l *Log) commit(ctx context.Context, p *pass) error {
	heads, err := l.guard.check(ctx, l.tree, p.head, false)
	if err != nil {
		return err
	}
	pass := store.Pass{TreeID: p.head.TreeID, Entries: p.entries, Tiles: p.tiles,
		Keys: p.keys, Checkpoint: p.cp, Heads: heads}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.guard.record(heads) })
	g.Go(func() error { return l.store.Publish(gctx, pass) })
	err = g.Wait()
	var behind *store.HeadBehindError
	if errors.As(err, &behind) {
		// Crash point: the state files hold this head, the database holds
		// nothing of the pass; a retry or the next start publishes it again.
		if err = l.behindReplica(ctx, behind); err == nil {
			pass.Heads = nil
			err = l.store.Publish(ctx, pass)
		}
	}
	if err != nil {
		if errors.Is(err, store.ErrHeadConflict) || errors.Is(err, ErrForked) {
			return fatal(err)
		}
		return fmt.Errorf("store pass up to %d: %w", p.head.Size, err)
	}
	l.guard.advanced(heads)
	l.head.Store(p.head)
	if l.opts.OnHead != nil {
		l.opts.OnHead(p.head)
	}
	l.m.treeSize.Set(float64(p.head.Size))
	l.m.publishLatency.Observe(time.Since(p.start).Seconds())
	l.m.integrated.Add(float64(len(p.entries)))
	l.answer(p.entries, p.head)
	return nil
}
