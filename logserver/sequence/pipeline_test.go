package sequence_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stellaops/tlog/logserver/logkey"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// A fault is injected once at one step: "before" fails without effect,
// "after" takes effect and then fails, "timeout" takes effect and reports
// a deadline exceeded (the caller cannot tell it landed).
type fault struct {
	step, mode string
	after      int // calls of step that succeed first
}

var errInjected = errors.New("injected fault")

type injector struct {
	mu    sync.Mutex
	f     fault
	calls map[string]int
	fired bool
}

// at runs effect around the injected fault for step.
func (in *injector) at(step string, effect func() error) error {
	in.mu.Lock()
	n := in.calls[step]
	in.calls[step] = n + 1
	fire := !in.fired && in.f.step == step && n >= in.f.after
	if fire {
		in.fired = true
	}
	mode := in.f.mode
	in.mu.Unlock()
	if !fire {
		return effect()
	}
	switch mode {
	case "before":
		return fmt.Errorf("%s: %w", step, errInjected)
	case "after":
		if err := effect(); err != nil {
			return err
		}
		return fmt.Errorf("%s after persisting: %w", step, errInjected)
	default: // timeout
		time.Sleep(20 * time.Millisecond)
		if err := effect(); err != nil {
			return err
		}
		return fmt.Errorf("%s: %w", step, context.DeadlineExceeded)
	}
}

// fakeTrillian is an in-memory Trillian tree.
type fakeTrillian struct {
	in *injector

	mu      sync.Mutex
	byHash  map[tree.Hash]bool
	queue   []*trillian.LogLeaf
	leaves  []*trillian.LogLeaf
	rng     *compact.Range
	rf      *compact.RangeFactory
	rootNow []byte
}

func newFakeTrillian(in *injector) *fakeTrillian {
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	f := &fakeTrillian{in: in, byHash: map[tree.Hash]bool{}, rf: rf, rng: rf.NewEmptyRange(0)}
	f.rootNow = rfc6962.DefaultHasher.EmptyRoot()
	return f
}

func (f *fakeTrillian) TreeID() int64   { return 42 }
func (f *fakeTrillian) Sequences() bool { return true }
func (f *fakeTrillian) Close() error    { return nil }

func (f *fakeTrillian) QueueLeaves(_ context.Context, leaves []sequence.Leaf) ([]bool, error) {
	dup := make([]bool, len(leaves))
	return dup, f.in.at("queue", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, l := range leaves {
			if f.byHash[l.Hash] {
				dup[i] = true
				continue
			}
			f.byHash[l.Hash] = true
			f.queue = append(f.queue, &trillian.LogLeaf{LeafValue: l.Value, ExtraData: l.ExtraData,
				MerkleLeafHash: append([]byte(nil), l.Hash[:]...)})
		}
		return nil
	})
}

func (f *fakeTrillian) Integrate(_ context.Context, limit int) (int, error) {
	n := 0
	return n, f.in.at("integrate", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		n = min(limit, len(f.queue))
		for _, l := range f.queue[:n] {
			l.LeafIndex = int64(len(f.leaves))
			l.IntegrateTimestamp = timestamppb.Now()
			f.leaves = append(f.leaves, l)
			if err := f.rng.Append(l.MerkleLeafHash, nil); err != nil {
				return err
			}
		}
		f.queue = f.queue[n:]
		if n > 0 {
			root, err := f.rng.GetRootHash(nil)
			if err != nil {
				return err
			}
			f.rootNow = root
		}
		return nil
	})
}

func (f *fakeTrillian) root() types.LogRootV1 {
	return types.LogRootV1{TreeSize: uint64(len(f.leaves)), RootHash: f.rootNow}
}

func (f *fakeTrillian) Root(context.Context) (types.LogRootV1, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.root(), nil
}

func (f *fakeTrillian) Since(_ context.Context, start, maxLeaves int64, maxBytes int) (types.LogRootV1, []*trillian.LogLeaf, error) {
	var root types.LogRootV1
	var out []*trillian.LogLeaf
	return root, out, f.in.at("read", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		root = f.root()
		bytes := 0
		for i := start; i < int64(len(f.leaves)) && i < start+maxLeaves; i++ {
			if len(out) > 0 && bytes+len(f.leaves[i].LeafValue) > maxBytes {
				break
			}
			out = append(out, f.leaves[i])
			bytes += len(f.leaves[i].LeafValue)
		}
		return nil
	})
}

