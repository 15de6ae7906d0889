package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/mirror/store"
	"github.com/stellaops/tlog/mirror/tiles"
	"github.com/stellaops/tlog/testing/stack"
)

// TestMain runs the command line instead of the tests when MIRROR_TEST_MAIN
// is set (the kill-and-resume test runs the real command as a child).
func TestMain(m *testing.M) {
	if os.Getenv("MIRROR_TEST_MAIN") == "1" {
		os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	dir, err := os.MkdirTemp("", "mirror-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod")
		}
		dir = filepath.Dir(dir)
	}
}

var (
	witnessOnce sync.Once
	witnessBin  string
	witnessErr  error
)

// buildWitness builds our witness binary once per test process.
func buildWitness(t *testing.T) string {
	t.Helper()
	witnessOnce.Do(func() {
		dir, err := os.MkdirTemp("", "witness-bin-")
		if err != nil {
			witnessErr = err
			return
		}
		witnessBin = filepath.Join(dir, "witness")
		cmd := exec.Command("go", "build", "-tags", "batched_queue", "-o", witnessBin, "./witness/cmd/witness")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			witnessErr = fmt.Errorf("build witness: %v\n%s", err, out)
		}
	})
	if witnessErr != nil {
		t.Fatal(witnessErr)
	}
	return witnessBin
}

// witness is our witness binary, running.
type witness struct {
	URL, VKey, Name string
}

// startWitness starts our witness for one log (origin, log vkey).
func startWitness(t *testing.T, name, origin, logVKey string) *witness {
	t.Helper()
	bin := buildWitness(t)
	dir := t.TempDir()
	out, err := exec.Command(bin, "keygen", "-name", name, "-out", filepath.Join(dir, "w.key")).Output()
	if err != nil {
		t.Fatalf("witness keygen: %v", err)
	}
	vkey := strings.TrimSpace(string(out))
	cfg := filepath.Join(dir, "witness.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "name: %s\nkey_file: w.key\ndb_file: w.db\nlisten: 127.0.0.1:0\nbudget: {rate: 1000, burst: 1000}\nlog_format: json\nlogs:\n  - origin: %q\n    vkeys: [%q]\n",
		name, origin, logVKey), 0o600)
	cmd := exec.Command(bin, "serve", "-c", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		addr := ""
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			if rec["msg"] == "listening" && rec["server"] == "public" {
				addr, _ = rec["addr"].(string)
			}
			if rec["msg"] == "witness started" {
				started <- addr
			}
		}
	}()
	select {
	case addr := <-started:
		return &witness{URL: "http://" + addr, VKey: vkey, Name: name}
	case <-time.After(2 * time.Minute): // hang guard
		t.Fatal("witness did not start")
	}
	return nil
}

// tessera is a log written by tessera's posix-oneshot.
type tessera struct {
	t                   *testing.T
	bin, dir, storage   string
	origin, vkey, skey  string
	keyFile, policyFile string
	n                   int
}

func newTessera(t *testing.T, origin string) *tessera {
	t.Helper()
	bin := stack.PosixOneshot.Install(t)
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	l := &tessera{t: t, bin: bin, dir: dir, storage: filepath.Join(dir, "log"), origin: origin, vkey: vkey, skey: skey,
		keyFile: filepath.Join(dir, "log.sec")}
	os.WriteFile(l.keyFile, []byte(skey), 0o600)
	return l
}

// witnessedBy makes later appends collect a cosignature from w.
func (l *tessera) witnessedBy(w *witness) {
	l.policyFile = filepath.Join(l.dir, "tessera-policy.txt")
	os.WriteFile(l.policyFile, fmt.Appendf(nil, "log %s\nwitness W %s %s\nquorum W\n", l.vkey, w.VKey, w.URL), 0o600)
}

// add appends n entries named by prefix.
func (l *tessera) add(prefix string, n int) {
	l.t.Helper()
	entries := filepath.Join(l.dir, "entries-"+prefix)
	os.Mkdir(entries, 0o700)
	for i := range n {
		os.WriteFile(filepath.Join(entries, fmt.Sprintf("%06d", i)), fmt.Appendf(nil, "%s entry %d\n", prefix, i), 0o600)
	}
	l.addDir(entries, n)
}

// addDir appends the n files of dir, in name order.
func (l *tessera) addDir(entries string, n int) {
	l.t.Helper()
	args := []string{"--storage_dir=" + l.storage, "--entries=" + filepath.Join(entries, "*"), "--private_key=" + l.keyFile}
	if l.policyFile != "" {
		args = append(args, "--witness_policy_file="+l.policyFile, "--witness_timeout=1m")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // hang guard
	defer cancel()
	if out, err := exec.CommandContext(ctx, l.bin, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("posix-oneshot: %v\n%s", err, out)
	}
	l.n += n
}

// policy writes a mirror trust policy for the log and witnesses (quorum
// all of them, or none).
func writePolicy(t *testing.T, logVKey string, ws ...*witness) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log %s\n", logVKey)
	var names []string
	for i, w := range ws {
		fmt.Fprintf(&b, "witness W%d %s\n", i+1, w.VKey)
		names = append(names, fmt.Sprintf("W%d", i+1))
	}
	if len(ws) == 0 {
		b.WriteString("quorum none\n")
	} else {
		fmt.Fprintf(&b, "group all %d %s\nquorum all\n", len(ws), strings.Join(names, " "))
	}
	p := filepath.Join(t.TempDir(), "policy.txt")
	os.WriteFile(p, []byte(b.String()), 0o600)
	return p
}

