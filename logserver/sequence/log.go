// Package sequence is the log's write path and its view of the tree head.
//
// Add admits concurrent submissions in batches (one Trillian queue
// transaction per batch, not per leaf) and wakes the embedded sequencer as
// soon as leaves are queued. Every integrated batch then goes through a
// three-stage publish pipeline: prepare reads the new leaves and Trillian's
// head in one snapshot, extends the Merkle tiles and checks the root against
// Trillian's; sign signs the SETs and the checkpoint in one signer call;
// commit stores entries, SETs, tiles, search keys and the checkpoint in one
// transaction, then swaps the head and wakes every writer whose entry the
// new head covers. Sequencing and the three stages overlap. There is no
// per-request polling: one process-wide loop watches the tree.
//
// Contract: Add returns an entry only once it is integrated, its SET and the
// checkpoint covering it are stored durably, and the head readers see
// includes it. A duplicate gets ErrDuplicate. Nothing Add acknowledged is
// lost across restarts: publishing resumes from the store's last entry up to
// Trillian's tree size.
package sequence

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/logkey"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// ErrDuplicate is returned by Add for an entry that is already in the log
// (or queued): its leaf hash is the existing entry's UUID.
type ErrDuplicate struct{ LeafHash tree.Hash }

func (e *ErrDuplicate) Error() string {
	return "an equivalent entry already exists with UUID " + hex.EncodeToString(e.LeafHash[:])
}

// ErrKeyChanged is returned by Open when the configured log key is not the
// key that signed the tree's stored checkpoints: clients pin the log key,
// so a tree keeps its key for life.
var ErrKeyChanged = errors.New("sequence: the log key changed")

// ErrClosed is returned once the log is shutting down.
var ErrClosed = errors.New("sequence: log is shutting down")

// Head is a published tree head.
type Head struct {
	TreeID     int64
	Size       int64
	Root       tree.Hash
	Checkpoint []byte // Rekor v1 note, one signature line
}

// Options tune the write path.
type Options struct {
	// Hostname names the log in Rekor checkpoints: "<Hostname> - <treeID>".
	Hostname string
	// BatchSize caps leaves per queue transaction and per sequencing pass.
	BatchSize int
	// AdmitWorkers is the number of queue transactions in flight at once.
	AdmitWorkers int
	// Interval is how often the tree head is checked while writers wait
	// and no submission wakes the loop (embedded: a sequencing pass; remote:
	// a head poll). With no writer waiting it is 10 × Interval.
	Interval time.Duration
	// TileCache is how many full Merkle tiles (8 KiB each) stay in memory.
	TileCache int
	Logger    *slog.Logger
	Metrics   *Metrics
	// OnHead, if set, is called with every newly published head, from the
	// commit loop; it must not block.
	OnHead func(*Head)
}

// Log is the write path and the published head of one tree.
type Log struct {
	backend Backend
	store   *store.Store
	signer  logkey.Signer
	tree    *tree.Tree
	opts    Options
	logID   string
	hint    [4]byte
	log     *slog.Logger
	m       *Metrics

	head atomic.Pointer[Head]

	admit chan *pending
	kick  chan struct{}
	grew  chan struct{} // sequence loop -> prepare loop: the tree grew

	mu      sync.Mutex
	waiters map[tree.Hash][]*pending

	computed chan *pass            // prepare loop -> sign loop, in order
	prepared chan *pass            // sign loop -> commit loop, in order
	broken   atomic.Pointer[error] // integrity failure: nothing more is published
	failed   atomic.Pointer[error] // last publish failure, nil when healthy
	stop     context.CancelFunc
	wg       sync.WaitGroup
	closed   atomic.Bool
}

type pending struct {
	value []byte
	hash  tree.Hash
	keys  []string
	done  chan result // receives exactly one result

	// Guarded by Log.mu. A writer is answered by a publish only once its own
	// queue transaction said the leaf is new (queued); a publish that comes
	// first parks the result in published for queue to deliver. Another
	// writer of the same entry whose queue transaction reports a duplicate
	// gets 409, never the other writer's 201.
	queued    bool
	published *result
}