// fakeStore is an in-memory sequence.Store honouring its contract.
type fakeStore struct {
	in *injector

	mu      sync.Mutex
	entries []store.Entry
	tiles   map[[2]int64][]byte
	cps     map[int64]store.Checkpoint // by size: one root per size, ever
	keys    map[string][]tree.Hash
	heads   map[string]store.PublishedHead
	passes  int

	beforePublish func() // if set, runs (once) before the next Publish
}

func newFakeStore(in *injector) *fakeStore {
	return &fakeStore{in: in, tiles: map[[2]int64][]byte{}, cps: map[int64]store.Checkpoint{},
		keys: map[string][]tree.Hash{}, heads: map[string]store.PublishedHead{}}
}

func (s *fakeStore) PublishedSize(context.Context, int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.entries)), nil
}

func (s *fakeStore) LeafHashes(_ context.Context, _ int64, from, to int64) ([]tree.Hash, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tree.Hash
	for _, e := range s.entries[from:to] {
		out = append(out, e.LeafHash)
	}
	return out, nil
}

func (s *fakeStore) LatestCheckpoint(_ context.Context, _ int64, format string) (store.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp, ok := s.cps[int64(len(s.entries))]
	if !ok {
		return cp, store.ErrNotFound
	}
	return cp, nil
}

func (s *fakeStore) PublishedHead(_ context.Context, origin string, keyID [32]byte) (store.PublishedHead, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.heads[origin+string(keyID[:])]
	if !ok {
		return h, store.ErrNotFound
	}
	return h, nil
}

func (s *fakeStore) ReadTile(_ context.Context, level int, index int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.tiles[[2]int64{int64(level), index}]
	if !ok {
		return nil, store.ErrNotFound
	}
	return d, nil
}

func (s *fakeStore) Tiles(int64) tree.TileReader { return s }

func (s *fakeStore) Publish(_ context.Context, p store.Pass) error {
	if f := s.beforePublish; f != nil {
		s.beforePublish = nil
		f()
	}
	return s.in.at("store", func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range p.Heads {
			old, ok := s.heads[h.Origin+string(h.KeyID[:])]
			switch {
			case ok && old.TreeID == h.TreeID && old.Size > h.Size:
				return &store.HeadBehindError{Origin: h.Origin, Recorded: old.Size, Size: h.Size}
			case ok && (old.Size == h.Size && old.Root != h.Root || old.TreeID != h.TreeID):
				return store.ErrHeadConflict
			}
		}
		for _, e := range p.Entries {
			switch {
			case e.Index < int64(len(s.entries)):
				if s.entries[e.Index].LeafHash != e.LeafHash {
					return fmt.Errorf("entry %d stored twice with different leaves", e.Index)
				}
			case e.Index == int64(len(s.entries)):
				s.entries = append(s.entries, e)
			default:
				return fmt.Errorf("entry %d stored after a gap at %d", e.Index, len(s.entries))
			}
		}
		for _, t := range p.Tiles {
			s.tiles[[2]int64{int64(t.Level), t.Index}] = t.Data
		}
		for _, k := range p.Keys {
			s.keys[k.Key] = append(s.keys[k.Key], k.LeafHash)
		}
		if old, ok := s.cps[p.Checkpoint.TreeSize]; ok && old.RootHash != p.Checkpoint.RootHash {
			return fmt.Errorf("two roots published at size %d", p.Checkpoint.TreeSize)
		}
		s.cps[p.Checkpoint.TreeSize] = p.Checkpoint
		for _, h := range p.Heads {
			s.heads[h.Origin+string(h.KeyID[:])] = h
		}
		s.passes++
		return nil
	})
}

// faultySigner injects the "sign" step's fault.
type faultySigner struct {
	logkey.Signer
	in *injector
}

func (s faultySigner) SignDigests(ctx context.Context, d [][32]byte) ([][]byte, error) {
	var sigs [][]byte
	err := s.in.at("sign", func() (err error) {
		sigs, err = s.Signer.SignDigests(ctx, d)
		return err
	})
	return sigs, err
}

