// Package tlogwitness decides add-checkpoint requests of c2sp.org/tlog-witness
// and cosigns the checkpoints it accepts.
//
// For each request it checks, in the order of the spec: the origin is a
// registered, enabled log (ErrUnknownLog); the note carries a valid signature
// from one of the log's keys and no failing one (ErrUntrusted,
// ErrBadSignature); the checkpoint text is well formed (ErrMalformed); the
// log's budget allows it (*RateLimitError, so only log-signed requests are
// charged); old ≤ size (ErrOldSize); old equals the size of the latest
// cosigned checkpoint, 0 if none (*ConflictError); the tree is consistent
// with it (ErrInconsistent: bad size-0 root, proof with old 0, different root
// at the same size, failing proof). Then it
// cosigns and stores the checkpoint with a compare-and-swap on the tree it
// verified against (package store), and returns the cosignature only once
// the store has made it durable. It therefore never cosigns two roots for one
// size, nor a tree smaller than one it cosigned before, whatever the number
// of concurrent requests or restarts.
package tlogwitness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/logkey"
	"github.com/stellaops/tlog/witness/store"
)

// Outcomes of add-checkpoint. The api package maps each to one HTTP status.
var (
	ErrMalformed    = errors.New("malformed request")                                                // 400
	ErrOldSize      = errors.New("old size is larger than the checkpoint size")                      // 400
	ErrUnknownLog   = errors.New("unknown log origin")                                               // 404
	ErrUntrusted    = errors.New("checkpoint has no valid signature from a trusted log key")         // 403
	ErrBadSignature = errors.New("checkpoint has a failing signature from a trusted log key")        // 403
	ErrInconsistent = errors.New("checkpoint is not consistent with the latest cosigned checkpoint") // 422
	ErrNoCheckpoint = errors.New("no cosigned checkpoint for this log")                              // 404 (monitoring)
)

// ConflictError means the request's old size is not the size of the latest
// cosigned checkpoint, which is Size (0 if none).
type ConflictError struct {
	Size uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("old size does not match the latest cosigned size %d", e.Size)
}

// RateLimitError means the log spent its request budget; retry after
// RetryAfter.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("log request budget exhausted, retry after %v", e.RetryAfter)
}

// Budgets limits requests per log. Allow reports whether origin may make one
// more request now and, if not, how long to wait.
type Budgets interface {
	Allow(origin string) (ok bool, retryAfter time.Duration)
}

// Witness is the add-checkpoint decision and cosigning engine.
type Witness struct {
	store   *store.Store
	signer  cosig.Cosigner
	budgets Budgets
	now     func() time.Time
	logger  *slog.Logger

	mu        sync.Mutex
	verifiers map[string]note.Verifier // by vkey
}

// Options configures New.
type Options struct {
	Budgets Budgets          // nil: unlimited
	Now     func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: slog.Default()
}

// New returns a Witness over an open store and a cosigning key.
func New(st *store.Store, signer cosig.Cosigner, opts Options) *Witness {
	w := &Witness{store: st, signer: signer, budgets: opts.Budgets, now: opts.Now,
		logger: opts.Logger, verifiers: make(map[string]note.Verifier)}
	if w.now == nil {
		w.now = time.Now
	}
	if w.logger == nil {
		w.logger = slog.Default()
	}
	return w
}

// Cosigned describes an accepted checkpoint.
type Cosigned struct {
	Origin    string
	Size      uint64
	Signature []byte // one cosignature/v1 line, "— <name> <base64>\n"
}

