// Package export copies a transparency log into a mirror directory as
// dated, verified snapshots (packages store and snapshot).
//
// One export: fetch the log's checkpoint and verify its log signature and
// witness quorum (package trust); compare it with the newest snapshot
// (a smaller tree, or the same size with another root, is a split view);
// stage the tiles and entry bundles the mirror lacks (downloaded from a
// tlog-tiles log, or rebuilt from a Rekor v1 log's entries); verify every
// staged tile and the root (package tiles); verify consistency with the
// newest snapshot; then move the tiles into place and write the day's
// snapshot.
//
// Contract: nothing unverified reaches tile/ or snapshots/; staged
// downloads survive an interruption and are reused by the next run
// (resume); a second run on the same day against an unchanged log changes
// nothing, and against a grown log replaces the day's snapshot (still
// proven consistent with the previous day). An inconsistent checkpoint
// stops the export with an *InconsistentError and both checkpoints are
// kept under evidence/.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/snapshot"
	"github.com/stellaops/tlog/mirror/store"
	"github.com/stellaops/tlog/mirror/tiles"
	"github.com/stellaops/tlog/mirror/trust"
)

// Exporter runs exports of one Config.
type Exporter struct {
	cfg      Config
	trust    *trust.Trust
	dir      *store.Dir
	src      source
	fetch    *fetcher // HTTP with retries (the pending list)
	log      *slog.Logger
	progress *progress
	metrics  *Metrics
	// Now is the clock (snapshot dates, metrics).
	Now func() time.Time
}

// source is where an export gets the log from.
type source interface {
	// checkpoint returns the log's current checkpoint, verbatim.
	checkpoint(ctx context.Context) ([]byte, error)
	// stage puts into staging every tile of the tree c beyond the size old
	// (the newest snapshot, nil for none) and returns how many it fetched.
	stage(ctx context.Context, old, c *trust.Checkpoint) (int, error)
}

// InconsistentError is a checkpoint that contradicts an earlier snapshot:
// a split view, a rollback or a rewritten history. Evidence is the
// directory holding both checkpoints.
type InconsistentError struct {
	Reason   string
	Evidence string
}

func (e *InconsistentError) Error() string {
	return "inconsistent log: " + e.Reason + " (both checkpoints kept in " + e.Evidence + ")"
}

// New validates cfg and returns an exporter. Progress goes to progressOut
// (a bar if it is a terminal, lines otherwise; nil for none).
func New(cfg Config, logger *slog.Logger, progressOut io.Writer) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := trust.Load(cfg.PolicyFile, cfg.Origin)
	if err != nil {
		return nil, err
	}
	d, err := store.Open(cfg.Dir)
	if err != nil {
		return nil, err
	}
	e := &Exporter{cfg: cfg, trust: t, dir: d, log: logger, Now: time.Now, metrics: NewMetrics(),
		progress: newProgress(progressOut)}
	client := &http.Client{Timeout: cfg.Timeout}
	f := &fetcher{client: client, retries: cfg.Retries}
	e.fetch = f
	switch cfg.Kind {
	case KindRekorV1:
		e.src = &rekorSource{e: e, f: f, base: cfg.Source}
	default:
		e.src = &tilesSource{e: e, f: f, base: cfg.Source}
	}
	return e, nil
}

// Metrics returns the exporter's metrics.
func (e *Exporter) Metrics() *Metrics { return e.metrics }

// Result is what one export did.
type Result struct {
	Snapshot *snapshot.Meta
	// UpToDate: the day's snapshot already had this checkpoint.
	UpToDate bool
	// Fetched is the number of tiles (or Rekor entry batches) fetched.
	Fetched int
}

// Run performs one export.
func (e *Exporter) Run(ctx context.Context) (*Result, error) {
	res, err := e.run(ctx)
	var inc *InconsistentError
	if errors.As(err, &inc) {
		// Tiles staged from an inconsistent log must not be reused.
		os.RemoveAll(e.dir.StagingDir())
	}
	e.metrics.observe(e.Now(), res, err)
	return res, err
}

