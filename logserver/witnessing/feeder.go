package witnessing

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/logserver/tree"
)

// Defaults of Config.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxParallel    = 8
	DefaultMinRetry       = 5 * time.Second
	DefaultMaxRetry       = 5 * time.Minute
	DefaultMaxClockSkew   = 10 * time.Minute
	DefaultQuorumGrace    = 250 * time.Millisecond
	// DefaultMinInterval paces rounds: a witness gets at most one
	// checkpoint per 100 ms (10/s) however fast the log publishes heads,
	// a fifth of the witness's default budget of 20/s.
	DefaultMinInterval = 100 * time.Millisecond
)

// NoteSigner is the log a Feeder works for, as far as checkpoints go: its
// origin, its note key's vkey and the signing of a checkpoint for a tree
// head. CheckpointSigner (the logserver's Ed25519 note key) implements it;
// any log with a C2SP checkpoint (e.g. a tiles log) can.
type NoteSigner interface {
	// Origin is the checkpoint origin line.
	Origin() string
	// VerifierKey is the vkey of the signatures SignCheckpoint makes.
	VerifierKey() string
	// SignCheckpoint returns the signed note of the checkpoint of the
	// tree head (size, root) with origin Origin and no extension lines.
	SignCheckpoint(size int64, root [32]byte) ([]byte, error)
}

// ProofFunc returns the RFC 6962 consistency proof from tree size old to
// size n (0 < old < n), ordered as RFC 6962 / tlog-witness expect.
type ProofFunc func(ctx context.Context, old, n int64) ([][32]byte, error)

// TreeProofs adapts the logserver's Merkle tree to a ProofFunc.
func TreeProofs(t *tree.Tree) ProofFunc {
	return func(ctx context.Context, old, n int64) ([][32]byte, error) {
		p, err := t.ConsistencyProof(ctx, old, n)
		if err != nil {
			return nil, err
		}
		out := make([][32]byte, len(p))
		for i := range p {
			out[i] = p[i]
		}
		return out, nil
	}
}

// Head is a tree head of the log: what Update takes.
type Head struct {
	Size int64
	Root [32]byte
}

// Checkpoint is a C2SP checkpoint with the cosignatures collected for it.
type Checkpoint struct {
	Size int64
	Root [32]byte
	// Note is the signed note: text, the log's Ed25519 signature, then one
	// cosignature line per witness in Cosigners (policy order).
	Note      []byte
	Cosigners []string // policy names of the witnesses whose verified cosignatures Note carries
	QuorumMet bool
	Published time.Time // zero if not published (Collect) or unknown (loaded from an old row)
}

