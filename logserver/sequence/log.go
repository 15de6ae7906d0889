// Package sequence is the log's write path and its view of the tree head.
//
// Add admits concurrent submissions in batches (one Trillian queue
// transaction per batch, bounded by count and bytes) and wakes the embedded
// sequencer as soon as leaves are queued. Every integrated batch then goes
// through a three-stage publish pipeline: prepare reads the new leaves and
// Trillian's head in one snapshot, extends the Merkle tiles and checks the
// root against Trillian's; sign has the log's Notary sign the pass (for
// Rekor v1: every SET and the checkpoint, in one signer call); commit
// checks the new head against the published-head records, stores entries,
// signatures, tiles, search keys and the checkpoint in one transaction,
// then swaps the head and wakes every writer whose entry the new head
// covers. Sequencing and the three stages overlap.
//
// The files of this package each hold one part: admit.go (Add, admission
// limits, queueing), pipeline.go (the loops and the publish pass),
// faults.go (fatal and transient failures, the one retry policy,
// readiness), restore.go (start-up), guard.go (the published-head
// records), store.go (the store contract), notary.go and rekor.go (the
// seam for what is signed, and its Rekor v1 implementation), backend.go,
// embedded.go and remote.go (Trillian).
//
// Contract: Add returns an entry only once it is integrated, its
// signatures and the checkpoint covering it are stored durably, and the head
// readers see includes it. A duplicate gets ErrDuplicate. Nothing Add
// acknowledged is lost across restarts: publishing resumes from the store's
// last entry up to Trillian's tree size, and search keys travel with the
// queued leaf (Trillian's ExtraData), so entries whose writers gave up are
// indexed too. No head is ever published that goes back from, or is
// inconsistent with, a head published before for the same origin and key.
package sequence

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// Head is a published tree head.
type Head struct {
	TreeID     int64
	Size       int64
	Root       tree.Hash
	Checkpoint []byte // the Notary's checkpoint note
}

// Options tune the write path.
type Options struct {
	// BatchSize caps leaves per queue transaction and per sequencing pass.
	BatchSize int
	// AdmitWorkers is the number of queue transactions in flight at once.
	AdmitWorkers int
	// Interval is how often the tree head is checked while writers wait
	// and no submission wakes the loop (embedded: a sequencing pass; remote:
	// a head poll). With no writer waiting it is 10 × Interval. It is also
	// the first delay of the retry policy.
	Interval time.Duration
	// TileCache is how many full Merkle tiles (8 KiB each) stay in memory.
	TileCache int

	// MaxEntryBytes caps the canonical entry (TooLargeError above it).
	// Default 4 MiB; at most store.MaxBodyBytes.
	MaxEntryBytes int
	// MaxPendingBytes and MaxPending bound the entries admitted but not yet
	// queued (bytes) and the writers waiting (count); past either, Add
	// fails at once with ErrOverloaded. Defaults 256 MiB and 10000.
	MaxPendingBytes int64
	MaxPending      int
	// MaxBatchBytes bounds one queue transaction. Default 32 MiB.
	MaxBatchBytes int
	// MaxPassBytes bounds the leaves read, signed and stored by one
	// publish pass. Default 64 MiB.
	MaxPassBytes int

	// StateDir holds the published-head record files (see guard.go).
	// Required: keep it out of the database's data directory.
	StateDir string
	// AlsoSigned are further origins whose checkpoints are signed from
	// these heads (the C2SP checkpoint of logserver/witnessing): they are
	// guarded like the Notary's own.
	AlsoSigned []Origin
	// Lease, if set, must be held to sequence (embedded mode): it is
	// checked at least every second, and a lease lost to another
	// logserver stops publishing.
	Lease Lease

	Logger  *slog.Logger
	Metrics *Metrics
	// OnHead, if set, is called with every newly published head, from the
	// commit loop; it must not block.
	OnHead func(*Head)
}

// Lease is the tree's sequencing lease (store.Lease).
type Lease interface {
	// Check returns nil while the lease is held, re-taking it after a lost
	// connection; store.ErrLeaseHeld once another holder has it.
	Check(ctx context.Context) error
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.AdmitWorkers <= 0 {
		o.AdmitWorkers = 1
	}
	if o.Interval <= 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = 4 << 20
	}
	o.MaxEntryBytes = min(o.MaxEntryBytes, store.MaxBodyBytes)
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 256 << 20
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 32 << 20
	}
	if o.MaxPassBytes <= 0 {
		o.MaxPassBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}

// Log is the write path and the published head of one tree.
type Log struct {
	backend Backend
	store   Store
	notary  Notary
	tree    *tree.Tree
	guard   *guard
	opts    Options
	log     *slog.Logger
	m       *Metrics

	head atomic.Pointer[Head]

	admit    chan *pending
	kick     chan struct{}
	grew     chan struct{} // sequence loop -> prepare loop: the tree grew
	computed chan *pass    // prepare loop -> sign loop, in order
	prepared chan *pass    // sign loop -> commit loop, in order

	mu      sync.Mutex
	waiters map[tree.Hash][]*pending
	limits  admission

	health       health
	leaseChecked time.Time // by the sequence loop

	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// Open restores the log's state from the store and Trillian, publishes
// whatever Trillian integrated that the store lacks, and starts the admission
// and sequencing loops.
func Open(ctx context.Context, b Backend, s Store, n Notary, o Options) (*Log, error) {
	o.defaults()
	l := &Log{
		backend: b, store: s, notary: n, opts: o,
		log: o.Logger.With("tree_id", b.TreeID()), m: o.Metrics,
		tree:     tree.New(s.Tiles(b.TreeID()), o.TileCache),
		admit:    make(chan *pending, 4*o.BatchSize),
		kick:     make(chan struct{}, 1),
		grew:     make(chan struct{}, 1),
		computed: make(chan *pass, 1),
		prepared: make(chan *pass, 1),
		waiters:  map[tree.Hash][]*pending{},
	}
	l.health.init(l)
	g, err := openGuard(ctx, o.StateDir, s, b.TreeID(), append([]Origin{{Name: n.Name(), KeyID: n.KeyID()}}, o.AlsoSigned...))
	if err != nil {
		return nil, err
	}
	l.guard = g
	if err := l.restore(ctx); err != nil {
		return nil, err
	}
	// Publish what Trillian integrated after the store's last pass (a crash
	// between the two), and anything the sequencer integrates right now.
	if err := l.sync(ctx); err != nil {
		return nil, err
	}
	if err := l.guard.covered(l.Head()); err != nil {
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

// Head returns the latest published tree head.
func (l *Log) Head() *Head { return l.head.Load() }

// Tree returns the Merkle tree (proofs, tiles).
func (l *Log) Tree() *tree.Tree { return l.tree }

// LogID is the hex of the Notary's key ID (for Rekor v1: SHA-256 of the
// log key's PKIX DER).
func (l *Log) LogID() string {
	id := l.notary.KeyID()
	return hex.EncodeToString(id[:])
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
	for l.waiting() && time.Now().Before(deadline) && l.health.stopped() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	l.stop()
	l.wg.Wait()
	l.guard.close()
	l.failWaiters(ErrClosed)
	for {
		select {
		case p := <-l.admit:
			l.limits.release(p.size)
			p.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}
