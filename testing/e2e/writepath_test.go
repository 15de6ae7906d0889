package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/app"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
	tentries "github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// bigHashedRekord is a valid hashedrekord whose canonical entry is about
// n bytes: its X.509 certificate carries a filler extension.
func bigHashedRekord(t testing.TB, artifact []byte, n int) models.ProposedEntry {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// canonical ≈ base64(PEM(DER)) ≈ DER × 16/9
	filler, _ := asn1.Marshal(make([]byte, n*9/16))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "big"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 99}, Value: filler}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(artifact)
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	pe, err := types.NewProposedEntry(context.Background(), "hashedrekord", "0.0.1", types.ArtifactProperties{
		ArtifactHash:   "sha256:" + hex.EncodeToString(d[:]),
		SignatureBytes: sig,
		PublicKeyBytes: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		PKIFormat:      "x509",
	})
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

// TestLargeEntriesConcurrently: twenty ~1 MiB entries at once (more than
// MariaDB's default 16 MiB packet in one pass) are all logged and readable.
func TestLargeEntriesConcurrently(t *testing.T) {
	e := newEnv(t)
	const n = 20
	var wg sync.WaitGroup
	type got struct {
		id   string
		a    models.LogEntryAnon
		body int
	}
	res := make([]got, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.try("POST", "/api/v1/log/entries", bigHashedRekord(t, []byte(fmt.Sprintf("big %d", i)), 1<<20))
			if err != nil || r.status != http.StatusCreated {
				t.Errorf("entry %d: %v %v", i, r, err)
				return
			}
			id, a := decodeLogEntry(t, r.body)
			res[i] = got{id, a, len(entryBody(t, a))}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	treeID := e.logInfo(t).treeID
	for i, g := range res {
		if g.body < 1<<20-64<<10 {
			t.Fatalf("entry %d: canonical body only %d bytes", i, g.body)
		}
		r := e.get(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", *g.a.LogIndex))
		wantStatus(t, "read back", r, http.StatusOK)
		id, a := decodeLogEntry(t, r.body)
		if id != g.id || a.Body != g.a.Body {
			t.Fatalf("entry %d reads back differently", i)
		}
		e.checkEntry(t, id, a, treeID)
	}
}

// TestOversizeCanonicalEntry: an entry over sequencer.max_entry_bytes gets
// 413 with the limit in the message, and nothing is stored anywhere.
func TestOversizeCanonicalEntry(t *testing.T) {
	e := newEnvWith(t, func(c *config.Config) { c.Sequencer.MaxEntryBytes = 256 << 10 })
	r := e.post(t, "/api/v1/log/entries", bigHashedRekord(t, []byte("too big"), 512<<10))
	wantError(t, "oversize canonical entry", r, http.StatusRequestEntityTooLarge, "262144")
	db, err := sql.Open("mysql", e.ls.Config.Database.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, table := range []string{"LeafData", "Unsequenced", "log_entries", "log_index"} {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d rows (%v) after a refused entry", table, n, err)
		}
	}
	r = e.post(t, "/api/v1/log/entries", bigHashedRekord(t, []byte("fits"), 128<<10))
	wantStatus(t, "entry under the cap", r, http.StatusCreated)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestWipedDatabaseRefused: a logserver whose database was wiped (a new,
// empty tree) refuses to start on the same key and state directory
// instead of signing a second history.
func TestWipedDatabaseRefused(t *testing.T) {
	e := newEnv(t)
	s := newSigner(t)
	for i := range 3 {
		e.create(t, hashedRekord(t, s, []byte(fmt.Sprintf("before wipe %d", i))))
	}
	e.ls.Stop()
	db, err := sql.Open("mysql", e.ls.Config.Database.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"DROP DATABASE rekor", "CREATE DATABASE rekor"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, e.ls.Config, quietLogger())
	if err == nil {
		a.Shutdown(ctx)
		t.Fatal("a logserver on a wiped database started")
	}
	if !errors.Is(err, sequence.ErrForked) || !strings.Contains(err.Error(), "tree") {
		t.Fatalf("start on a wiped database: %v, want a refusal naming the recorded tree", err)
	}
}

// TestSecondSequencerRefused: a second logserver on the same tree in
// embedded mode fails at start-up, naming the lease.
func TestSecondSequencerRefused(t *testing.T) {
	e := newEnv(t)
	cfg := *e.ls.Config
	cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, &cfg, quietLogger())
	if err == nil {
		a.Shutdown(ctx)
		t.Fatal("a second sequencer started on the same tree")
	}
	if !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("second sequencer: %v, want ErrLeaseHeld", err)
	}
	// The first one is unaffected.
	e.create(t, hashedRekord(t, newSigner(t), []byte("after the refused second sequencer")))
}

// TestNonDurableDatabaseRefused: start-up refuses a server that does not
// flush every commit, unless the operator allows it.
func TestNonDurableDatabaseRefused(t *testing.T) {
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "rekor")
	cfg := &config.Config{Hostname: "stella.test", Database: config.Database{DSN: dsn},
		Key: config.Key{File: filepath.Join(t.TempDir(), "k.pem"), Create: true}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, cfg, quietLogger())
	if err == nil {
		a.Shutdown(ctx)
		t.Fatal("started on a non-durable database")
	}
	if !strings.Contains(err.Error(), "innodb_flush_log_at_trx_commit is 2") {
		t.Fatalf("non-durable database: %v", err)
	}
}

// TestReadinessRecoversAfterDatabaseRestart: with MariaDB killed, /readyz
// answers 503; once it is back, readiness recovers by itself, with no new
// write, and the log (and its lease) work again.
func TestReadinessRecoversAfterDatabaseRestart(t *testing.T) {
	e := newEnv(t)
	s := newSigner(t)
	e.create(t, hashedRekord(t, s, []byte("before the database restart")))
	ready := func() int {
		r, err := e.try("GET", "/readyz", nil)
		if err != nil {
			return 0
		}
		return r.status
	}
	e.db.Kill()
	waitFor(t, 20*time.Second, "readyz 503 while the database is down", func() bool { return ready() == http.StatusServiceUnavailable })
	m, err := stack.StartMariaDB(context.Background(), e.db.Dir, stack.MariaDBOptions{Port: e.db.Port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	waitFor(t, 60*time.Second, "readyz 200 after the database is back", func() bool { return ready() == http.StatusOK })
	e.create(t, hashedRekord(t, s, []byte("after the database restart")))
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const childLogserverEnv = "STELLA_E2E_CHILD_LOGSERVER_CONFIG"

// runChildLogserver serves a logserver from a configuration file until the
// process is killed (the power-cut test's child process).
func runChildLogserver(path string) {
	cfg, err := config.Load(path)
	if err == nil {
		var a *app.App
		if a, err = app.New(context.Background(), cfg, quietLogger()); err == nil {
			var l net.Listener
			if l, err = net.Listen("tcp", cfg.Listen); err == nil {
				err = a.Serve(l)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "child logserver:", err)
	os.Exit(1)
}

// TestPowerCut kills the logserver process and MariaDB with SIGKILL under
// concurrent writes, twice, restarts both, and checks that every
// acknowledged entry is there, unchanged, and that every head a client saw
// is consistent with the final one.
func TestPowerCut(t *testing.T) {
	dir := t.TempDir()
	ports, err := stack.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	startDB := func() *stack.MariaDB {
		m, err := stack.StartMariaDB(context.Background(), filepath.Join(dir, "mariadb"), stack.MariaDBOptions{Port: ports[0], Durable: true})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := startDB()
	cfgPath := writeChildConfig(t, dir, m, ports[1])
	e := &env{ls: &stack.Logserver{URL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), PublicKeyFile: filepath.Join(dir, "log-key.pub.pem")}}
	startLS := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childLogserverEnv+"="+cfgPath)
		return startProcess(t, e, cmd)
	}
	ls := startLS()
	t.Cleanup(func() { ls.Process.Kill(); ls.Wait(); m.Stop() })

	w := &writeLoad{e: e, s: newSigner(t)}
	for cycle := range 2 {
		w.run(t, 3*time.Second, func() {
			// Power cut: both at once.
			ls.Process.Kill()
			m.Kill()
		})
		ls.Wait()
		m = startDB()
		ls = startLS()
		t.Logf("cycle %d: %d acknowledged so far", cycle, len(w.all))
	}
	w.verify(t)
}

// TestSIGTERMUnderLoad stops the real logserver binary with SIGTERM (what
// docker stop and make run send) under concurrent writes, twice: it must
// exit 0 well within the compose stop_grace_period (40s), having answered
// the writes in flight, and after a restart every entry it acknowledged
// (201) is in the log, every head seen consistent with the final one.
func TestSIGTERMUnderLoad(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "logserver")
	if out, err := exec.Command("go", "build", "-tags", "batched_queue", "-o", bin, "github.com/stellaops/tlog/logserver/cmd/logserver").CombinedOutput(); err != nil {
		t.Fatalf("build logserver: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ports, err := stack.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stack.StartMariaDB(context.Background(), filepath.Join(dir, "mariadb"), stack.MariaDBOptions{Port: ports[0], Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	cfgPath := writeChildConfig(t, dir, m, ports[1])
	e := &env{ls: &stack.Logserver{URL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), PublicKeyFile: filepath.Join(dir, "log-key.pub.pem")}}
	var stderr syncBuffer
	startLS := func() *exec.Cmd {
		cmd := exec.Command(bin, "-config", cfgPath)
		cmd.Stderr = &stderr
		return startProcess(t, e, cmd)
	}
	ls := startLS()
	t.Cleanup(func() { ls.Process.Kill(); ls.Wait() })

	w := &writeLoad{e: e, s: newSigner(t)}
	for cycle := range 2 {
		var took time.Duration
		w.run(t, 3*time.Second, func() {
			start := time.Now()
			if err := ls.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- ls.Wait() }()
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("logserver exit after SIGTERM: %v\n%s", err, stderr.String())
				}
			case <-time.After(40 * time.Second):
				t.Fatalf("logserver still running 40s after SIGTERM\n%s", stderr.String())
			}
			took = time.Since(start)
		})
		if !strings.Contains(stderr.String(), "msg=stopped") {
			t.Fatalf("no clean stop logged:\n%s", stderr.String())
		}
		ls = startLS()
		t.Logf("cycle %d: stopped in %v, %d acknowledged so far", cycle, took.Round(time.Millisecond), len(w.all))
	}
	w.verify(t)
}

// writeChildConfig writes the configuration of a logserver process on a
// new database of m, listening on port.
func writeChildConfig(t *testing.T, dir string, m *stack.MariaDB, port int) string {
	t.Helper()
	dsn, err := m.CreateDatabase(context.Background(), "rekor", "pw")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "logserver.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nhostname: stella.test\ndatabase:\n  dsn: %q\nkey:\n  file: %q\n  create: true\n  public_key_file: %q\nsequencer:\n  interval: 20ms\n",
		port, dsn, filepath.Join(dir, "log-key.pem"), filepath.Join(dir, "log-key.pub.pem"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// startProcess starts a logserver process and waits until it is ready.
func startProcess(t *testing.T, e *env, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the logserver to be ready", func() bool {
		r, err := e.try("GET", "/readyz", nil)
		return err == nil && r.status == http.StatusOK
	})
	e.connect(t)
	return cmd
}

// writeLoad keeps 8 writers submitting entries to a logserver that is
// interrupted, records every entry acknowledged (201) and every head a
// client saw, and checks them against the log in the end.
type writeLoad struct {
	e   *env
	s   *tentries.Signer
	seq atomic.Int64

	mu    sync.Mutex
	all   []ackedEntry
	heads []seenHead
}

type ackedEntry struct {
	index int64
	id    string
	body  string
}

type seenHead struct {
	size int64
	root string
}

// run writes for d, calls interrupt with the writers still writing, then
// stops them.
func (w *writeLoad) run(t *testing.T, d time.Duration, interrupt func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := []byte(fmt.Sprintf("interrupted %d", w.seq.Add(1)))
				r, err := w.e.try("POST", "/api/v1/log/entries", hashedRekord(t, w.s, a))
				if err != nil || r.status != http.StatusCreated {
					if err != nil {
						time.Sleep(10 * time.Millisecond) // down: do not spin
					}
					continue // refused, or stopped mid-request: not acknowledged
				}
				var le models.LogEntry
				if json.Unmarshal(r.body, &le) != nil {
					continue
				}
				for id, v := range le {
					var p models.InclusionProof
					if v.Verification != nil && v.Verification.InclusionProof != nil {
						p = *v.Verification.InclusionProof
					}
					w.mu.Lock()
					w.all = append(w.all, ackedEntry{*v.LogIndex, id, v.Body.(string)})
					w.heads = append(w.heads, seenHead{*p.TreeSize, *p.RootHash})
					w.mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(d)
	interrupt()
	close(stop)
	wg.Wait()
}

// verify checks every acknowledged entry is in the log, unchanged, and
// every head seen is consistent with the final one.
func (w *writeLoad) verify(t *testing.T) {
	e := w.e
	if len(w.all) < 50 {
		t.Fatalf("only %d entries acknowledged under load", len(w.all))
	}
	info := e.logInfo(t)
	final := *info.TreeSize
	finalRoot, _ := hex.DecodeString(*info.RootHash)
	for _, a := range w.all {
		r := e.get(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", a.index))
		wantStatus(t, "acknowledged entry after the interruptions", r, http.StatusOK)
		id, got := decodeLogEntry(t, r.body)
		if id != a.id || got.Body.(string) != a.body {
			t.Fatalf("entry %d changed across the interruptions", a.index)
		}
	}
	seen := map[int64]string{}
	for _, h := range w.heads {
		if prev, ok := seen[h.size]; ok && prev != h.root {
			t.Fatalf("two roots seen at size %d", h.size)
		}
		seen[h.size] = h.root
	}
	for size, rootHex := range seen {
		if size == final {
			if rootHex != *info.RootHash {
				t.Fatalf("the final head's root differs from the one seen at size %d", size)
			}
			continue
		}
		r := e.get(t, fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", size, final))
		wantStatus(t, "consistency proof", r, http.StatusOK)
		var cp models.ConsistencyProof
		if err := json.Unmarshal(r.body, &cp); err != nil {
			t.Fatal(err)
		}
		var hs [][]byte
		for _, h := range cp.Hashes {
			b, _ := hex.DecodeString(h)
			hs = append(hs, b)
		}
		old, _ := hex.DecodeString(rootHex)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(size), uint64(final), hs, old, finalRoot); err != nil {
			t.Fatalf("head seen at size %d is not consistent with the final head %d: %v", size, final, err)
		}
	}
	t.Logf("%d acknowledged entries, %d distinct heads seen, final size %d", len(w.all), len(seen), final)
}

// syncBuffer is a bytes.Buffer safe for a process's stderr and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReindex: with the index emptied, `logserver reindex` (app.Reindex)
// rebuilds it from the stored entries, and search finds them again.
func TestReindex(t *testing.T) {
	e := newEnv(t)
	s := newSigner(t)
	var uuids []string
	for i := range 3 {
		id, _ := e.create(t, hashedRekord(t, s, []byte(fmt.Sprintf("reindex %d", i))))
		uuids = append(uuids, id)
	}
	search := func() int {
		r := e.post(t, "/api/v1/index/retrieve", map[string]any{"publicKey": map[string]any{
			"format": "x509", "content": s.PubPEM}})
		wantStatus(t, "search by public key", r, http.StatusOK)
		var got []string
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := search(); n != 3 {
		t.Fatalf("search before: %d hits, want 3", n)
	}
	db, err := sql.Open("mysql", e.ls.Config.Database.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM log_index"); err != nil {
		t.Fatal(err)
	}
	if n := search(); n != 0 {
		t.Fatalf("search with the index emptied: %d hits", n)
	}
	r, err := app.Reindex(context.Background(), e.ls.Config, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries != 3 || r.Skipped != 0 || r.Keys < 3 {
		t.Fatalf("reindex: %+v", r)
	}
	if n := search(); n != 3 {
		t.Fatalf("search after reindex: %d hits, want 3 (%v)", n, uuids)
	}
}