// Config configures a Feeder.
type Config struct {
	// Policy lists the witnesses and the quorum. nil means no witnesses and
	// quorum none: every head is published signed by the log alone.
	Policy *Policy
	// Signer signs the log's C2SP checkpoints (e.g. *CheckpointSigner).
	Signer NoteSigner
	// Proofs returns consistency proofs of the log's tree (see TreeProofs).
	Proofs ProofFunc
	// Store keeps every published checkpoint version and the last size of
	// each witness.
	Store Store
	// Client sends the add-checkpoint requests. nil: a client with
	// keep-alive that does not follow redirects.
	Client *http.Client
	// RequestTimeout bounds one add-checkpoint request (default 10s).
	RequestTimeout time.Duration
	// MaxParallel bounds concurrent requests to witnesses (default 8).
	MaxParallel int
	// MinRetry and MaxRetry bound the exponential backoff before a witness
	// that failed is tried again (defaults 5s and 5m). A 429 or 503
	// Retry-After is honoured within MaxRetry.
	MinRetry, MaxRetry time.Duration
	// MaxClockSkew is how far a cosignature timestamp may be from our
	// clock (default 10m); outside it the cosignature is refused.
	MaxClockSkew time.Duration
	// MinInterval is the least time between two checkpoints sent to one
	// witness after it cosigned (default DefaultMinInterval): heads that
	// arrive meanwhile are coalesced into the next round.
	MinInterval time.Duration
	// QuorumGrace is how long a round waits, once the quorum is met, for
	// the other witnesses before publishing (default 250ms); their
	// cosignatures are published later as a new version of the same size.
	QuorumGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Feeder is the log side of witnessing: it signs the newest tree head as a
// C2SP checkpoint, feeds it to every witness of the policy with
// c2sp.org/tlog-witness add-checkpoint (in parallel, with the consistency
// proof from the size each witness last accepted, resending from the size a
// 409 reports), verifies the cosignatures, and publishes the checkpoint with
// the cosignatures appended once the policy's quorum is met: saved in the
// Store, then returned by Latest and served by Handler.
//
// Rounds: every witness gets the same signed checkpoint (so cosignatures
// coincide). The checkpoint is published when the round's requests are all
// done, or QuorumGrace after the quorum was met if some witness is slower;
// a straggler's cosignature is published later as a new version of the same
// size. The next round takes the newest head (heads coalesce: intermediate
// heads are skipped) and feeds every witness that is not still busy.
//
// A witness that fails (down, timeout, 5xx, 4xx, bad cosignature) is
// retried with exponential backoff on the newest checkpoint, from the last
// size it accepted, so it catches up when it returns; meanwhile the log goes
// on and publishes whenever the others meet the quorum. Failures are logged
// and counted; nothing here blocks the log's write path.
//
// The size each witness last cosigned (or reported in a 409) is saved in
// the Store and loaded by New, so a restart sends the right old size at
// once. A witness that reports a size larger than the log's is counted
// (logserver_witness_ahead, outcome "ahead"), logged once per episode and
// retried with backoff (asking with old 0, so it reports its size again);
// it recovers when it is repaired or the log catches up.
type Feeder struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	verifier  note.Verifier // the log key, to check notes given to Collect and loaded
	witnesses []*witnessState
	wake      chan struct{}
	sem       chan struct{}  // bounds requests in flight
	inflight  sync.WaitGroup // exchanges, including stragglers

	mu            sync.Mutex
	pending       *Head
	cur           *target
	publishFailed bool
	quorumWasMet  bool // only touched by step (Run's goroutine)

	pubMu  sync.Mutex
	latest atomic.Pointer[Checkpoint]
}

// target is a signed checkpoint being fed and its cosignatures.
type target struct {
	size   int64
	root   [32]byte
	note   []byte // log-signed
	text   []byte
	cosigs map[*witnessState][]byte // guarded by Feeder.mu
}