// TestFaultsAtEveryStep injects each fault at each step of the pipeline
// under concurrent writers, then restarts the log on the same state, and
// checks that every acknowledged entry is published once at one index,
// indexed by its search key, under heads that never fork.
func TestFaultsAtEveryStep(t *testing.T) {
	key, err := logkey.OpenFile(filepath.Join(t.TempDir(), "k.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"queue", "integrate", "read", "sign", "store"} {
		for _, mode := range []string{"before", "after", "timeout"} {
			t.Run(step+"/"+mode, func(t *testing.T) {
				t.Parallel()
				in := &injector{calls: map[string]int{}}
				b, st := newFakeTrillian(in), newFakeStore(in)
				state := t.TempDir()
				open := func() *sequence.Log {
					l, err := sequence.Open(context.Background(), b, st, rekor(t, faultySigner{key, in}),
						sequence.Options{StateDir: state, Interval: 5 * time.Millisecond, BatchSize: 4})
					if err != nil {
						t.Fatal(err)
					}
					return l
				}
				l := open()
				// Armed once the log is open: the first call of step that
				// follows fails.
				in.mu.Lock()
				in.f = fault{step: step, mode: mode, after: in.calls[step]}
				in.mu.Unlock()
				const n = 40
				acked := make([]*store.Entry, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						e, h, err := l.Add(ctx, []byte(fmt.Sprintf("entry %d", i)), []string{fmt.Sprintf("key-%d", i)})
						if err == nil {
							if e.Index >= h.Size {
								t.Errorf("entry %d acknowledged at %d beyond its head %d", i, e.Index, h.Size)
							}
							acked[i] = &e
						}
					}()
				}
				wg.Wait()
				if !in.fired {
					t.Fatalf("fault %s/%s never fired", step, mode)
				}
				if l.Healthy() != nil {
					// Readiness recovers by itself once the step succeeds.
					deadline := time.Now().Add(5 * time.Second)
					for l.Healthy() != nil && time.Now().Before(deadline) {
						time.Sleep(10 * time.Millisecond)
					}
					if err := l.Healthy(); err != nil {
						t.Errorf("still unhealthy after the fault passed: %v", err)
					}
				}
				l.Close()
				// A restart publishes whatever was integrated but not stored.
				l = open()
				defer l.Close()
				// Writers refused at queueing may retry: duplicates of what
				// landed, new entries otherwise.
				for i := range n {
					if acked[i] == nil {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						_, _, err := l.Add(ctx, []byte(fmt.Sprintf("entry %d", i)), []string{fmt.Sprintf("key-%d", i)})
						cancel()
						var dup *sequence.ErrDuplicate
						if err != nil && !errors.As(err, &dup) {
							t.Fatalf("retry of entry %d: %v", i, err)
						}
					}
				}
				st.mu.Lock()
				defer st.mu.Unlock()
				if len(st.entries) != n {
					t.Fatalf("%d entries stored, want %d", len(st.entries), n)
				}
				at := map[tree.Hash]int64{}
				for i, e := range st.entries {
					if _, twice := at[e.LeafHash]; twice {
						t.Fatalf("leaf published twice (%d and %d)", at[e.LeafHash], i)
					}
					at[e.LeafHash] = int64(i)
					if len(e.SET) == 0 {
						t.Errorf("entry %d stored without its SET", i)
					}
				}
				for i, e := range acked {
					if e == nil {
						continue
					}
					if idx, ok := at[e.LeafHash]; !ok || idx != e.Index {
						t.Errorf("acknowledged entry %d (index %d) lost or moved (%d, %v)", i, e.Index, idx, ok)
					}
				}
				for i := range n {
					h := rfc6962.DefaultHasher.HashLeaf([]byte(fmt.Sprintf("entry %d", i)))
					if got := st.keys[fmt.Sprintf("key-%d", i)]; len(got) == 0 || string(got[0][:]) != string(h) {
						t.Errorf("entry %d not indexed by its key", i)
					}
				}
				// Every head published is the root of the stored prefix.
				rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
				rng := rf.NewEmptyRange(0)
				for i, e := range st.entries {
					if err := rng.Append(e.LeafHash[:], nil); err != nil {
						t.Fatal(err)
					}
					if cp, ok := st.cps[int64(i+1)]; ok {
						root, _ := rng.GetRootHash(nil)
						if string(root) != string(cp.RootHash[:]) {
							t.Fatalf("checkpoint at %d is not the root of the stored entries", i+1)
						}
					}
				}
			})
		}
	}
}

