// Package store holds the witness's durable state in one embedded bbolt file:
// the registry of logs it witnesses (origin, trusted verifier keys, enabled)
// and, per log, the latest checkpoint it cosigned.
//
// Contract:
//
//   - Durability: every write method returns nil only after its transaction
//     is committed and fsynced (bbolt's commit writes the pages, fdatasyncs,
//     then writes and fdatasyncs the meta page). A change acknowledged to a
//     caller survives a process crash or power loss; a failed write leaves no
//     partial state.
//   - Consistency: writes are serialised (bbolt has a single writer) and every
//     read sees one committed snapshot. Replace is a compare-and-swap on the
//     previous tree: of several Replace calls that expect the same previous
//     tree, at most one succeeds and the others get a *ConflictError with the
//     size now stored. Concurrent Replace calls share fsyncs (group commit)
//     without weakening this.
//   - Invariants enforced here, whatever the caller verified: a log's stored
//     tree never gets smaller, and never changes root at the same size
//     (ErrRollback, ErrFork).
//   - Exclusion: one process opens the file at a time (bbolt takes an flock);
//     another Open fails with ErrLocked after the lock timeout. Tools that
//     must work while the server runs go through the server (package admin).
//
// Keys are SHA-256(origin), so the monitoring API finds a log by the hash in
// its URL and origins of any length fit.
package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketLogs        = []byte("logs")
	bucketCheckpoints = []byte("checkpoints")
)

// Sources of a log definition.
const (
	SourceConfig = "config" // declared in the configuration file
	SourceAdmin  = "admin"  // added with the admin command
)

var (
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrLocked means another process holds the database.
	ErrLocked = errors.New("store is locked by another process")
	// ErrLogNotFound means no log has the origin.
	ErrLogNotFound = errors.New("log not found")
	// ErrLogExists means a log with the origin is already registered.
	ErrLogExists = errors.New("log already exists")
	// ErrLogDisabled means the log is registered but disabled.
	ErrLogDisabled = errors.New("log is disabled")
	// ErrNoCheckpoint means the witness never cosigned a checkpoint of the log.
	ErrNoCheckpoint = errors.New("no cosigned checkpoint")
	// ErrRollback refuses to store a tree smaller than the stored one.
	ErrRollback = errors.New("refusing to store a smaller tree")
	// ErrFork refuses to store a different root for the stored size.
	ErrFork = errors.New("refusing to store a different root at the same size")
)

// ConflictError reports a failed compare-and-swap: the stored tree is not
// the one the caller expected. Size is the size now stored (0 if none).
type ConflictError struct {
	Size uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("stored tree size is %d", e.Size)
}

// Log is a witnessed log.
type Log struct {
	Origin       string   `json:"origin"`
	VerifierKeys []string `json:"vkeys"`
	Disabled     bool     `json:"disabled,omitempty"`
	// Unlisted means the log was disabled because it left the configuration
	// file (not by an operator); listing it again re-enables it.
	Unlisted bool      `json:"unlisted,omitempty"`
	Source   string    `json:"source"`
	Added    time.Time `json:"added"`
}

// Tree identifies a tree by size and root hash.
type Tree struct {
	Size uint64 `json:"size"`
	Hash []byte `json:"hash"`
}

// Checkpoint is the latest cosigned checkpoint of a log.
type Checkpoint struct {
	Tree
	// Note is the checkpoint as served to monitors: the note text, the log
	// signatures the witness verified and the witness cosignature.
	Note []byte `json:"note"`
	// Cosignature is the witness's signature lines as answered for Note
	// (empty in records written before it was kept), so an identical
	// request can be answered again without signing.
	Cosignature []byte `json:"cosignature,omitempty"`
}

// Store is an open state database. Its methods are safe for concurrent use.
type Store struct {
	db *bolt.DB

	ops        chan *replaceOp
	writerDone chan struct{}
	mu         sync.RWMutex // guards closed and sends on ops
	closed     bool
}