func (e *Exporter) run(ctx context.Context) (*Result, error) {
	if err := snapshot.Recover(e.dir.Root); err != nil {
		return nil, err
	}
	fsys := os.DirFS(e.dir.Root)
	dates, err := snapshot.List(fsys)
	if err != nil {
		return nil, err
	}
	today := snapshot.Date(e.Now())
	var latest, chainPrev *snapshot.Snapshot
	var latestCP, chainPrevCP *trust.Checkpoint
	for i := len(dates) - 1; i >= 0 && chainPrev == nil; i-- {
		s, err := snapshot.Read(fsys, dates[i])
		if err != nil {
			return nil, err
		}
		c, err := e.trust.VerifyLog(s.Checkpoint)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s no longer verifies under the trust policy: %w", dates[i], err)
		}
		if latest == nil {
			latest, latestCP = s, c
		}
		if dates[i] < today {
			chainPrev, chainPrevCP = s, c
		}
	}

	raw, err := e.src.checkpoint(ctx)
	if err != nil {
		return nil, fetchErr(err)
	}
	cp, err := e.trust.Verify(raw)
	if err != nil {
		return nil, &VerifyError{fmt.Errorf("log checkpoint: %w", err)}
	}
	e.metrics.seen(cp.Size)
	log := e.log.With("origin", cp.Origin, "size", cp.Size, "witnesses", cp.Witnesses)
	m := int64(0)
	if latest != nil {
		m = latestCP.Size
		if err := e.compare(latest, latestCP, cp); err != nil {
			return nil, err
		}
		if cp.Size == m && latest.Meta.Date == today {
			log.InfoContext(ctx, "export: up to date", "snapshot", today)
			return &Result{Snapshot: &latest.Meta, UpToDate: true}, nil
		}
	}

	fetched, err := e.src.stage(ctx, latestCP, cp)
	if err != nil {
		var inc *InconsistentError
		if errors.As(err, &inc) {
			return nil, err
		}
		return nil, fetchErr(err)
	}
	staged := e.dir.Tiles("staging")
	verified := e.dir.Tiles("")
	reader := tiles.Layers{Layers: []interface {
		Tile(c2sp.TileRef) ([]byte, error)
	}{staged, verified}, TrustLast: true}
	e.progress.start("verify", 0)
	tr, err := tiles.Verify(ctx, reader, m, cp.Size, cp.Root, e.progress.update)
	e.progress.done()
	if err != nil {
		return nil, e.verifyFailed(ctx, err, reader, latest, latestCP, cp)
	}
	if latest != nil {
		if err := e.consistent(ctx, tr, latest, latestCP, cp); err != nil {
			return nil, err
		}
	}
	meta := snapshot.Meta{Date: today, TakenAt: e.Now().UTC(), Source: e.cfg.Source, Origin: cp.Origin,
		Size: cp.Size, Root: b64(cp.Root[:]), Witnesses: cp.Witnesses, Quorum: cp.Quorum}
	var prf [][32]byte
	if chainPrev != nil {
		if err := e.consistent(ctx, tr, chainPrev, chainPrevCP, cp); err != nil {
			return nil, err
		}
		meta.Previous, meta.PreviousSize = chainPrev.Meta.Date, chainPrevCP.Size
		p, err := tr.ConsistencyProof(ctx, chainPrevCP.Size, cp.Size)
		if err != nil {
			return nil, err
		}
		prf = p2a(p)
	}
	var pending *snapshot.Pending
	if e.cfg.PendingURL != "" {
		if pending, err = e.fetchPending(ctx); err != nil {
			return nil, fetchErr(err)
		}
	}
	if err := e.commit(m, cp.Size); err != nil {
		return nil, err
	}
	if err := e.writeTrust(); err != nil {
		return nil, err
	}
	if err := snapshot.Write(e.dir.Root, &snapshot.Snapshot{Meta: meta, Checkpoint: raw, Proof: prf, Pending: pending}); err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "export: snapshot written", "snapshot", today, "previous_size", m, "fetched", fetched)
	return &Result{Snapshot: &meta, Fetched: fetched}, nil
}

