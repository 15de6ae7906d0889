package witnessing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/witness/api"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/store"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// memStore is the in-memory Store of the tests: every version kept.
type memStore struct {
	mu       sync.Mutex
	versions []StoredCheckpoint
	sizes    map[string]int64
	fail     atomic.Bool
}

func (s *memStore) WitnessSizes(ctx context.Context) (map[string]int64, error) {
	if s.fail.Load() {
		return nil, errors.New("database down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.sizes))
	for k, v := range s.sizes {
		out[k] = v
	}
	return out, nil
}

func (s *memStore) SaveWitnessSize(ctx context.Context, vkey string, size int64) error {
	if s.fail.Load() {
		return errors.New("database down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sizes == nil {
		s.sizes = make(map[string]int64)
	}
	s.sizes[vkey] = size
	return nil
}

func (s *memStore) SaveCheckpoint(ctx context.Context, size int64, root [32]byte, note []byte) error {
	if s.fail.Load() {
		return errors.New("database down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions = append(s.versions, StoredCheckpoint{Size: size, Root: root, Note: append([]byte(nil), note...), Created: time.Now()})
	return nil
}

func (s *memStore) LatestCheckpoint(ctx context.Context) (StoredCheckpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *StoredCheckpoint
	for i := range s.versions {
		if best == nil || s.versions[i].Size >= best.Size {
			best = &s.versions[i]
		}
	}
	if best == nil {
		return StoredCheckpoint{}, ErrNoCheckpoint
	}
	return *best, nil
}

func (s *memStore) all() []StoredCheckpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StoredCheckpoint(nil), s.versions...)
}

// testTree is the logserver's real Merkle tree over in-memory tiles.
type testTree struct {
	mu    sync.Mutex
	tiles map[[2]int64][]byte
	t     *tree.Tree
}

func newTestTree() *testTree {
	tt := &testTree{tiles: map[[2]int64][]byte{}}
	tt.t = tree.New(tt, 16)
	return tt
}

func (tt *testTree) ReadTile(ctx context.Context, level int, index int64) ([]byte, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	d, ok := tt.tiles[[2]int64{int64(level), index}]
	if !ok {
		return nil, fmt.Errorf("tile %d/%d not stored", level, index)
	}
	return d, nil
}

// grow appends leaves up to size n and returns the head.
func (tt *testTree) grow(t *testing.T, n int64) Head {
	t.Helper()
	var leaves []tree.Hash
	for i := tt.t.Size(); i < n; i++ {
		leaves = append(leaves, tree.Hash(sha256.Sum256(append([]byte{0}, fmt.Sprintf("leaf %d", i)...))))
	}
	for _, tile := range tt.t.Append(leaves) {
		tt.mu.Lock()
		tt.tiles[[2]int64{int64(tile.Level), tile.Index}] = tile.Data
		tt.mu.Unlock()
	}
	root, err := tt.t.Root(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return Head{Size: n, Root: root}
}

// realWitness is our witness (package witness) served over real HTTP. When
// down, it drops every connection without answering, like a dead host.
type realWitness struct {
	name string
	vkey string
	url  string
	st   *store.Store
	down atomic.Bool
	srv  *httptest.Server
}

func startRealWitness(t *testing.T, name, origin, logVKey string) *realWitness {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "witness.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddLog(store.Log{Origin: origin, VerifierKeys: []string{logVKey}, Source: "test", Added: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := cosig.NewSigner(name, key)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := tlogwitness.New(st, signer, tlogwitness.Options{Logger: quiet})
	h := api.New(api.Config{Witness: w, Logger: quiet})
	rw := &realWitness{name: name, vkey: signer.VerifierKey(), st: st}
	rw.srv = httptest.NewServer(http.HandlerFunc(func(wr http.ResponseWriter, r *http.Request) {
		if rw.down.Load() {
			dropConnection(wr)
			return
		}
		h.ServeHTTP(wr, r)
	}))
	rw.url = rw.srv.URL
	t.Cleanup(func() {
		rw.srv.Close()
		st.Close()
	})
	return rw
}

// size is the size of the witness's latest cosigned checkpoint (0 if none).
func (rw *realWitness) size(t *testing.T, origin string) uint64 {
	t.Helper()
	cp, err := rw.st.Checkpoint(store.ID(origin))
	if errors.Is(err, store.ErrNoCheckpoint) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("no hijacker")
	}
	c, _, err := hj.Hijack()
	if err == nil {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}

// fakeWitness answers add-checkpoint with handle.
func fakeWitness(t *testing.T, handle http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handle)
	t.Cleanup(srv.Close)
	return srv.URL
}

type env struct {
	origin string
	key    ed25519.PrivateKey
	signer *CheckpointSigner
	tree   *testTree
	store  *memStore
	reg    *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	origin := "log.stella.example/" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	s, err := NewCheckpointSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	return &env{origin: origin, key: key, signer: s, tree: newTestTree(), store: &memStore{}, reg: prometheus.NewRegistry()}
}

// feeder builds a Feeder over the env with the policy text; retries are
// immediate so that step() can be driven synchronously.
func (e *env) feeder(t *testing.T, policy string) *Feeder {
	t.Helper()
	var p *Policy
	if policy != "" {
		var err error
		if p, err = ParsePolicy([]byte(policy)); err != nil {
			t.Fatal(err)
		}
	}
	e.reg = prometheus.NewRegistry()
	f, err := New(context.Background(), Config{
		Policy: p, Signer: e.signer, Proofs: TreeProofs(e.tree.t), Store: e.store,
		MinRetry: time.Nanosecond, MaxRetry: time.Nanosecond, MinInterval: time.Nanosecond, RequestTimeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: e.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func requests(t *testing.T, f *Feeder, witness, outcome string) float64 {
	t.Helper()
	return testutil.ToFloat64(f.m.requests.WithLabelValues(witness, outcome))
}

// waitFor polls cond until it holds; the deadline only guards against a
// hung test, no assertion depends on timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