// fileServer serves dir over HTTP, counting requests; delay slows each
// tile request; override replaces a path's content.
type fileServer struct {
	URL      string
	requests atomic.Int64
	delay    atomic.Int64 // nanoseconds
	mu       sync.Mutex
	override map[string][]byte
}

func serveDir(t testing.TB, dir string) *fileServer {
	fs := &fileServer{override: map[string][]byte{}}
	h := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.requests.Add(1)
		if d := fs.delay.Load(); d > 0 && strings.HasPrefix(r.URL.Path, "/tile/") {
			time.Sleep(time.Duration(d))
		}
		fs.mu.Lock()
		data, ok := fs.override[strings.TrimPrefix(r.URL.Path, "/")]
		fs.mu.Unlock()
		if ok {
			w.Write(data)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fs.URL = srv.URL
	return fs
}

func (f *fileServer) set(path string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if data == nil {
		delete(f.override, path)
	} else {
		f.override[path] = data
	}
}

// exporter returns an exporter on a fixed clock.
func newExporter(t testing.TB, cfg export.Config, now *time.Time) *export.Exporter {
	t.Helper()
	e, err := export.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Now = func() time.Time { return *now }
	return e
}

// genLog writes a tlog-tiles log of n entries (with entries made by
// entry) to dir, signed by skey and cosigned by the cosigner skeys, and
// returns the checkpoint. It extends an existing log in dir of size from.
type genLog struct {
	dir     string
	skey    string
	cosig   []string
	entries [][]byte
	tr      *tree.Tree
}

func newGenLog(t testing.TB, dir, origin string, cosigners int) (*genLog, string, []string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	g := &genLog{dir: dir, skey: skey}
	var wvkeys []string
	for i := range cosigners {
		ws, wv, err := note.GenerateKey(rand.Reader, fmt.Sprintf("witness.test/w%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		cv, err := fnote.VKeyToCosignatureV1(wv)
		if err != nil {
			t.Fatal(err)
		}
		g.cosig = append(g.cosig, ws)
		wvkeys = append(wvkeys, cv)
	}
	g.tr = tree.New(nil, 1<<20)
	return g, vkey, wvkeys
}

// append adds entries and rewrites the tiles and the checkpoint.
func (g *genLog) append(t testing.TB, entries [][]byte) []byte {
	t.Helper()
	ft := store.FileTiles{Root: g.dir}
	m := int64(len(g.entries))
	g.entries = append(g.entries, entries...)
	hs := make([]tree.Hash, len(entries))
	for i, e := range entries {
		hs[i] = tiles.LeafHash(e)
	}
	full := g.tr.Append(hs)
	for _, tl := range full {
		put(t, ft, c2sp.TileRef{Level: tl.Level, Index: tl.Index, Width: c2sp.TileWidth}, tl.Data)
	}
	n := int64(len(g.entries))
	ctx := context.Background()
	for _, ref := range c2sp.Tiles(m, n) {
		if ref.Level == c2sp.EntriesLevel {
			var b []byte
			for _, e := range g.entries[ref.Index*256 : ref.Index*256+int64(ref.Width)] {
				b, _ = c2sp.AppendEntry(b, e)
			}
			put(t, ft, ref, b)
		} else if ref.Width < c2sp.TileWidth {
			d, err := g.tr.TileData(ctx, ref.Level, ref.Index)
			if err != nil {
				t.Fatal(err)
			}
			put(t, ft, ref, d)
		}
	}
	root, err := g.tr.Root(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	cp := g.sign(t, n, root)
	if err := os.WriteFile(filepath.Join(g.dir, "checkpoint"), cp, 0o644); err != nil {
		t.Fatal(err)
	}
	return cp
}

func (g *genLog) sign(t testing.TB, n int64, root tree.Hash) []byte {
	t.Helper()
	origin, _, _ := strings.Cut(g.skey[len("PRIVATE+KEY+"):], "+")
	s, err := note.NewSigner(g.skey)
	if err != nil {
		t.Fatal(err)
	}
	signers := []note.Signer{s}
	for _, c := range g.cosig {
		cs, err := fnote.NewSignerForCosignatureV1(c)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, cs)
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, n, b64(root[:]))
	cp, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func put(t testing.TB, ft store.FileTiles, ref c2sp.TileRef, data []byte) {
	t.Helper()
	p := ft.File(ref)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func entriesOf(prefix string, from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range n {
		out[i] = fmt.Appendf(nil, "%s entry %d", prefix, from+i)
	}
	return out
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("mirror %v: exit %d\n%s%s", args, code, out.String(), errb.String())
	}
	return out.String()
}

func runCode(args ...string) (int, string) {
	var out bytes.Buffer
	code := Run(context.Background(), args, &out, &out)
	return code, out.String()
}

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