// compare checks a new checkpoint against the newest snapshot before
// anything is downloaded.
func (e *Exporter) compare(latest *snapshot.Snapshot, old, cp *trust.Checkpoint) error {
	switch {
	case cp.Origin != old.Origin:
		return e.inconsistent(latest, cp, fmt.Sprintf("origin changed from %q to %q", old.Origin, cp.Origin))
	case cp.Size < old.Size:
		return e.inconsistent(latest, cp, fmt.Sprintf("the log shrank from size %d (snapshot %s) to %d", old.Size, latest.Meta.Date, cp.Size))
	case cp.Size == old.Size && cp.Root != old.Root:
		return e.inconsistent(latest, cp, fmt.Sprintf("split view: two roots for size %d (snapshot %s has %s, the log now %s)",
			cp.Size, latest.Meta.Date, b64(old.Root[:]), b64(cp.Root[:])))
	}
	return nil
}

// consistent checks that the verified tree at cp contains the snapshot's
// tree, with an RFC 6962 consistency proof computed from the tiles.
func (e *Exporter) consistent(ctx context.Context, tr *tree.Tree, s *snapshot.Snapshot, old, cp *trust.Checkpoint) error {
	if old.Size == 0 {
		return nil
	}
	r, err := tr.Root(ctx, old.Size)
	if err != nil {
		return err
	}
	if r != old.Root {
		return e.inconsistent(s, cp, fmt.Sprintf("the log's tree of size %d does not contain snapshot %s (size %d): its root at that size is %s, the snapshot's %s",
			cp.Size, s.Meta.Date, old.Size, b64(r[:]), b64(old.Root[:])))
	}
	p, err := tr.ConsistencyProof(ctx, old.Size, cp.Size)
	if err != nil {
		return err
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(old.Size), uint64(cp.Size), p2b(p), old.Root[:], cp.Root[:]); err != nil {
		return e.inconsistent(s, cp, fmt.Sprintf("consistency proof %d→%d does not verify: %v", old.Size, cp.Size, err))
	}
	return nil
}

// verifyFailed classifies a staged-tile failure: a disagreement with
// tiles verified earlier is a rewritten history; anything else is a bad
// download, whose staged tiles are dropped so the next run fetches them
// again.
func (e *Exporter) verifyFailed(ctx context.Context, err error, r tiles.Reader, latest *snapshot.Snapshot, old, cp *trust.Checkpoint) error {
	var te *tiles.Error
	if errors.As(err, &te) && te.Fork && latest != nil {
		return e.inconsistent(latest, cp, err.Error())
	}
	if errors.Is(err, tiles.ErrRoot) && latest != nil && old.Size > 0 {
		if tr, oerr := tiles.Open(ctx, r, cp.Size); oerr == nil {
			if root, rerr := tr.Root(ctx, old.Size); rerr == nil && root != old.Root {
				return e.inconsistent(latest, cp, fmt.Sprintf("the log's tiles give size %d the root %s, snapshot %s has %s",
					old.Size, b64(root[:]), latest.Meta.Date, b64(old.Root[:])))
			}
		}
	}
	if errors.As(err, &te) {
		os.Remove(filepath.Join(e.dir.StagingDir(), filepath.FromSlash(te.Path)))
	} else {
		os.RemoveAll(e.dir.StagingDir())
	}
	return &VerifyError{fmt.Errorf("downloaded tiles do not verify against the checkpoint (dropped; the next run fetches them again): %w", err)}
}

// VerifyError is a checkpoint or tile that does not verify.
type VerifyError struct{ Err error }