type result struct {
	entry store.Entry
	head  *Head
	err   error
}

// Open restores the log's state from the store and Trillian, publishes
// whatever Trillian integrated that the store lacks, and starts the admission
// and sequencing loops.
func Open(ctx context.Context, b Backend, s *store.Store, signer logkey.Signer, o Options) (*Log, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.AdmitWorkers <= 0 {
		o.AdmitWorkers = 1
	}
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	logID, err := logkey.LogID(signer.Public())
	if err != nil {
		return nil, err
	}
	hint, err := rekorKeyHint(signer.Public())
	if err != nil {
		return nil, err
	}
	l := &Log{
		backend: b, store: s, signer: signer, opts: o, logID: logID, hint: hint,
		log: o.Logger.With("tree_id", b.TreeID()), m: o.Metrics,
		tree:     tree.New(s.Tiles(b.TreeID()), o.TileCache),
		admit:    make(chan *pending, 4*o.BatchSize),
		kick:     make(chan struct{}, 1),
		grew:     make(chan struct{}, 1),
		computed: make(chan *pass, 1),
		prepared: make(chan *pass, 1),
		waiters:  map[tree.Hash][]*pending{},
	}
	if err := l.restore(ctx); err != nil {
		return nil, err
	}
	// Publish what Trillian integrated after the store's last pass (a crash
	// between the two), and anything the sequencer integrates right now.
	if err := l.sync(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.stop = cancel
	for i := 0; i < o.AdmitWorkers; i++ {
		l.wg.Add(1)
		go l.admitLoop(runCtx)
	}
	l.wg.Add(4)
	go l.sequenceLoop(runCtx)
	go l.prepareLoop(runCtx)
	go l.signLoop(runCtx)
	go l.commitLoop(runCtx)
	return l, nil
}

// restore rebuilds the tiles and the head from the store.
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
		cp, err := l.store.LatestCheckpoint(ctx, treeID, "rekor")
		if err != nil {
			return fmt.Errorf("latest checkpoint: %w", err)
		}
		if cp.TreeSize != size || cp.RootHash != root {
			return fmt.Errorf("stored checkpoint (size %d) does not match the stored entries (size %d)", cp.TreeSize, size)
		}
		if hint, ok := noteKeyHint(cp.Note); !ok || hint != l.hint {
			return fmt.Errorf("%w: the tree's checkpoints and SETs were signed by key %x, the configured log key is %x; a new key needs a new tree",
				ErrKeyChanged, hint, l.hint)
		}
		h.Checkpoint = cp.Note
	} else {
		// The empty tree's checkpoint is signed now and not stored.
		if h.Checkpoint, err = l.signCheckpoint(ctx, 0, root); err != nil {
			return err
		}
	}
	l.head.Store(h)
	l.m.treeSize.Set(float64(size))
	l.log.Info("log restored", "size", size)
	return nil
}

// Head returns the latest published tree head.
func (l *Log) Head() *Head { return l.head.Load() }

// Tree returns the Merkle tree (proofs, tiles).
func (l *Log) Tree() *tree.Tree { return l.tree }

// LogID is the hex SHA-256 of the log key's PKIX DER.
func (l *Log) LogID() string { return l.logID }

