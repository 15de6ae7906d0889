// Package tlogwitness decides add-checkpoint requests of c2sp.org/tlog-witness
// and cosigns the checkpoints it accepts.
//
// For each request it checks, in the order of the spec: the origin is a
// registered, enabled log (ErrUnknownLog); every signature line of one of
// the log's keys verifies and at least one does (ErrBadSignature,
// ErrUntrusted); the checkpoint text is well formed (ErrMalformed); old ≤
// size (ErrOldSize). Then, holding the log's lock (one decision per log at a
// time, requests for different logs in parallel): old equals the size of the
// latest cosigned checkpoint, 0 if none (*ConflictError); the tree is
// consistent with it (ErrInconsistent: bad size-0 root, proof with old 0,
// different root at the same size, failing proof); the log's budget allows
// it (*RateLimitError). Only then is the cosigning key asked to sign
// (*cosig.UnavailableError if it cannot), and the checkpoint is stored with
// a compare-and-swap on the tree it verified against (package store); the
// cosignature is returned only once the store has made it durable.
//
// So of N concurrent requests from the same old size exactly one is signed
// and the others get 409 with the winner's size without reaching the
// signer; only requests that would advance the log's state are charged to
// its budget (replaying a public checkpoint cannot starve the log); and the
// witness never cosigns two roots for one size, nor a tree smaller than one
// it cosigned before, whatever the concurrency or restarts.
//
// A request repeating the latest cosigned checkpoint exactly (same note
// text, old = its size) within ReuseCosignature of its cosignature gets the
// stored cosignature again: no signature, no budget.
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

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/store"
)