// TestNeverTwoHistories publishes a history, then opens the log with the
// same key and state directory on stores that lost it (wiped), hold a
// shorter prefix of it (an older backup) or hold another history of the
// same size and longer: each is refused, and nothing is published.
func TestNeverTwoHistories(t *testing.T) {
	key, err := logkey.OpenFile(filepath.Join(t.TempDir(), "k.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	open := func(b *fakeTrillian, st *fakeStore) (*sequence.Log, error) {
		return sequence.Open(context.Background(), b, st, rekor(t, key),
			sequence.Options{StateDir: state, Interval: 5 * time.Millisecond})
	}
	fill := func(b *fakeTrillian, prefix string, n int) {
		var leaves []sequence.Leaf
		for i := range n {
			v := []byte(fmt.Sprintf("%s %d", prefix, i))
			lf := sequence.Leaf{Value: v}
			copy(lf.Hash[:], rfc6962.DefaultHasher.HashLeaf(v))
			leaves = append(leaves, lf)
		}
		if _, err := b.QueueLeaves(context.Background(), leaves); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Integrate(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	in := &injector{calls: map[string]int{}}
	b, st := newFakeTrillian(in), newFakeStore(in)
	fill(b, "history", 10)
	l, err := open(b, st)
	if err != nil {
		t.Fatal(err)
	}
	if l.Head().Size != 10 {
		t.Fatalf("head %d, want 10", l.Head().Size)
	}
	l.Close()

	for _, c := range []struct {
		name   string
		leaves int
		prefix string
	}{
		{"wiped", 0, ""},
		{"older backup", 5, "history"},
		{"another history", 10, "other"},
		{"another, longer history", 12, "other"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b2, st2 := newFakeTrillian(in), newFakeStore(in)
			if c.leaves > 0 {
				fill(b2, c.prefix, c.leaves)
			}
			l, err := open(b2, st2)
			if err == nil {
				l.Close()
				t.Fatal("opened on a store that lost or replaced the published history")
			}
			if !errors.Is(err, sequence.ErrForked) {
				t.Fatalf("open: %v, want ErrForked", err)
			}
			if st2.passes != 0 {
				t.Fatalf("%d passes published before refusing", st2.passes)
			}
		})
	}
	// The original store, grown, still opens: the records only go forward.
	fill(b, "history more", 3)
	l, err = open(b, st)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Head().Size != 13 {
		t.Fatalf("head %d, want 13", l.Head().Size)
	}
}

// TestLateReplica: with remote Trillian another replica of the tree may
// have recorded a head larger than the one this replica is publishing. The
// late head is published (the record stays) when Trillian has reached the
// record; when it has not, the tree lost entries and publishing stops.
func TestLateReplica(t *testing.T) {
	for _, c := range []struct {
		name        string
		treeReached bool
	}{{"tree reached the record", true}, {"tree behind the record", false}} {
		t.Run(c.name, func(t *testing.T) {
			key, err := logkey.OpenFile(filepath.Join(t.TempDir(), "k.pem"), true)
			if err != nil {
				t.Fatal(err)
			}
			in := &injector{calls: map[string]int{}}
			b, st := newFakeTrillian(in), newFakeStore(in)
			open := func() (*sequence.Log, error) {
				return sequence.Open(context.Background(), b, st, rekor(t, key),
					sequence.Options{StateDir: t.TempDir(), Interval: 5 * time.Millisecond})
			}
			fill := func(n int) {
				var leaves []sequence.Leaf
				for range n {
					v := fmt.Appendf(nil, "leaf %d", len(b.leaves)+len(leaves))
					lf := sequence.Leaf{Value: v}
					copy(lf.Hash[:], rfc6962.DefaultHasher.HashLeaf(v))
					leaves = append(leaves, lf)
				}
				if _, err := b.QueueLeaves(context.Background(), leaves); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Integrate(context.Background(), n); err != nil {
					t.Fatal(err)
				}
			}
			fill(10)
			l, err := open()
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			// Trillian at 12: this replica's next pass publishes 12, while
			// (just before it is stored) another replica, having seen 15,
			// records 15.
			fill(2)
			st.beforePublish = func() {
				if c.treeReached {
					fill(3)
				}
				st.mu.Lock()
				for k, h := range st.heads {
					h.Size, h.Root = 15, tree.Hash{1}
					st.heads[k] = h
				}
				st.mu.Unlock()
			}
			l, err = open()
			if !c.treeReached {
				if !errors.Is(err, sequence.ErrForked) {
					t.Fatalf("open with the record ahead of the tree: %v, want ErrForked", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open behind another replica: %v", err)
			}
			defer l.Close()
			if got := l.Head().Size; got != 12 {
				t.Fatalf("published head %d, want 12 (behind the record, which stays)", got)
			}
			for _, h := range st.heads {
				if h.Size != 15 {
					t.Fatalf("record moved back to %d", h.Size)
				}
			}
		})
	}
}

// blockingTrillian holds every queue transaction until released.
type blockingTrillian struct {
	*fakeTrillian
	release chan struct{}
}

func (b blockingTrillian) QueueLeaves(ctx context.Context, leaves []sequence.Leaf) ([]bool, error) {
	<-b.release
	return b.fakeTrillian.QueueLeaves(ctx, leaves)
}

// TestOverloadAndTimeouts: while queueing is stalled, writers past the
// bounds are refused at once (ErrOverloaded), entries over the cap get
// TooLargeError, and writers that time out are published and indexed
// anyway once the stall ends.
func TestOverloadAndTimeouts(t *testing.T) {
	key, err := logkey.OpenFile(filepath.Join(t.TempDir(), "k.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	in := &injector{calls: map[string]int{}}
	b := blockingTrillian{newFakeTrillian(in), make(chan struct{})}
	st := newFakeStore(in)
	l, err := sequence.Open(context.Background(), b, st, rekor(t, key), sequence.Options{StateDir: t.TempDir(),
		Interval: 5 * time.Millisecond, MaxPending: 3, MaxPendingBytes: 1 << 20, MaxEntryBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var big *sequence.TooLargeError
	if _, _, err := l.Add(context.Background(), make([]byte, 4097), nil); !errors.As(err, &big) {
		t.Fatalf("entry over the cap: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if _, _, err := l.Add(ctx, []byte(fmt.Sprintf("stalled %d", i)), []string{fmt.Sprintf("stalled-%d", i)}); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("stalled writer %d: %v, want a timeout", i, err)
			}
		}()
	}
	time.Sleep(30 * time.Millisecond)
	if _, _, err := l.Add(context.Background(), []byte("one too many"), nil); !errors.Is(err, sequence.ErrOverloaded) {
		t.Fatalf("writer past the bound: %v, want ErrOverloaded", err)
	}
	wg.Wait()
	close(b.release)
	deadline := time.Now().Add(5 * time.Second)
	for l.Head().Size < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.Head().Size != 3 {
		t.Fatalf("head %d after the stall, want the 3 timed-out entries", l.Head().Size)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := range 3 {
		if len(st.keys[fmt.Sprintf("stalled-%d", i)]) != 1 {
			t.Errorf("timed-out entry %d not indexed", i)
		}
	}
}

// lyingTrillian reports a root its leaves do not give.
type lyingTrillian struct{ *fakeTrillian }

func (b lyingTrillian) Since(ctx context.Context, start, maxLeaves int64, maxBytes int) (types.LogRootV1, []*trillian.LogLeaf, error) {
	root, leaves, err := b.fakeTrillian.Since(ctx, start, maxLeaves, maxBytes)
	root.RootHash = make([]byte, 32)
	return root, leaves, err
}

// TestFatalStops: an integrity failure stops publishing once: the waiting
// writer and every later one get ErrStopped at once (not a timeout),
// readiness says why, and nothing is stored.
func TestFatalStops(t *testing.T) {
	key, err := logkey.OpenFile(filepath.Join(t.TempDir(), "k.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	in := &injector{calls: map[string]int{}}
	st := newFakeStore(in)
	l, err := sequence.Open(context.Background(), lyingTrillian{newFakeTrillian(in)}, st, rekor(t, key),
		sequence.Options{StateDir: t.TempDir(), Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := l.Add(ctx, []byte("first"), nil); !errors.Is(err, sequence.ErrStopped) {
		t.Fatalf("writer waiting at an integrity failure: %v, want ErrStopped", err)
	}
	if err := l.Healthy(); !errors.Is(err, sequence.ErrStopped) || !strings.Contains(err.Error(), "INTEGRITY") {
		t.Fatalf("readiness after an integrity failure: %v", err)
	}
	start := time.Now()
	if _, _, err := l.Add(ctx, []byte("second"), nil); !errors.Is(err, sequence.ErrStopped) || time.Since(start) > time.Second {
		t.Fatalf("writer after the stop: %v after %v, want ErrStopped at once", err, time.Since(start))
	}
	if st.passes != 0 {
		t.Fatalf("%d passes stored after an integrity failure", st.passes)
	}
}