// Healthy returns the last publish failure, or nil.
func (l *Log) Healthy() error {
	if err := l.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// Add submits a canonical entry with its search keys and waits until it is
// integrated and published. On success it returns the stored entry and the
// head that covers it.
func (l *Log) Add(ctx context.Context, value []byte, keys []string) (store.Entry, *Head, error) {
	if l.closed.Load() {
		return store.Entry{}, nil, ErrClosed
	}
	p := &pending{value: value, keys: keys, done: make(chan result, 1)}
	copy(p.hash[:], rfc6962.DefaultHasher.HashLeaf(value))
	start := time.Now()
	select {
	case l.admit <- p:
	case <-ctx.Done():
		return store.Entry{}, nil, ctx.Err()
	}
	select {
	case r := <-p.done:
		if r.err == nil {
			l.m.addLatency.Observe(time.Since(start).Seconds())
		}
		return r.entry, r.head, r.err
	case <-ctx.Done():
		// The entry may still be integrated; a retry will get 409.
		return store.Entry{}, nil, ctx.Err()
	}
}

func (l *Log) admitLoop(ctx context.Context) {
	defer l.wg.Done()
	for {
		var batch []*pending
		select {
		case p := <-l.admit:
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < l.opts.BatchSize {
			select {
			case p := <-l.admit:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		l.queue(ctx, batch)
	}
}

// queue admits one batch: registers the waiters, queues the leaves in one
// transaction, answers duplicates, records search keys, wakes the sequencer.
func (l *Log) queue(ctx context.Context, batch []*pending) {
	start := time.Now()
	var values, hashes [][]byte
	var queued []*pending
	seen := map[tree.Hash]bool{}
	var dups []*pending
	l.mu.Lock()
	for _, p := range batch {
		if seen[p.hash] {
			dups = append(dups, p) // same entry twice in one batch: the first wins
			continue
		}
		seen[p.hash] = true
		l.waiters[p.hash] = append(l.waiters[p.hash], p)
		queued = append(queued, p)
		values = append(values, p.value)
		hashes = append(hashes, p.hash[:])
	}
	l.mu.Unlock()

	var dup []bool
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// A batch fails as a whole when a concurrent transaction inserts the
		// same leaf first; the retry sees that leaf and reports a duplicate.
		if dup, err = l.backend.QueueLeaves(ctx, values, hashes); err == nil || ctx.Err() != nil {
			break
		}
		l.log.Warn("queue leaves, retrying", "attempt", attempt, "leaves", len(values), "error", err)
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
	l.m.queueLatency.Observe(time.Since(start).Seconds())
	l.m.batchSize.Observe(float64(len(values)))
	if err != nil {
		l.log.Error("queue leaves", "leaves", len(values), "error", err)
		l.m.errors.WithLabelValues("queue").Inc()
		for _, p := range queued {
			l.unwait(p)
			p.done <- result{err: fmt.Errorf("queue leaf: %w", err)}
		}
		for _, p := range dups {
			p.done <- result{err: fmt.Errorf("queue leaf: %w", err)}
		}
		return
	}
	fresh := 0
	l.mu.Lock()
	for i, p := range queued {
		if dup[i] {
			l.unwaitLocked(p)
			dups = append(dups, p)
			continue
		}
		fresh++
		p.queued = true
		if p.published != nil {
			p.done <- *p.published
		}
	}
	l.mu.Unlock()
	if fresh > 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	// Search keys of new entries are stored with the entries when they are
	// published. A duplicate's keys are (re)written here, which repairs the
	// index for an entry whose first writer never saw it published.
	var keys []store.IndexKey
	for _, p := range dups {
		for _, k := range p.keys {
			keys = append(keys, store.IndexKey{Key: k, LeafHash: p.hash})
		}
		l.m.duplicates.Inc()
		p.done <- result{err: &ErrDuplicate{LeafHash: p.hash}}
	}
	if len(keys) > 0 {
		if err := l.store.AddIndexKeys(ctx, l.backend.TreeID(), keys); err != nil {
			l.log.Error("index keys", "error", err)
			l.m.errors.WithLabelValues("index").Inc()
		}
	}
}

func (l *Log) unwait(p *pending) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unwaitLocked(p)
}

func (l *Log) unwaitLocked(p *pending) {
	ws := l.waiters[p.hash]
	for i, w := range ws {
		if w == p {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(l.waiters, p.hash)
	} else {
		l.waiters[p.hash] = ws
	}
}

func (l *Log) waiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters) > 0
}

// sequenceLoop integrates (embedded) or watches (remote) the tree and wakes
// the prepare loop when it grew, so the next sequencing pass runs while the
// previous batch is being signed and stored.
func (l *Log) sequenceLoop(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTimer(l.opts.Interval)
	defer t.Stop()
	backoff := l.opts.Interval
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
		for {
			grew, full, err := l.step(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				l.fail(err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				break
			}
			backoff = l.opts.Interval
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
			p, err := l.compute(ctx)
			if err != nil {
				if !l.retry(ctx, err) {
					return
				}
				continue
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
		for {
			err := l.sign(ctx, p)
			if err == nil {
				break
			}
			if !l.retry(ctx, err) {
				return
			}
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
		for {
			err := l.commit(ctx, p)
			if err == nil {
				break
			}
			if !l.retry(ctx, err) {
				return
			}
		}
	}
}

// retry records a failure and waits before the caller tries again; it
// returns false once the log is shutting down.
func (l *Log) retry(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	l.fail(err)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(l.opts.Interval):
		return true
	}
}

func (l *Log) fail(err error) {
	l.failed.Store(&err)
	l.m.errors.WithLabelValues("publish").Inc()
	l.log.Error("sequence and publish", "error", err)
}

// sync integrates everything queued and publishes it (at start-up, before
// the loops run).
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

// pass is one publish step: leaves read from Trillian and appended to the
// tiles, then signed, then stored.
type pass struct {
	entries []store.Entry
	tiles   []tree.Tile
	cp      store.Checkpoint
	head    *Head // set once signed
	more    bool  // Trillian's tree was larger than this pass
	start   time.Time
}

// maxPass caps the leaves of one publish pass (memory), e.g. when catching
// up after downtime.
func (l *Log) maxPass() int64 { return max(int64(4*l.opts.BatchSize), 10000) }

// commit stores a signed pass, then publishes its head and answers the
// writers it covers. Passes must be committed in the order prepared.
func (l *Log) commit(ctx context.Context, p *pass) error {
	var keys []store.IndexKey
	l.mu.Lock()
	for _, e := range p.entries {
		for _, w := range l.waiters[e.LeafHash] {
			for _, k := range w.keys {
				keys = append(keys, store.IndexKey{Key: k, LeafHash: e.LeafHash})
			}
		}
	}
	l.mu.Unlock()
	if err := l.store.Publish(ctx, p.head.TreeID, p.entries, p.tiles, keys, p.cp); err != nil {
		return fmt.Errorf("store pass up to %d: %w", p.head.Size, err)
	}
	l.head.Store(p.head)
	l.failed.Store(nil)
	if l.opts.OnHead != nil {
		l.opts.OnHead(p.head)
	}
	l.m.treeSize.Set(float64(p.head.Size))
	l.m.publishLatency.Observe(time.Since(p.start).Seconds())
	l.m.integrated.Add(float64(len(p.entries)))

	l.mu.Lock()
	for _, e := range p.entries {
		for _, w := range l.waiters[e.LeafHash] {
			r := result{entry: e, head: p.head}
			if w.queued {
				w.done <- r
			} else {
				w.published = &r
			}
		}
		delete(l.waiters, e.LeafHash)
	}
	l.mu.Unlock()
	return nil
}

// compute reads Trillian's head and the leaves after ours in one snapshot,
// extends the tiles and checks the root against Trillian's. It returns nil
// when there is nothing new.
func (l *Log) compute(ctx context.Context) (*pass, error) {
	if err := l.broken.Load(); err != nil {
		return nil, *err
	}
	start := time.Now()
	from := l.tree.Size() // passes prepared but not yet committed are in the tiles
	root, leaves, err := l.backend.Since(ctx, from, l.maxPass())
	if err != nil {
		return nil, fmt.Errorf("read leaves from %d: %w", from, err)
	}
	if int64(root.TreeSize) <= from || len(leaves) == 0 {
		return nil, nil
	}
	treeID := l.backend.TreeID()
	entries := make([]store.Entry, 0, len(leaves))
	for i, lf := range leaves {
		next := from + int64(i)
		if lf.LeafIndex != next {
			return nil, fmt.Errorf("read leaves: got index %d, want %d", lf.LeafIndex, next)
		}
		e := store.Entry{TreeID: treeID, Index: next, IntegratedTime: lf.IntegrateTimestamp.AsTime().Unix(), Body: lf.LeafValue}
		copy(e.LeafHash[:], rfc6962.DefaultHasher.HashLeaf(lf.LeafValue))
		if !bytes.Equal(e.LeafHash[:], lf.MerkleLeafHash) {
			return nil, fmt.Errorf("leaf %d: stored Merkle hash does not match its value", next)
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
		return nil, err
	}
	// The tiles must give Trillian's root. A pass cut short by maxPass ends
	// below Trillian's size, where only the last pass's root is checked.
	if size == int64(root.TreeSize) && !bytes.Equal(ours[:], root.RootHash) {
		// The tiles and Trillian disagree: never publish a head we cannot
		// prove. The tiles are now ahead of anything publishable: stop.
		l.m.errors.WithLabelValues("integrity").Inc()
		err := fmt.Errorf("INTEGRITY: computed root %x at size %d differs from Trillian's %x; publishing stopped, restart the logserver", ours[:], size, root.RootHash)
		l.broken.Store(&err)
		return nil, err
	}

	return &pass{
		entries: entries,
		tiles:   tiles,
		cp:      store.Checkpoint{Format: "rekor", TreeSize: size, RootHash: ours},
		more:    size < int64(root.TreeSize),
		start:   start,
	}, nil
}

// sign signs every SET of the pass and its checkpoint in one signer call.
func (l *Log) sign(ctx context.Context, p *pass) error {
	treeID := l.backend.TreeID()
	digests := make([][sha256.Size]byte, len(p.entries)+1)
	for i, e := range p.entries {
		digests[i] = sha256.Sum256(setPayload(e.Body, e.IntegratedTime, l.logID, e.Index))
	}
	text := rekorCheckpointText(l.opts.Hostname, treeID, p.cp.TreeSize, p.cp.RootHash)
	digests[len(p.entries)] = sha256.Sum256([]byte(text))
	sigs, err := l.signer.SignDigests(ctx, digests)
	if err != nil {
		return fmt.Errorf("sign pass up to %d: %w", p.cp.TreeSize, err)
	}
	// The signer may be remote: check the checkpoint's and the first SET's
	// signatures under the log key before anything is stored (two ECDSA
	// verifications a pass; a wrong key or garbage fails here, not in clients).
	if len(sigs) != len(digests) || !l.verify(digests[len(digests)-1], sigs[len(sigs)-1]) || !l.verify(digests[0], sigs[0]) {
		l.m.errors.WithLabelValues("sign").Inc()
		return fmt.Errorf("sign pass up to %d: the signer's signatures do not verify under the log key", p.cp.TreeSize)
	}
	for i := range p.entries {
		p.entries[i].SET = sigs[i]
	}
	p.cp.Note = rekorNote(text, l.opts.Hostname, l.hint, sigs[len(p.entries)])
	p.head = &Head{TreeID: treeID, Size: p.cp.TreeSize, Root: p.cp.RootHash, Checkpoint: p.cp.Note}
	return nil
}

// verify checks an ECDSA signature under the log key.
func (l *Log) verify(digest [sha256.Size]byte, sig []byte) bool {
	pub, ok := l.signer.Public().(*ecdsa.PublicKey)
	return ok && ecdsa.VerifyASN1(pub, digest[:], sig)
}

func (l *Log) signCheckpoint(ctx context.Context, size int64, root tree.Hash) ([]byte, error) {
	text := rekorCheckpointText(l.opts.Hostname, l.backend.TreeID(), size, root)
	sigs, err := l.signer.SignDigests(ctx, [][sha256.Size]byte{sha256.Sum256([]byte(text))})
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return rekorNote(text, l.opts.Hostname, l.hint, sigs[0]), nil
}

// Close stops admitting, lets in-flight batches finish, and stops the loops.
// Writers still waiting get ErrClosed; their entries, if queued, are
// published at the next start.
func (l *Log) Close() {
	if l.closed.Swap(true) {
		return
	}
	// Give queued work a moment to be published before stopping.
	deadline := time.Now().Add(5 * time.Second)
	for l.waiting() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	for h, ws := range l.waiters {
		for _, p := range ws {
			p.done <- result{err: ErrClosed}
		}
		delete(l.waiters, h)
	}
	l.mu.Unlock()
	for {
		select {
		case p := <-l.admit:
			p.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}