// Options tune Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock (default 1s).
	LockTimeout time.Duration
}

// Open opens or creates the database at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLogs, bucketCheckpoints} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising store %s: %w", path, err)
	}
	s := &Store{db: db, ops: make(chan *replaceOp, maxBatch), writerDone: make(chan struct{})}
	go s.writer()
	return s, nil
}

// Close waits for queued Replace calls, then closes the database. Later
// Replace calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.ops)
	s.mu.Unlock()
	<-s.writerDone
	return s.db.Close()
}

// Ping reads the database, for readiness checks.
func (s *Store) Ping() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketLogs) == nil {
			return errors.New("store: logs bucket missing")
		}
		return nil
	})
}

// ID returns the key of a log: SHA-256(origin).
func ID(origin string) [sha256.Size]byte { return sha256.Sum256([]byte(origin)) }

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("store: corrupt record %x: %w", key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// Log returns the log with the origin, or ErrLogNotFound.
func (s *Store) Log(origin string) (Log, error) {
	var l Log
	err := s.db.View(func(tx *bolt.Tx) error {
		id := ID(origin)
		ok, err := getJSON(tx.Bucket(bucketLogs), id[:], &l)
		if err == nil && !ok {
			err = ErrLogNotFound
		}
		return err
	})
	return l, err
}

// State returns a log and its latest cosigned checkpoint, read in one
// snapshot. cp is nil if the witness never cosigned for the log.
func (s *Store) State(origin string) (l Log, cp *Checkpoint, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		id := ID(origin)
		ok, err := getJSON(tx.Bucket(bucketLogs), id[:], &l)
		if err != nil {
			return err
		}
		if !ok {
			return ErrLogNotFound
		}
		var c Checkpoint
		if ok, err = getJSON(tx.Bucket(bucketCheckpoints), id[:], &c); ok {
			cp = &c
		}
		return err
	})
	return l, cp, err
}

// Logs returns every registered log, ordered by origin.
func (s *Store) Logs() ([]Log, error) {
	var logs []Log
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLogs).ForEach(func(k, v []byte) error {
			var l Log
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("store: corrupt log record %x: %w", k, err)
			}
			logs = append(logs, l)
			return nil
		})
	})
	slices.SortFunc(logs, func(a, b Log) int { return strings.Compare(a.Origin, b.Origin) })
	return logs, err
}

// AddLog registers a new log; ErrLogExists if the origin is taken.
func (s *Store) AddLog(l Log) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		id := ID(l.Origin)
		if b.Get(id[:]) != nil {
			return fmt.Errorf("%w: %q", ErrLogExists, l.Origin)
		}
		return putJSON(b, id[:], l)
	})
}

// SetDisabled enables or disables a log; ErrLogNotFound if unknown.
func (s *Store) SetDisabled(origin string, disabled bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		id := ID(origin)
		var l Log
		ok, err := getJSON(b, id[:], &l)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrLogNotFound, origin)
		}
		l.Disabled, l.Unlisted = disabled, false
		return putJSON(b, id[:], l)
	})
}

// SyncConfigLogs makes the registry agree with the configuration file, in one
// transaction: each given log is stored with Source SourceConfig and its
// verifier keys (replacing an admin-added log of the same origin, keeping a
// Disabled flag an operator set), and config-sourced logs no longer given
// are disabled as Unlisted (re-enabled if listed again). It returns the
// origins it disabled.
func (s *Store) SyncConfigLogs(logs []Log, now time.Time) (disabled []string, err error) {
	want := make(map[[sha256.Size]byte]bool, len(logs))
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range logs {
			id := ID(l.Origin)
			want[id] = true
			var old Log
			ok, err := getJSON(b, id[:], &old)
			if err != nil {
				return err
			}
			l.Source = SourceConfig
			l.Added = now
			if ok {
				l.Disabled = old.Disabled && !old.Unlisted
				l.Added = old.Added
			}
			if err := putJSON(b, id[:], l); err != nil {
				return err
			}
		}
		return b.ForEach(func(k, v []byte) error {
			var l Log
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("store: corrupt log record %x: %w", k, err)
			}
			if l.Source != SourceConfig || l.Disabled || want[[sha256.Size]byte(k)] {
				return nil
			}
			l.Disabled, l.Unlisted = true, true
			disabled = append(disabled, l.Origin)
			return putJSON(b, bytes.Clone(k), l)
		})
	})
	if err != nil {
		return nil, err
	}
	return disabled, nil
}