func (e *VerifyError) Error() string { return e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

// FetchError is a failure to read the log.
type FetchError struct{ Err error }

func (e *FetchError) Error() string { return "fetch: " + e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

func fetchErr(err error) error {
	var f *FetchError
	var v *VerifyError
	if errors.As(err, &f) || errors.As(err, &v) || errors.Is(err, context.Canceled) {
		return err
	}
	return &FetchError{err}
}

// inconsistent keeps both checkpoints under evidence/ and returns the error.
func (e *Exporter) inconsistent(s *snapshot.Snapshot, cp *trust.Checkpoint, reason string) error {
	dir := e.dir.Path(filepath.Join("evidence", e.Now().UTC().Format("20060102T150405.000000000Z")))
	for i := 2; ; i++ { // never overwrite earlier evidence
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dir = strings.TrimSuffix(dir, "-"+strconv.Itoa(i-1)) + "-" + strconv.Itoa(i)
	}
	files := map[string][]byte{
		"previous.checkpoint": s.Checkpoint,
		"new.checkpoint":      cp.Raw,
		"reason.txt":          []byte(fmt.Sprintf("previous: snapshot %s\nnew: fetched from %s at %s\n%s\n", s.Meta.Date, e.cfg.Source, e.Now().UTC().Format(time.RFC3339), reason)),
	}
	for name, data := range files {
		if err := store.WriteFile(filepath.Join(dir, name), data); err != nil {
			return fmt.Errorf("%s; and keeping the evidence failed: %w", reason, err)
		}
	}
	e.log.Error("export: inconsistent log", "reason", reason, "evidence", dir)
	return &InconsistentError{Reason: reason, Evidence: dir}
}

// commit moves the verified staged tiles of the tree n beyond m into
// place: flush the staged data, rename, flush the renames. Only then is the
// snapshot written, so a crash never leaves a snapshot (or a trusted tile)
// whose data is not on disk.
func (e *Exporter) commit(m, n int64) error {
	staged, final := e.dir.Tiles("staging"), e.dir.Tiles("")
	if err := store.SyncFS(e.dir.Root); err != nil {
		return err
	}
	for _, ref := range c2sp.Tiles(m, n) {
		if !staged.Has(ref) {
			if final.Has(ref) {
				continue
			}
			return fmt.Errorf("commit: %s neither staged nor stored", ref.Path())
		}
		to := final.File(ref)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.Rename(staged.File(ref), to); err != nil {
			return err
		}
	}
	if err := store.SyncFS(e.dir.Root); err != nil {
		return err
	}
	return os.RemoveAll(e.dir.StagingDir())
}

// writeTrust keeps the policy the snapshots were verified with.
func (e *Exporter) writeTrust() error {
	p := e.dir.Path("trust/policy")
	if old, err := os.ReadFile(p); err == nil && string(old) == string(e.trust.PolicyText) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return store.WriteFile(p, e.trust.PolicyText)
}

func p2b(p []tree.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func p2a(p []tree.Hash) [][32]byte {
	out := make([][32]byte, len(p))
	for i := range p {
		out[i] = p[i]
	}
	return out
}

func (e *Exporter) latestSnapshot() (*snapshot.Snapshot, error) {
	s, err := snapshot.Latest(os.DirFS(e.dir.Root))
	if err == nil && s == nil {
		err = errors.New("no snapshot")
	}
	return s, err
}

// Daemon exports now and then every cfg.Every until ctx ends; failures are
// logged and counted, and the next run retries.
func (e *Exporter) Daemon(ctx context.Context) error {
	if e.cfg.Every <= 0 {
		return errors.New("daemon: every must be positive")
	}
	t := time.NewTicker(e.cfg.Every)
	defer t.Stop()
	for {
		if _, err := e.Run(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.log.ErrorContext(ctx, "export failed; retrying at the next run", "err", err, "every", e.cfg.Every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
