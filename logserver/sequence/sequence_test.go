package sequence_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/extension"
	tlog "github.com/google/trillian/log"
	"github.com/google/trillian/monitoring"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/server"
	"github.com/google/trillian/server/admin"
	"github.com/google/trillian/storage/mysql"
	"github.com/google/trillian/util/clock"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/grpc"

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/logserver/logkey"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
	sqlschema "github.com/stellaops/tlog/sql"
	"github.com/stellaops/tlog/testing/stack"
)

type fixture struct {
	dsn    string
	db     *sql.DB
	store  *store.Store
	signer *logkey.File
	state  string // published-head records
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "log")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	schema, err := migrate.TrillianSchemaFile("")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.ApplyTrillian(ctx, db, schema); err != nil {
		t.Fatal(err)
	}
	if err := migrate.Apply(ctx, db, sqlschema.FS, "logserver", "logserver"); err != nil {
		t.Fatal(err)
	}
	key, err := logkey.OpenFile(filepath.Join(t.TempDir(), "k.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dsn: dsn, db: db, store: store.New(db), signer: key, state: t.TempDir()}
}

// rekor is the Rekor v1 notary over s.
func rekor(t *testing.T, s logkey.Signer) sequence.Notary {
	t.Helper()
	n, err := sequence.NewRekor(s, "test")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// openWith opens the log with signer s and options o (state dir filled in).
func (f *fixture) openWith(t *testing.T, b sequence.Backend, s logkey.Signer, o sequence.Options) (*sequence.Log, error) {
	t.Helper()
	if o.StateDir == "" {
		o.StateDir = f.state
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	return sequence.Open(context.Background(), b, sequence.MySQLStore(f.store), rekor(t, s), o)
}

// embedded opens the embedded Trillian backend (treeID 0: a new tree),
// closed when the test ends.
func (f *fixture) embedded(t *testing.T, treeID int64, conns int) *sequence.Embedded {
	t.Helper()
	b, err := sequence.OpenEmbedded(context.Background(), f.dsn, treeID, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func (f *fixture) open(t *testing.T, b sequence.Backend) *sequence.Log {
	t.Helper()
	l, err := f.openWith(t, b, f.signer, sequence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkEntry verifies an entry's inclusion proof against the head and that
// it carries a SET (SETs are verified with Rekor's code in testing/e2e).
func checkEntry(t *testing.T, l *sequence.Log, e store.Entry, h *sequence.Head) {
	t.Helper()
	p, err := l.Tree().InclusionProof(context.Background(), e.Index, h.Size)
	if err != nil {
		t.Fatal(err)
	}
	hs := make([][]byte, len(p))
	for i := range p {
		hs[i] = p[i][:]
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(e.Index), uint64(h.Size), rfc6962.DefaultHasher.HashLeaf(e.Body), hs, h.Root[:]); err != nil {
		t.Fatalf("entry %d: %v", e.Index, err)
	}
	if len(e.SET) == 0 {
		t.Fatalf("entry %d has no SET", e.Index)
	}
}

// TestRecoverIntegratedButUnpublished simulates a crash after Trillian
// integrated leaves but before the logserver stored and published them: the
// next Open must publish them with SETs, and the log continues after them.
func TestRecoverIntegratedButUnpublished(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.embedded(t, 0, 8)
	var values [][]byte
	var leaves []sequence.Leaf
	for i := 0; i < 300; i++ {
		v := []byte(fmt.Sprintf(`{"leaf":%d}`, i))
		values = append(values, v)
		lf := sequence.Leaf{Value: v}
		copy(lf.Hash[:], rfc6962.DefaultHasher.HashLeaf(v))
		leaves = append(leaves, lf)
	}
	if _, err := b.QueueLeaves(ctx, leaves); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 300; {
		k, err := b.Integrate(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	if got, _ := f.store.PublishedSize(ctx, b.TreeID()); got != 0 {
		t.Fatalf("published before Open: %d", got)
	}

	l := f.open(t, b)
	defer l.Close()
	h := l.Head()
	if h.Size != 300 {
		t.Fatalf("head size after recovery = %d, want 300", h.Size)
	}
	for _, i := range []int64{0, 255, 256, 299} {
		e, err := f.store.EntryByIndex(ctx, b.TreeID(), i)
		if err != nil {
			t.Fatal(err)
		}
		checkEntry(t, l, e, h)
	}
	// A leaf queued before the crash but never integrated is published too.
	e, h2, err := l.Add(ctx, []byte(`{"leaf":"after"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Index != 300 || h2.Size != 301 {
		t.Fatalf("next entry at %d (head %d), want 300 (301)", e.Index, h2.Size)
	}
	// Duplicates of recovered entries are refused.
	var dup *sequence.ErrDuplicate
	if _, _, err := l.Add(ctx, values[7], nil); !errors.As(err, &dup) {
		t.Fatalf("duplicate: %v", err)
	}
}

// TestConcurrentAddsAndRestart adds entries from many goroutines, checks
// indexes are dense and proofs verify, then reopens the log on the same
// database and checks the head and tiles are restored.
func TestConcurrentAddsAndRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.embedded(t, 0, 16)
	l := f.open(t, b)
	const n = 600
	seen := make([]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 24; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 24 {
				e, h, err := l.Add(ctx, []byte(fmt.Sprintf("entry %d", i)), []string{fmt.Sprintf("key%d", i%3)})
				if err != nil {
					errs <- err
					return
				}
				if e.Index >= h.Size {
					errs <- fmt.Errorf("entry %d not covered by head %d", e.Index, h.Size)
				}
				mu.Lock()
				if seen[e.Index] {
					errs <- fmt.Errorf("index %d given twice", e.Index)
				}
				seen[e.Index] = true
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h := l.Head()
	if h.Size != n {
		t.Fatalf("head %d, want %d", h.Size, n)
	}
	hits, err := f.store.LookupIndex(ctx, "key1")
	if err != nil || len(hits) != n/3 {
		t.Fatalf("index key1: %d hits, %v", len(hits), err)
	}
	l.Close()
	b.Close()

	b2 := f.embedded(t, b.TreeID(), 8)
	l2 := f.open(t, b2)
	h2 := l2.Head()
	if h2.Size != h.Size || h2.Root != h.Root {
		t.Fatalf("restored head %d/%x, want %d/%x", h2.Size, h2.Root, h.Size, h.Root)
	}
	cp, err := l2.Tree().ConsistencyProof(ctx, 100, n)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := l2.Tree().Root(ctx, 100)
	hs := make([][]byte, len(cp))
	for i := range cp {
		hs[i] = cp[i][:]
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 100, n, hs, old[:], h2.Root[:]); err != nil {
		t.Fatal(err)
	}
	e, _, err := l2.Add(ctx, []byte("after restart"), nil)
	if err != nil || e.Index != n {
		t.Fatalf("add after restart: index %d, %v", e.Index, err)
	}
	l2.Close()

	// Another log key for the same tree is refused: clients pin the key.
	other, err := logkey.OpenFile(filepath.Join(t.TempDir(), "other.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.openWith(t, b2, other, sequence.Options{StateDir: t.TempDir()}); !errors.Is(err, sequence.ErrKeyChanged) {
		t.Fatalf("open with another key: %v, want ErrKeyChanged", err)
	}
}

// TestRemoteTrillian runs the log against real Trillian gRPC servers (log
// server and sequencer over the same MariaDB), as operators who scale out do.
func TestRemoteTrillian(t *testing.T) {
	f := newFixture(t)
	addr := startTrillian(t, f.dsn)
	ctx := context.Background()
	b, err := sequence.DialRemote(ctx, addr, 0, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l := f.open(t, b)
	defer l.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e, h, err := l.Add(ctx, []byte(fmt.Sprintf("remote %d", i)), nil)
			if err == nil && e.Index >= h.Size {
				err = fmt.Errorf("entry %d beyond head %d", e.Index, h.Size)
			}
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := l.Head().Size; got != 40 {
		t.Fatalf("head %d, want 40", got)
	}
	var dup *sequence.ErrDuplicate
	if _, _, err := l.Add(ctx, []byte("remote 3"), nil); !errors.As(err, &dup) {
		t.Fatalf("duplicate through remote Trillian: %v", err)
	}
	want := sha256.Sum256(append([]byte{0}, []byte("remote 3")...))
	if dup.LeafHash != want {
		t.Fatalf("duplicate names %x, want %x", dup.LeafHash, want)
	}
}

func startTrillian(t *testing.T, dsn string) string {
	t.Helper()
	db, err := mysql.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	mf := monitoring.InertMetricFactory{}
	reg := extension.Registry{AdminStorage: mysql.NewAdminStorage(db), LogStorage: mysql.NewLogStorage(db, mf),
		QuotaManager: quota.Noop(), MetricFactory: mf}
	srv := grpc.NewServer()
	trillian.RegisterTrillianLogServer(srv, server.NewTrillianLogRPCServer(reg, clock.System))
	trillian.RegisterTrillianAdminServer(srv, admin.New(reg, []trillian.TreeType{trillian.TreeType_LOG}))
	ctx, cancel := context.WithCancel(context.Background())
	om := tlog.NewOperationManager(tlog.OperationInfo{Registry: reg, BatchSize: 1000, NumWorkers: 1,
		RunInterval: 20 * time.Millisecond, TimeSource: clock.System}, tlog.NewSequencerManager(reg, 0))
	done := make(chan struct{})
	go func() { om.OperationLoop(ctx); close(done) }()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Stop()
		db.Close()
	})
	return lis.Addr().String()
}

// badKeySigner signs with the wrong key while broken is set.
type badKeySigner struct {
	good, bad *logkey.File
	broken    atomic.Bool
}

func (s *badKeySigner) Public() crypto.PublicKey { return s.good.Public() }

func (s *badKeySigner) SignDigests(ctx context.Context, d [][sha256.Size]byte) ([][]byte, error) {
	if s.broken.Load() {
		return s.bad.SignDigests(ctx, d)
	}
	return s.good.SignDigests(ctx, d)
}

// TestSignerWithWrongKey: signatures that do not verify under the log key
// are never stored or served; the write path reports unhealthy and resumes
// when the signer is right again, publishing what was waiting.
func TestSignerWithWrongKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.embedded(t, 0, 8)
	bad, err := logkey.OpenFile(filepath.Join(t.TempDir(), "bad.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := &badKeySigner{good: f.signer, bad: bad}
	l, err := f.openWith(t, b, s, sequence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.Add(ctx, []byte("first"), nil); err != nil {
		t.Fatal(err)
	}
	s.broken.Store(true)
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := l.Add(tctx, []byte("second"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("add with a wrong-key signer: %v, want a timeout", err)
	}
	if l.Healthy() == nil {
		t.Error("write path reports healthy while the signer signs with the wrong key")
	}
	if n, _ := f.store.PublishedSize(ctx, b.TreeID()); n != 1 || l.Head().Size != 1 {
		t.Fatalf("published %d entries (head %d) with a wrong-key signer, want 1", n, l.Head().Size)
	}
	s.broken.Store(false)
	e, h, err := l.Add(ctx, []byte("third"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Index != 2 || h.Size != 3 {
		t.Fatalf("after the signer recovered: entry %d, head %d; want 2 and 3 (the waiting entry published too)", e.Index, h.Size)
	}
	for i := int64(0); i < 3; i++ {
		se, err := f.store.EntryByIndex(ctx, b.TreeID(), i)
		if err != nil {
			t.Fatal(err)
		}
		if len(se.SET) == 0 {
			t.Fatalf("entry %d has no SET", i)
		}
	}
}

// TestRemoteTrillianLargeLeaves: range reads of leaves that together exceed
// gRPC's default 4 MiB receive limit (a backlog of large entries) are
// chunked and bounded, so publishing goes on.
func TestRemoteTrillianLargeLeaves(t *testing.T) {
	f := newFixture(t)
	addr := startTrillian(t, f.dsn)
	ctx := context.Background()
	b, err := sequence.DialRemote(ctx, addr, 0, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := f.openWith(t, b, f.signer, sequence.Options{MaxPassBytes: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := make([]byte, 1<<20)
			v[0] = byte(i)
			if _, _, err := l.Add(ctx, v, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := l.Head().Size; got != 8 {
		t.Fatalf("head %d, want 8", got)
	}
}
