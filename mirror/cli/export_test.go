package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/mirror/snapshot"
	"github.com/stellaops/tlog/mirror/trust"
)

var day1 = time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)

// TestExportTessera mirrors a log written by tessera's posix-oneshot
// (v1.0.4) and cosigned by our witness binary over two days, then checks
// the snapshot chain, idempotence, a dropped cosignature and a split view.
func TestExportTessera(t *testing.T) {
	const origin = "example.com/tessera-mirror"
	l := newTessera(t, origin)
	w := startWitness(t, "witness.test/w1", origin, l.vkey)
	l.witnessedBy(w)
	l.add("one", 5)
	srv := serveDir(t, l.storage)
	policy := writePolicy(t, l.vkey, w)
	dir := t.TempDir()
	now := day1
	cfg := export.Config{Source: srv.URL, Dir: dir, PolicyFile: policy, Workers: 4}
	e := newExporter(t, cfg, &now)

	res, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot.Size != 5 || res.Snapshot.Date != "2026-11-28" || len(res.Snapshot.Witnesses) != 1 {
		t.Fatalf("day 1: %+v", res.Snapshot)
	}
	// Same day, same log: nothing to do, nothing fetched.
	before := srv.requests.Load()
	if res, err = e.Run(t.Context()); err != nil || !res.UpToDate {
		t.Fatalf("rerun: %+v %v", res, err)
	}
	if got := srv.requests.Load() - before; got != 1 {
		t.Fatalf("rerun made %d requests, want 1 (the checkpoint)", got)
	}

	l.add("two", 300)
	now = day1.Add(24 * time.Hour)
	before = srv.requests.Load()
	res, err = e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot.Size != 305 || res.Snapshot.Previous != "2026-11-28" || res.Snapshot.PreviousSize != 5 {
		t.Fatalf("day 2: %+v", res.Snapshot)
	}
	// Only the new tiles: bundles 0 (grown) and 1, level-0 tiles 0 and 1,
	// level-1 tile 0, and the checkpoint.
	if got := srv.requests.Load() - before; got != 6 {
		t.Fatalf("day 2 made %d requests, want 6", got)
	}
	s, err := snapshot.Read(os.DirFS(dir), "2026-11-29")
	if err != nil || len(s.Proof) == 0 {
		t.Fatalf("day 2 snapshot: %+v %v", s, err)
	}

	checkServe(t, dir, l.vkey, policy, 2)

	// A checkpoint whose cosignature was dropped is refused; nothing changes.
	cp, _ := os.ReadFile(filepath.Join(l.storage, "checkpoint"))
	lines := strings.SplitAfter(string(cp), "\n")
	var kept []string
	for _, ln := range lines {
		if !strings.HasPrefix(ln, "— "+w.Name+" ") {
			kept = append(kept, ln)
		}
	}
	srv.set("checkpoint", []byte(strings.Join(kept, "")))
	now = now.Add(24 * time.Hour)
	_, err = e.Run(t.Context())
	var q *trust.QuorumError
	if !errors.As(err, &q) || !strings.Contains(err.Error(), "W1") {
		t.Fatalf("dropped cosignature: %v", err)
	}
	srv.set("checkpoint", nil)
	if ds, _ := snapshot.List(os.DirFS(dir)); len(ds) != 2 {
		t.Fatalf("snapshots after refusal: %v", ds)
	}

	// A split view: another tree under the same key and origin, as big.
	fork := newTessera(t, origin)
	fork.keyFile = l.keyFile
	fork.add("other", 305)
	fsrv := serveDir(t, fork.storage)
	cfgFork := cfg
	cfgFork.PolicyFile = writePolicy(t, l.vkey) // the fork is not witnessed
	var inc *export.InconsistentError
	cfgFork.Source = fsrv.URL
	ef := newExporter(t, cfgFork, &now)
	_, err = ef.Run(t.Context())
	if !errors.As(err, &inc) || !strings.Contains(err.Error(), "split view") {
		t.Fatalf("split view: %v", err)
	}
	for _, f := range []string{"previous.checkpoint", "new.checkpoint", "reason.txt"} {
		if _, err := os.Stat(filepath.Join(inc.Evidence, f)); err != nil {
			t.Errorf("evidence: %v", err)
		}
	}

	// The fork grows: its tree does not contain our snapshot.
	fork.add("more", 10)
	_, err = ef.Run(t.Context())
	if !errors.As(err, &inc) {
		t.Fatalf("forked history: %v", err)
	}
	t.Logf("fork: %v", err)
}