// Checkpoint returns the latest cosigned checkpoint of the log whose ID
// (SHA-256 of the origin) is id, or ErrNoCheckpoint.
func (s *Store) Checkpoint(id [sha256.Size]byte) (Checkpoint, error) {
	var c Checkpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketCheckpoints), id[:], &c)
		if err == nil && !ok {
			err = ErrNoCheckpoint
		}
		return err
	})
	return c, err
}

// Replace stores next as the latest cosigned checkpoint of origin if and
// only if the stored tree is still old (size 0 and nil hash meaning "never
// cosigned"); otherwise it returns a *ConflictError carrying the stored size.
// It returns ErrLogNotFound or ErrLogDisabled if the log is not enabled, and
// ErrRollback or ErrFork if next would break append-only order. On nil the
// new checkpoint is durable.
//
// Concurrent calls are group-committed: one writer goroutine applies every
// call queued while the previous transaction was committing, in arrival
// order, in one transaction and one fsync. Each call still sees the effect
// of the calls before it, so the compare-and-swap semantics are those of
// one transaction per call; only the fsyncs are shared. If the transaction
// fails, every call in it gets the error and none is stored.
func (s *Store) Replace(origin string, old Tree, next Checkpoint) error {
	op := &replaceOp{origin: origin, old: old, next: next, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.ops <- op
	s.mu.RUnlock()
	return <-op.done
}

type replaceOp struct {
	origin string
	old    Tree
	next   Checkpoint
	done   chan error
}

// maxBatch bounds the calls committed in one transaction.
const maxBatch = 256

// writer commits queued Replace calls until ops is closed.
func (s *Store) writer() {
	defer close(s.writerDone)
	for op := range s.ops {
		batch := []*replaceOp{op}
	drain:
		for len(batch) < maxBatch {
			select {
			case op, ok := <-s.ops:
				if !ok {
					break drain
				}
				batch = append(batch, op)
			default:
				break drain
			}
		}
		results := make([]error, len(batch))
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, op := range batch {
				res, err := replace(tx, op)
				if err != nil {
					return err
				}
				results[i] = res
			}
			return nil
		})
		for i, op := range batch {
			if err != nil {
				op.done <- err
			} else {
				op.done <- results[i]
			}
		}
	}
}

// replace applies one compare-and-swap inside tx. res is the outcome for the
// caller (nil when stored); err is a storage failure that aborts tx.
func replace(tx *bolt.Tx, op *replaceOp) (res, err error) {
	id := ID(op.origin)
	var l Log
	ok, err := getJSON(tx.Bucket(bucketLogs), id[:], &l)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return ErrLogNotFound, nil
	case l.Disabled:
		return ErrLogDisabled, nil
	}
	cps := tx.Bucket(bucketCheckpoints)
	var cur Checkpoint
	ok, err = getJSON(cps, id[:], &cur)
	if err != nil {
		return nil, err
	}
	if !ok {
		if op.old.Size != 0 || op.old.Hash != nil {
			return &ConflictError{Size: 0}, nil
		}
	} else {
		if cur.Size != op.old.Size || !bytes.Equal(cur.Hash, op.old.Hash) {
			return &ConflictError{Size: cur.Size}, nil
		}
		if op.next.Size < cur.Size {
			return ErrRollback, nil
		}
		if op.next.Size == cur.Size && !bytes.Equal(op.next.Hash, cur.Hash) {
			return ErrFork, nil
		}
	}
	return nil, putJSON(cps, id[:], op.next)
}