// AddCheckpoint decides a parsed add-checkpoint request. On success the
// cosigned checkpoint is durable and becomes the log's latest.
func (w *Witness) AddCheckpoint(ctx context.Context, req Request) (Cosigned, error) {
	origin, _, ok := bytes.Cut(req.Checkpoint, []byte("\n"))
	if !ok || len(origin) == 0 {
		return Cosigned{}, fmt.Errorf("%w: checkpoint has no origin line", ErrMalformed)
	}
	l, cur, err := w.store.State(string(origin))
	if errors.Is(err, store.ErrLogNotFound) || err == nil && l.Disabled {
		return Cosigned{}, fmt.Errorf("%w: %q", ErrUnknownLog, origin)
	}
	if err != nil {
		return Cosigned{}, err
	}
	vs, err := w.verifiersFor(l)
	if err != nil {
		return Cosigned{}, err
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(vs...))
	if err != nil {
		var inv *note.InvalidSignatureError
		var unv *note.UnverifiedNoteError
		switch {
		case errors.As(err, &inv):
			return Cosigned{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
		case errors.As(err, &unv):
			return Cosigned{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
		default:
			return Cosigned{}, fmt.Errorf("%w: checkpoint note: %v", ErrMalformed, err)
		}
	}
	cp, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Cosigned{}, err
	}
	if w.budgets != nil {
		if ok, after := w.budgets.Allow(l.Origin); !ok {
			return Cosigned{}, &RateLimitError{RetryAfter: after}
		}
	}
	if req.OldSize > cp.Size {
		return Cosigned{}, fmt.Errorf("%w: old %d, size %d", ErrOldSize, req.OldSize, cp.Size)
	}
	var prev store.Tree // size 0, nil hash: never cosigned
	if cur != nil {
		prev = cur.Tree
	}
	if req.OldSize != prev.Size {
		return Cosigned{}, &ConflictError{Size: prev.Size}
	}
	if err := checkConsistency(prev, req.Proof, cp); err != nil {
		w.logger.WarnContext(ctx, "log signed a checkpoint inconsistent with the witnessed tree",
			slog.String("origin", l.Origin), slog.Uint64("old_size", prev.Size),
			slog.Uint64("size", cp.Size), slog.String("checkpoint", string(req.Checkpoint)),
			slog.Any("error", err))
		return Cosigned{}, err
	}

	line, err := w.signer.Sign([]byte(n.Text), w.now())
	if err != nil {
		return Cosigned{}, err
	}
	next := store.Checkpoint{
		Tree: store.Tree{Size: cp.Size, Hash: cp.Hash},
		Note: monitoringNote(n, line),
	}
	err = w.store.Replace(l.Origin, prev, next)
	var conflict *store.ConflictError
	switch {
	case err == nil:
		return Cosigned{Origin: l.Origin, Size: cp.Size, Signature: line}, nil
	case errors.As(err, &conflict):
		return Cosigned{}, &ConflictError{Size: conflict.Size}
	case errors.Is(err, store.ErrLogNotFound), errors.Is(err, store.ErrLogDisabled):
		return Cosigned{}, fmt.Errorf("%w: %q", ErrUnknownLog, origin)
	case errors.Is(err, store.ErrRollback), errors.Is(err, store.ErrFork):
		return Cosigned{}, fmt.Errorf("%w: %v", ErrInconsistent, err)
	default:
		return Cosigned{}, fmt.Errorf("storing cosigned checkpoint: %w", err)
	}
}

// checkConsistency applies the tlog-witness rules for a checkpoint against
// the latest cosigned tree prev, given old == prev.Size ≤ cp.Size.
func checkConsistency(prev store.Tree, prf [][]byte, cp Checkpoint) error {
	hasher := rfc6962.DefaultHasher
	switch {
	case cp.Size == 0 && !bytes.Equal(cp.Hash, hasher.EmptyRoot()):
		return fmt.Errorf("%w: size 0 with a root that is not SHA-256(\"\")", ErrInconsistent)
	case prev.Size == 0:
		// The empty tree is consistent with every tree; handled here rather
		// than by proof.VerifyConsistency, whose size1 == 0 case changed
		// between merkle releases.
		if len(prf) != 0 {
			return fmt.Errorf("%w: old size 0 needs an empty proof, got %d lines", ErrInconsistent, len(prf))
		}
		return nil
	case prev.Size == cp.Size:
		if len(prf) != 0 {
			return fmt.Errorf("%w: same size needs an empty proof, got %d lines", ErrInconsistent, len(prf))
		}
		if !bytes.Equal(prev.Hash, cp.Hash) {
			return fmt.Errorf("%w: different root at the cosigned size %d", ErrInconsistent, cp.Size)
		}
		return nil
	default:
		if err := proof.VerifyConsistency(hasher, prev.Size, cp.Size, prf, prev.Hash, cp.Hash); err != nil {
			return fmt.Errorf("%w: consistency proof %d→%d: %v", ErrInconsistent, prev.Size, cp.Size, err)
		}
		return nil
	}
}

// monitoringNote is the checkpoint served to monitors: the note text, the
// log signatures that verified, and the witness cosignature.
func monitoringNote(n *note.Note, cosignature []byte) []byte {
	var b strings.Builder
	b.WriteString(n.Text)
	b.WriteString("\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&b, "— %s %s\n", s.Name, s.Base64)
	}
	b.Write(cosignature)
	return []byte(b.String())
}

// verifiersFor returns the log's verifiers, parsing each vkey once.
func (w *Witness) verifiersFor(l store.Log) ([]note.Verifier, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	vs := make([]note.Verifier, 0, len(l.VerifierKeys))
	for _, k := range l.VerifierKeys {
		v, ok := w.verifiers[k]
		if !ok {
			var err error
			if v, err = logkey.Parse(k); err != nil {
				return nil, fmt.Errorf("stored key of log %q: %w", l.Origin, err)
			}
			w.verifiers[k] = v
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// Latest returns the latest cosigned checkpoint of the log whose origin
// hashes (SHA-256) to id, or ErrNoCheckpoint.
func (w *Witness) Latest(id [sha256.Size]byte) ([]byte, error) {
	c, err := w.store.Checkpoint(id)
	if errors.Is(err, store.ErrNoCheckpoint) {
		return nil, ErrNoCheckpoint
	}
	if err != nil {
		return nil, err
	}
	return c.Note, nil
}

// Signer returns the witness cosigning key.
func (w *Witness) Signer() cosig.Cosigner { return w.signer }