// New checks the configuration, loads the latest published checkpoint from
// the store (so /checkpoint serves it at once after a restart) and returns
// a Feeder. Call Run in a goroutine and Update after each published head.
func New(ctx context.Context, cfg Config) (*Feeder, error) {
	if cfg.Signer == nil {
		return nil, errors.New("witnessing: no checkpoint signer")
	}
	if cfg.Store == nil {
		return nil, errors.New("witnessing: no store")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = DefaultMaxParallel
	}
	if cfg.MinRetry <= 0 {
		cfg.MinRetry = DefaultMinRetry
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = DefaultMaxRetry
	}
	cfg.MaxRetry = max(cfg.MaxRetry, cfg.MinRetry)
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.QuorumGrace <= 0 {
		cfg.QuorumGrace = DefaultQuorumGrace
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 4
		cfg.Client = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	vkey := cfg.Signer.VerifierKey()
	if !cfg.Policy.HasLog(vkey) {
		return nil, fmt.Errorf("witnessing: the policy's log lines do not list this log's key %s", vkey)
	}
	if !cfg.Policy.reachable() {
		return nil, fmt.Errorf("witnessing: quorum %q cannot be met by the witnesses that have a URL", quorumName(cfg.Policy))
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	f := &Feeder{cfg: cfg, log: cfg.Logger.With(slog.String("component", "witnessing")), verifier: v,
		wake: make(chan struct{}, 1), sem: make(chan struct{}, cfg.MaxParallel)}
	var names []string
	if cfg.Policy != nil {
		for _, w := range cfg.Policy.Witnesses {
			if w.URL == "" {
				f.log.WarnContext(ctx, "witness has no URL in the policy: it is never fed", slog.String("witness", w.Name))
				continue
			}
			if cfg.Proofs == nil {
				return nil, errors.New("witnessing: no consistency proof function")
			}
			f.witnesses = append(f.witnesses, &witnessState{w: w, c: newClient(w, cfg.Client, cfg.RequestTimeout, cfg.MaxClockSkew)})
			names = append(names, w.Name)
		}
	}
	f.m = newMetrics(cfg.Registerer, names)
	f.log.InfoContext(ctx, "C2SP checkpoint witnessing", slog.String("origin", cfg.Signer.Origin()),
		slog.String("vkey", vkey), slog.Any("witnesses", names), slog.String("quorum", quorumName(cfg.Policy)))

	if len(f.witnesses) > 0 {
		sizes, err := cfg.Store.WitnessSizes(ctx)
		if err != nil {
			return nil, fmt.Errorf("witnessing: loading the witnesses' sizes: %w", err)
		}
		for _, ws := range f.witnesses {
			ws.size, ws.saved = sizes[ws.w.VKey], sizes[ws.w.VKey]
			f.m.cosignedSize.WithLabelValues(ws.w.Name).Set(float64(ws.size))
		}
	}
	st, err := cfg.Store.LatestCheckpoint(ctx)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
	case err != nil:
		return nil, fmt.Errorf("witnessing: loading the latest checkpoint: %w", err)
	default:
		if cp, err := f.loadStored(st); err != nil {
			f.log.WarnContext(ctx, "not serving the stored checkpoint (origin or key changed?)", slog.Any("error", err))
		} else {
			f.latest.Store(cp)
			f.m.publishedSize.Set(float64(cp.Size))
			if !cp.Published.IsZero() {
				f.m.publishedAt.Store(cp.Published.UnixNano())
			}
		}
	}
	return f, nil
}

// loadStored checks a stored checkpoint against the log key and the policy.
func (f *Feeder) loadStored(st StoredCheckpoint) (*Checkpoint, error) {
	n, err := note.Open(st.Note, note.VerifierList(f.verifier))
	if err != nil {
		return nil, err
	}
	origin, size, root, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	if origin != f.cfg.Signer.Origin() || size != st.Size || root != st.Root {
		return nil, fmt.Errorf("stored checkpoint %q/%d does not match its row or the origin %q", origin, size, f.cfg.Signer.Origin())
	}
	cp := &Checkpoint{Size: size, Root: root, Note: st.Note, Published: st.Created}
	if f.cfg.Policy != nil {
		for _, w := range f.cfg.Policy.Witnesses {
			for _, s := range n.UnverifiedSigs {
				if s.Name == w.KeyName && s.Hash == w.KeyID {
					if raw, err := base64.StdEncoding.DecodeString(s.Base64); err == nil && len(raw) > 4 && w.verifier.Verify([]byte(n.Text), raw[4:]) {
						cp.Cosigners = append(cp.Cosigners, w.Name)
						break
					}
				}
			}
		}
	}
	cp.QuorumMet = f.cfg.Policy.Satisfied(cp.Cosigners)
	return cp, nil
}

// Latest returns the newest published checkpoint: log-signed, carrying the
// cosignatures that met the quorum (with quorum none, possibly none). nil
// until the first publication.
func (f *Feeder) Latest() *Checkpoint { return f.latest.Load() }

// Update hands the feeder a new tree head. It never blocks: heads are
// coalesced and Run always works on the newest. Heads not larger than one
// already given are ignored.
func (f *Feeder) Update(h Head) {
	f.mu.Lock()
	if f.pending == nil || h.Size > f.pending.Size {
		f.pending = &h
		f.m.headSize.Set(float64(h.Size))
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Run feeds witnesses and publishes until ctx is cancelled; it returns nil
// once the requests in flight have ended. Run it once per Feeder.
func (f *Feeder) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer f.inflight.Wait()
	for {
		d := f.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if d == 0 {
			continue
		}
		var tc <-chan time.Time
		if d > 0 {
			timer.Reset(d)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.wake:
		case <-tc:
		}
		timer.Stop()
	}
}

// step makes one round: it takes the newest head (signing it if new),
// publishes what can be published, feeds the witnesses that are due and
// have not cosigned it, and publishes again. It returns how long to wait
// before the next step: 0 at once, -1 until Update.
func (f *Feeder) step(ctx context.Context) time.Duration {
	f.mu.Lock()
	h, cur := f.pending, f.cur
	f.mu.Unlock()
	if h != nil && (cur == nil || h.Size > cur.size) {
		t, err := f.newTarget(*h)
		if err != nil {
			f.m.publishErrors.WithLabelValues("sign").Inc()
			f.log.ErrorContext(ctx, "signing the C2SP checkpoint failed", slog.Int64("size", h.Size), slog.Any("error", err))
			return f.cfg.MinRetry
		}
		f.mu.Lock()
		f.cur, cur = t, t
		f.mu.Unlock()
	}
	if cur == nil {
		return -1
	}
	met := f.publish(ctx, cur)
	now := time.Now()
	var due []*witnessState
	f.mu.Lock()
	for _, ws := range f.witnesses {
		if _, done := cur.cosigs[ws]; !done && !ws.busy && !now.Before(ws.nextTry) {
			due = append(due, ws)
		}
	}
	f.mu.Unlock()
	if len(due) > 0 {
		f.feed(ctx, cur, due, false)
		met = f.publish(ctx, cur)
	}
	f.m.quorumMet.Set(b2f(met))
	if met != f.quorumWasMet && ctx.Err() == nil {
		f.quorumWasMet = met
		if met {
			f.log.InfoContext(ctx, "witness quorum met", slog.Int64("size", cur.size), slog.Any("cosigners", f.assemble(cur).Cosigners))
		} else {
			l := f.Latest()
			served := int64(-1)
			if l != nil {
				served = l.Size
			}
			f.log.WarnContext(ctx, "witness quorum not met: /checkpoint keeps serving an older checkpoint until witnesses return",
				slog.Int64("size", cur.size), slog.Int64("served_size", served), slog.Any("cosigners", f.assemble(cur).Cosigners),
				slog.String("quorum", quorumName(f.cfg.Policy)))
		}
	}
	return f.nextWait(cur)
}

func quorumName(p *Policy) string {
	if p == nil {
		return "none"
	}
	return p.QuorumName
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// nextWait is the delay until the next step is useful.
func (f *Feeder) nextWait(cur *target) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending != nil && f.pending.Size > cur.size {
		return 0
	}
	wait := time.Duration(-1)
	if f.publishFailed {
		wait = f.cfg.MinRetry
	}
	now := time.Now()
	for _, ws := range f.witnesses {
		if _, done := cur.cosigs[ws]; done || ws.busy {
			continue // a busy witness wakes Run when it is done
		}
		d := max(ws.nextTry.Sub(now), time.Millisecond)
		if wait < 0 || d < wait {
			wait = d
		}
	}
	return wait
}

func (f *Feeder) newTarget(h Head) (*target, error) {
	n, err := f.cfg.Signer.SignCheckpoint(h.Size, h.Root)
	if err != nil {
		return nil, err
	}
	return &target{size: h.Size, root: h.Root, note: n, text: []byte(CheckpointText(f.cfg.Signer.Origin(), h.Size, h.Root)),
		cosigs: map[*witnessState][]byte{}}, nil
}

// Collect feeds one log-signed C2SP checkpoint note (as SignCheckpoint
// makes) to every witness with a URL, ignoring backoff, waits for all of
// them and returns the checkpoint with the verified cosignatures appended
// and whether they meet the quorum. It does not publish. It updates the
// per-witness sizes and metrics as Run does.
func (f *Feeder) Collect(ctx context.Context, signed []byte) (*Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(f.verifier))
	if err != nil {
		return nil, fmt.Errorf("witnessing: checkpoint not signed by the log key: %w", err)
	}
	origin, size, root, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	if origin != f.cfg.Signer.Origin() {
		return nil, fmt.Errorf("witnessing: checkpoint origin %q, want %q", origin, f.cfg.Signer.Origin())
	}
	t := &target{size: size, root: root, note: signed, text: []byte(n.Text), cosigs: map[*witnessState][]byte{}}
	f.feed(ctx, t, f.witnesses, true)
	return f.assemble(t), nil
}

// assemble returns the target's note with its cosignatures, in policy order.
func (f *Feeder) assemble(t *target) *Checkpoint {
	cp := &Checkpoint{Size: t.size, Root: t.root}
	b := bytes.NewBuffer(append([]byte(nil), t.note...))
	f.mu.Lock()
	for _, ws := range f.witnesses {
		if line, ok := t.cosigs[ws]; ok {
			b.Write(line)
			cp.Cosigners = append(cp.Cosigners, ws.w.Name)
		}
	}
	f.mu.Unlock()
	cp.Note = b.Bytes()
	cp.QuorumMet = f.cfg.Policy.Satisfied(cp.Cosigners)
	return cp
}

// publish saves and serves the target if it meets the quorum and improves
// on the latest publication (larger tree, or same tree with more
// cosignatures). It reports whether the target meets the quorum.
func (f *Feeder) publish(ctx context.Context, t *target) bool {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	cp := f.assemble(t)
	if !cp.QuorumMet {
		return false
	}
	if ctx.Err() != nil {
		return true // shutting down
	}
	if l := f.latest.Load(); l != nil {
		if cp.Size == l.Size && cp.Root != l.Root {
			f.log.ErrorContext(ctx, "refusing to publish a second root for a published size", slog.Int64("size", cp.Size))
			return true
		}
		if cp.Size < l.Size || (cp.Size == l.Size && len(cp.Cosigners) <= len(l.Cosigners)) {
			return true
		}
	}
	if err := f.cfg.Store.SaveCheckpoint(ctx, cp.Size, cp.Root, cp.Note); err != nil {
		f.m.publishErrors.WithLabelValues("store").Inc()
		f.log.ErrorContext(ctx, "storing the C2SP checkpoint failed; /checkpoint keeps the previous one",
			slog.Int64("size", cp.Size), slog.Any("error", err))
		f.mu.Lock()
		f.publishFailed = true
		f.mu.Unlock()
		return true
	}
	f.mu.Lock()
	f.publishFailed = false
	f.mu.Unlock()
	cp.Published = time.Now()
	f.latest.Store(cp)
	f.m.publishedSize.Set(float64(cp.Size))
	f.m.publishedAt.Store(cp.Published.UnixNano())
	f.log.DebugContext(ctx, "published C2SP checkpoint", slog.Int64("size", cp.Size), slog.Any("cosigners", cp.Cosigners))
	return true
}

// feed sends t to the witnesses in parallel (at most MaxParallel requests
// in flight in the whole Feeder) and records their cosignatures in t.
//
// With waitAll, it returns when every witness has answered or failed
// (Collect). Otherwise (Run) it also returns QuorumGrace after the
// cosignatures met the quorum: witnesses still in flight are stragglers that
// finish in the background, publish what they add (same checkpoint, more
// cosignatures) and wake Run, which feeds them the newest checkpoint next.
// A slow or hung witness therefore never holds back newer heads.
func (f *Feeder) feed(ctx context.Context, t *target, ws []*witnessState, waitAll bool) {
	results := make(chan bool, len(ws))
	var returned atomic.Bool
	f.mu.Lock()
	for _, w := range ws {
		w.busy = true
	}
	f.mu.Unlock()
	for _, w := range ws {
		f.inflight.Add(1)
		go func() {
			defer f.inflight.Done()
			ok := false
			select {
			case f.sem <- struct{}{}:
				ok = f.exchange(ctx, w, t)
				<-f.sem
			case <-ctx.Done():
			}
			f.mu.Lock()
			w.busy = false
			f.mu.Unlock()
			if ok && returned.Load() {
				f.publish(ctx, t)
			}
			results <- ok
			if returned.Load() {
				select {
				case f.wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	defer returned.Store(true)
	var grace <-chan time.Time
	for pending := len(ws); pending > 0; {
		select {
		case ok := <-results:
			pending--
			if ok && !waitAll && grace == nil && f.assemble(t).QuorumMet {
				tm := time.NewTimer(f.cfg.QuorumGrace)
				defer tm.Stop()
				grace = tm.C
			}
		case <-grace:
			return
		}
	}
}
