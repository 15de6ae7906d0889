package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/mirror/kit"
	"github.com/stellaops/tlog/mirror/snapshot"
)

// An export from our logserver with --pending-url keeps the entries not
// yet replayed to its (unreachable) upstream as pending.json in the
// snapshot; the kit lists it in its manifest and `verify --kit` reports
// their count and the oldest one's age without failing; an altered
// pending.json fails the manifest check.
func TestKitListsPendingEntries(t *testing.T) {
	r := newRekorLogWith(t, func(c *config.Config) {
		// Nothing listens on port 9: the upstream is unreachable.
		c.Upstream = &config.Upstream{V1: &config.UpstreamLog{URL: "http://127.0.0.1:9", PublicKeyFile: c.Key.PublicKeyFile}}
	})
	r.add(t, "pending", 7)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+r.vkey+"\nquorum none\n"), 0o600)
	dir := t.TempDir()
	now := time.Now()
	e := newExporter(t, export.Config{Source: r.ls.URL, Kind: export.KindRekorV1, Dir: dir, PolicyFile: policy,
		PendingURL: r.ls.URL + "/api/v1/upstream/entries?limit=3"}, &now) // three pages
	res, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Read(os.DirFS(dir), res.Snapshot.Date)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending == nil || s.Pending.Count != 7 || len(s.Pending.Entries) != 7 || s.Pending.Oldest == nil {
		t.Fatalf("pending.json: %+v", s.Pending)
	}
	seen := map[string]bool{}
	for _, p := range s.Pending.Entries {
		if p.Log != "v1" || len(p.LeafHash) != 64 || p.LocalIndex == nil || p.Status != "transparency_pending" || seen[p.LeafHash] {
			t.Fatalf("pending entry %+v", p)
		}
		seen[p.LeafHash] = true
	}

	kitFile := filepath.Join(t.TempDir(), "kit.tar")
	mustRun(t, "kit", "--dir", dir, "--out", kitFile)
	out := mustRun(t, "verify", "--kit", kitFile)
	if !strings.Contains(out, "VERIFIED: 1 snapshots") || !strings.Contains(out, "PENDING upstream replay: 7 entries not yet in the upstream log") {
		t.Fatalf("verify:\n%s", out)
	}
	var rep kit.Report
	if err := json.Unmarshal([]byte(mustRun(t, "verify", "--kit", kitFile, "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Pending == nil || rep.Pending.Count != 7 || rep.Pending.OldestAgeHours <= 0 || rep.Pending.Snapshot != res.Snapshot.Date {
		t.Fatalf("verdict pending %+v ok %v", rep.Pending, rep.OK)
	}

	// The list is covered by the manifest.
	k, err := kit.Open(kitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	pj := filepath.Join(k.Root, "snapshots", res.Snapshot.Date, "pending.json")
	data, err := os.ReadFile(pj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pj, []byte(strings.Replace(string(data), `"count": 7`, `"count": 6`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep := kit.Verify(t.Context(), k, kit.Pins{}); rep.OK || !strings.Contains(strings.Join(rep.Errors, "\n"), "pending.json: SHA-256") {
		t.Fatalf("altered pending.json: %+v", rep.Errors)
	}
}