// Outcomes of add-checkpoint. The api package maps each to one HTTP status.
var (
	ErrMalformed    = c2sp.ErrMalformed                                                              // 400
	ErrOldSize      = errors.New("old size is larger than the checkpoint size")                      // 400
	ErrUnknownLog   = errors.New("unknown log origin")                                               // 404
	ErrUntrusted    = c2sp.ErrUntrusted                                                              // 403
	ErrBadSignature = c2sp.ErrBadSignature                                                           // 403
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

// DefaultReuseCosignature is the default of Options.ReuseCosignature.
const DefaultReuseCosignature = time.Minute

// Witness is the add-checkpoint decision and cosigning engine.
type Witness struct {
	store   *store.Store
	signer  cosig.Cosigner
	budgets Budgets
	reuse   time.Duration
	now     func() time.Time
	logger  *slog.Logger

	mu        sync.Mutex
	verifiers map[string]note.Verifier // by vkey
	locks     map[string]chan struct{} // by origin (registered logs only), a 1-slot semaphore
}

// Options configures New.
type Options struct {
	Budgets Budgets // nil: unlimited
	// ReuseCosignature is how long the stored cosignature of the latest
	// checkpoint answers an identical request (0: DefaultReuseCosignature;
	// negative: never, sign every request).
	ReuseCosignature time.Duration
	Now              func() time.Time // nil: time.Now
	Logger           *slog.Logger     // nil: slog.Default()
}

// New returns a Witness over an open store and a cosigning key.
func New(st *store.Store, signer cosig.Cosigner, opts Options) *Witness {
	w := &Witness{store: st, signer: signer, budgets: opts.Budgets, reuse: opts.ReuseCosignature, now: opts.Now,
		logger: opts.Logger, verifiers: make(map[string]note.Verifier), locks: make(map[string]chan struct{})}
	if w.reuse == 0 {
		w.reuse = DefaultReuseCosignature
	}
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
	Signature []byte // cosignature/v1 lines, "— <name> <base64>\n"
	Reused    bool   // the stored cosignature of an identical request
}

// AddCheckpoint decides a parsed add-checkpoint request. On success the
// cosigned checkpoint is durable and becomes the log's latest.
func (w *Witness) AddCheckpoint(ctx context.Context, req c2sp.AddCheckpoint) (Cosigned, error) {
	origin, _, ok := bytes.Cut(req.Checkpoint, []byte("\n"))
	if !ok || len(origin) == 0 {
		return Cosigned{}, fmt.Errorf("%w: checkpoint has no origin line", ErrMalformed)
	}
	l, _, err := w.store.State(string(origin))
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
	n, err := c2sp.Open(req.Checkpoint, note.VerifierList(vs...))
	if err != nil {
		return Cosigned{}, err
	}
	cp, err := c2sp.ParseCheckpoint(n.Text)
	if err != nil {
		return Cosigned{}, err
	}
	if req.OldSize > cp.Size {
		return Cosigned{}, fmt.Errorf("%w: old %d, size %d", ErrOldSize, req.OldSize, cp.Size)
	}

	unlock, err := w.lock(ctx, l.Origin)
	if err != nil {
		return Cosigned{}, err
	}
	defer unlock()
	// Read again under the lock: this is the state the decision is about.
	l, cur, err := w.store.State(l.Origin)
	if errors.Is(err, store.ErrLogNotFound) || err == nil && l.Disabled {
		return Cosigned{}, fmt.Errorf("%w: %q", ErrUnknownLog, origin)
	}
	if err != nil {
		return Cosigned{}, err
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
	if cur != nil && w.reusable(cur, n.Text) {
		return Cosigned{Origin: l.Origin, Size: cp.Size, Signature: cur.Cosignature, Reused: true}, nil
	}
	if w.budgets != nil {
		if ok, after := w.budgets.Allow(l.Origin); !ok {
			return Cosigned{}, &RateLimitError{RetryAfter: after}
		}
	}

	line, err := w.signer.Sign(ctx, []byte(n.Text), w.now())
	if err != nil {
		return Cosigned{}, err
	}
	next := store.Checkpoint{
		Tree:        store.Tree{Size: cp.Size, Hash: cp.Hash[:]},
		Note:        monitoringNote(n, line),
		Cosignature: line,
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

// lock takes the decision lock of a registered log's origin.
func (w *Witness) lock(ctx context.Context, origin string) (unlock func(), err error) {
	w.mu.Lock()
	sem, ok := w.locks[origin]
	if !ok {
		sem = make(chan struct{}, 1)
		w.locks[origin] = sem
	}
	w.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// reusable reports whether cur's stored cosignature answers a request for
// the same note text: cur was cosigned over exactly text, less than
// w.reuse ago.
func (w *Witness) reusable(cur *store.Checkpoint, text string) bool {
	if w.reuse < 0 || len(cur.Cosignature) == 0 || len(cur.Note) <= len(text) ||
		string(cur.Note[:len(text)]) != text || cur.Note[len(text)] != '\n' {
		return false
	}
	first, _, _ := bytes.Cut(cur.Cosignature, []byte("\n"))
	_, _, sig, err := c2sp.ParseSignatureLine(first)
	if err != nil {
		return false
	}
	ts, err := c2sp.CosignatureTime(sig)
	if err != nil {
		return false
	}
	age := w.now().Sub(ts)
	return age >= -time.Second && age < w.reuse
}

// checkConsistency applies the tlog-witness rules for a checkpoint against
// the latest cosigned tree prev, given old == prev.Size ≤ cp.Size.
func checkConsistency(prev store.Tree, prf [][sha256.Size]byte, cp c2sp.Checkpoint) error {
	hasher := rfc6962.DefaultHasher
	switch {
	case cp.Size == 0 && !bytes.Equal(cp.Hash[:], hasher.EmptyRoot()):
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
		if !bytes.Equal(prev.Hash, cp.Hash[:]) {
			return fmt.Errorf("%w: different root at the cosigned size %d", ErrInconsistent, cp.Size)
		}
		return nil
	default:
		hashes := make([][]byte, len(prf))
		for i := range prf {
			hashes[i] = prf[i][:]
		}
		if err := proof.VerifyConsistency(hasher, prev.Size, cp.Size, hashes, prev.Hash, cp.Hash[:]); err != nil {
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
			if v, err = notekey.LogVerifier(k); err != nil {
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

// Ready reports whether the witness can cosign: the store answers and the
// cosigning key is reachable.
func (w *Witness) Ready(ctx context.Context) error {
	if err := w.store.Ping(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := w.signer.Ready(ctx); err != nil {
		return fmt.Errorf("cosigning key: %w", err)
	}
	return nil
}

// Signer returns the witness cosigning key.
func (w *Witness) Signer() cosig.Cosigner { return w.signer }