// TestExportRewrittenHistory: the log, under its key, rewrites entries a
// snapshot covers in a full tile and keeps growing. The new upper tile no
// longer commits to the tile the mirror verified: a rewritten history,
// refused with evidence, and nothing of it published.
func TestExportRewrittenHistory(t *testing.T) {
	dirA := t.TempDir()
	g, vkey, _ := newGenLog(t, dirA, "example.com/rewrite", 0)
	g.append(t, entriesOf("a", 0, 600))
	srv := serveDir(t, dirA)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+vkey+"\nquorum none\n"), 0o600)
	dir := t.TempDir()
	now := day1
	if _, err := newExporter(t, export.Config{Source: srv.URL, Dir: dir, PolicyFile: policy}, &now).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	fork := &genLog{dir: dirB, skey: g.skey, tr: tree.New(nil, 1<<10)}
	fork.append(t, append(entriesOf("b", 0, 256), g.entries[256:]...))
	fork.append(t, entriesOf("a", 600, 400))
	now = now.Add(24 * time.Hour)
	_, err := newExporter(t, export.Config{Source: serveDir(t, dirB).URL, Dir: dir, PolicyFile: policy}, &now).Run(t.Context())
	var inc *export.InconsistentError
	if !errors.As(err, &inc) || !strings.Contains(err.Error(), "tile/1/000.p/3: hash 0 is not the root of tile/0/000, which an earlier snapshot verified") {
		t.Fatalf("rewritten history: %v", err)
	}
	if ds, _ := snapshot.List(os.DirFS(dir)); len(ds) != 1 {
		t.Fatalf("snapshots: %v", ds)
	}
	for _, p := range []string{"tile/0/003.p/232", "staging"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Fatalf("%s of the rewritten history was kept", p)
		}
	}
}

// TestExportPartialTilesGone: the log deleted the partial tiles of the
// checkpoint's size because the full tiles exist (tlog-tiles allows it);
// the export cuts them from the full tiles.
func TestExportPartialTilesGone(t *testing.T) {
	logDir := t.TempDir()
	g, vkey, _ := newGenLog(t, logDir, "example.com/partial", 0)
	g.append(t, entriesOf("p", 0, 400))
	root400, _ := g.tr.Root(t.Context(), 400)
	cp400 := g.sign(t, 400, root400)
	g.append(t, entriesOf("p", 400, 112)) // 512: tile 1 is full
	os.WriteFile(filepath.Join(logDir, "checkpoint"), cp400, 0o644)
	for _, p := range []string{"tile/0/001.p/144", "tile/entries/001.p/144"} {
		if err := os.Remove(filepath.Join(logDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	srv := serveDir(t, logDir)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+vkey+"\nquorum none\n"), 0o600)
	now := day1
	dir := t.TempDir()
	res, err := newExporter(t, export.Config{Source: srv.URL, Dir: dir, PolicyFile: policy}, &now).Run(t.Context())
	if err != nil || res.Snapshot.Size != 400 {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tile/entries/001.p/144")); err != nil {
		t.Fatal(err)
	}
	// Later the same day the log has grown: the day's snapshot is replaced,
	// and the next day's is proven from it.
	e := newExporter(t, export.Config{Source: srv.URL, Dir: dir, PolicyFile: policy}, &now)
	cp512 := g.sign(t, 512, mustRoot(t, g, 512))
	os.WriteFile(filepath.Join(logDir, "checkpoint"), cp512, 0o644)
	if res, err := e.Run(t.Context()); err != nil || res.Snapshot.Size != 512 || res.Snapshot.Date != "2026-11-28" || res.Snapshot.Previous != "" {
		t.Fatalf("same day, grown: %+v %v", res, err)
	}
	g.append(t, entriesOf("p", 512, 10))
	now = now.Add(24 * time.Hour)
	if res, err := e.Run(t.Context()); err != nil || res.Snapshot.Previous != "2026-11-28" || res.Snapshot.PreviousSize != 512 {
		t.Fatalf("next day: %+v %v", res, err)
	}
	if ds, _ := snapshot.List(os.DirFS(dir)); len(ds) != 2 {
		t.Fatalf("snapshots %v", ds)
	}
}

func mustRoot(t *testing.T, g *genLog, n int64) tree.Hash {
	t.Helper()
	r, err := g.tr.Root(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
