package cli

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/mirror/kit"
)

// BenchmarkMillion exports a generated tlog-tiles log of one million
// entries (128 bytes each, 2-of-2 witnessed) over loopback HTTP into an
// empty mirror, then verifies the mirror as an auditor would (every entry
// re-hashed, every tile checked, the root recomputed). It runs once
// whatever b.N is; run it with
//
//	go test -tags batched_queue -run XXX -bench Million -benchtime 1x ./mirror/cli/
//
// and it reports the times, leaves/s and this machine's SHA-256 rate.
func BenchmarkMillion(b *testing.B) {
	const n = 1_000_000
	logDir := b.TempDir()
	start := time.Now()
	g, vkey, wv := newGenLog(b, logDir, "example.com/million", 2)
	es := make([][]byte, n)
	for i := range es {
		e := make([]byte, 128)
		copy(e, fmt.Sprintf("entry %d", i))
		es[i] = e
	}
	g.append(b, es)
	gen := time.Since(start)
	srv := serveDir(b, logDir)
	policy := filepath.Join(b.TempDir(), "policy")
	os.WriteFile(policy, fmt.Appendf(nil, "log %s\nwitness A %s\nwitness B %s\ngroup both all A B\nquorum both\n", vkey, wv[0], wv[1]), 0o600)
	dir := b.TempDir()
	now := time.Now()
	e := newExporter(b, export.Config{Source: srv.URL, Dir: dir, PolicyFile: policy, Workers: 8}, &now)

	b.ResetTimer()
	t0 := time.Now()
	res, err := e.Run(b.Context())
	if err != nil || res.Snapshot.Size != n {
		b.Fatalf("export: %+v %v", res, err)
	}
	exp := time.Since(t0)
	t1 := time.Now()
	k, _ := kit.Open(dir)
	rep := kit.Verify(b.Context(), k, kit.Pins{})
	if len(rep.Snapshots) != 1 || len(rep.Snapshots[0].Errors) != 0 || rep.Tree == nil {
		b.Fatalf("verify: %+v", rep)
	}
	ver := time.Since(t1)
	b.StopTimer()

	// This machine's SHA-256: 64-byte messages (a Merkle node) and bulk.
	msg := make([]byte, 64)
	t2 := time.Now()
	const m = 2_000_000
	for i := range m {
		msg[0] = byte(i)
		sha256.Sum256(msg)
	}
	small := float64(m) / time.Since(t2).Seconds()
	bulk := make([]byte, 64<<20)
	t3 := time.Now()
	sha256.Sum256(bulk)
	mbps := 64 / time.Since(t3).Seconds()

	b.ReportMetric(exp.Seconds(), "export-s")
	b.ReportMetric(ver.Seconds(), "verify-s")
	b.ReportMetric(float64(n)/exp.Seconds(), "export-leaves/s")
	b.ReportMetric(float64(n)/ver.Seconds(), "verify-leaves/s")
	b.ReportMetric(small, "sha256-64B/s")
	b.Logf("1M entries: generated in %v; export %v (%.0f leaves/s, %d tiles fetched); verify %v (%.0f leaves/s); export+verify %v; SHA-256 %.2fM 64-byte hashes/s, %.0f MB/s bulk",
		gen.Round(time.Millisecond), exp.Round(time.Millisecond), float64(n)/exp.Seconds(), res.Fetched, ver.Round(time.Millisecond), float64(n)/ver.Seconds(),
		(exp + ver).Round(time.Millisecond), small/1e6, mbps)
}
