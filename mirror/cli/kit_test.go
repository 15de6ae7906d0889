package cli

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/mirror/export"
)

// kitFixture is a mirror of a generated, 2-of-2 witnessed log with three
// daily snapshots, and its kit unpacked into a directory.
type kitFixture struct {
	g         *genLog
	logVKey   string
	wvkeys    []string
	srv       *fileServer
	mirrorDir string
	kitFile   string
	manifest  string // the digest `mirror kit` printed
	policy    string
}

func newKitFixture(t *testing.T) *kitFixture {
	t.Helper()
	logDir := t.TempDir()
	g, vkey, wv := newGenLog(t, logDir, "example.com/gen", 2)
	f := &kitFixture{g: g, logVKey: vkey, wvkeys: wv, mirrorDir: t.TempDir()}
	f.srv = serveDir(t, logDir)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, fmt.Appendf(nil, "log %s\nwitness A %s\nwitness B %s\ngroup both all A B\nquorum both\n", vkey, wv[0], wv[1]), 0o600)
	now := day1
	e := newExporter(t, export.Config{Source: f.srv.URL, Dir: f.mirrorDir, PolicyFile: policy}, &now)
	for i, n := range []int{3, 600, 70} {
		g.append(t, entriesOf("gen", len(g.entries), n))
		if _, err := e.Run(t.Context()); err != nil {
			t.Fatalf("export %d: %v", i, err)
		}
		now = now.Add(24 * time.Hour)
	}
	f.kitFile = filepath.Join(t.TempDir(), "kit.tar.gz")
	out := mustRun(t, "kit", "--dir", f.mirrorDir, "--out", f.kitFile)
	_, after, _ := strings.Cut(out, "SHA-256 ")
	f.manifest, _, _ = strings.Cut(after, " ")
	f.policy = policy
	return f
}

// unpacked returns a fresh unpacked copy of the kit.
func (f *kitFixture) unpacked(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustRunT(t, "tar", "-xzf", f.kitFile, "-C", dir)
	return dir
}

// remanifest rewrites MANIFEST.sha256 after tampering, so the deeper
// checks must catch it.
func remanifest(t *testing.T, dir string) {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(dir, "MANIFEST.sha256"))
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		_, name, _ := strings.Cut(line, "  ")
		d, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256(d), name)
	}
	os.WriteFile(filepath.Join(dir, "MANIFEST.sha256"), b.Bytes(), 0o644)
}

func TestKitVerify(t *testing.T) {
	f := newKitFixture(t)
	out := mustRun(t, "verify", "--kit", f.kitFile)
	if !strings.Contains(out, "VERIFIED: 3 snapshots") {
		t.Fatalf("verify:\n%s", out)
	}
	if code, out := runCode("verify", "--kit", f.kitFile, "--json"); code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("verify --json: %d\n%s", code, out)
	}

	// What the auditor holds apart from the kit: the manifest digest and the policy.
	mustRun(t, "verify", "--kit", f.kitFile, "--manifest-sha256", f.manifest, "--policy", f.policy)
	if code, out := runCode("verify", "--kit", f.kitFile, "--manifest-sha256", strings.Repeat("0", 64)); code != ExitFail || !strings.Contains(out, "not the pinned") {
		t.Fatalf("wrong manifest digest: %d\n%s", code, out)
	}
	_, otherLog, _ := newGenLog(t, t.TempDir(), "example.com/gen", 0)
	otherPolicy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(otherPolicy, []byte("log "+otherLog+"\nquorum none\n"), 0o600)
	if code, out := runCode("verify", "--kit", f.kitFile, "--policy", otherPolicy); code != ExitFail || !strings.Contains(out, "differs from the pinned policy") || !strings.Contains(out, "not signed by a log key") {
		t.Fatalf("kit for another policy: %d\n%s", code, out)
	}

	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		remake bool   // rewrite the manifest so the deeper checks must catch it
		want   string // in the report
	}{
		{"altered file, manifest kept", func(t *testing.T, dir string) {
			appendTo(t, filepath.Join(dir, "tile/entries/000"), "x")
		}, false, "tile/entries/000: SHA-256"},
		{"added file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "tile/extra"), []byte("x"), 0o644)
		}, false, "tile/extra: not in the manifest"},
		{"dropped cosignature", func(t *testing.T, dir string) {
			dropLine(t, filepath.Join(dir, "snapshots/2026-11-29/checkpoint"), "— witness.test/w2 ")
		}, true, "witness quorum \"both\" not met"},
		{"swapped root", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "snapshots/2026-11-29/checkpoint")
			cp, _ := os.ReadFile(p)
			lines := strings.SplitN(string(cp), "\n", 4)
			lines[2] = b64(make([]byte, 32))
			os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644)
		}, true, "invalid signature by a trusted key"},
		{"truncated tile", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tile/0/001")
			d, _ := os.ReadFile(p)
			os.WriteFile(p, d[:len(d)-100], 0o644)
		}, true, "tile/0/001: truncated"},
		{"altered tile", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tile/0/001")
			d, _ := os.ReadFile(p)
			d[40] ^= 1
			os.WriteFile(p, d, 0o644)
		}, true, "tile/1/000.p/2: hash 1 is not the root of tile/0/001"},
		{"modified entry", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tile/entries/001")
			d, _ := os.ReadFile(p)
			d[5] ^= 1
			os.WriteFile(p, d, 0o644)
		}, true, "entry 0 (log index 256) does not hash to its leaf hash"},
		{"forked snapshot", func(t *testing.T, dir string) {
			// The log signs a second tree of the same size for day 2: a
			// perfectly signed and witnessed checkpoint of another history.
			other := sha256.Sum256([]byte("another tree"))
			cp := f.g.sign(t, 603, other)
			os.WriteFile(filepath.Join(dir, "snapshots/2026-11-29/checkpoint"), cp, 0o644)
			meta := filepath.Join(dir, "snapshots/2026-11-29/snapshot.json")
			m, _ := os.ReadFile(meta)
			m = []byte(strings.Replace(string(m), rootOf(t, f.mirrorDir, "2026-11-29"), b64(other[:]), 1))
			os.WriteFile(meta, m, 0o644)
		}, true, "forks from snapshot 2026-11-28"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := f.unpacked(t)
			c.tamper(t, dir)
			if c.remake {
				remanifest(t, dir)
			}
			code, out := runCode("verify", "--kit", dir)
			if code != ExitFail || !strings.Contains(out, c.want) || !strings.Contains(out, "NOT VERIFIED") {
				t.Fatalf("exit %d, want 1 and %q in:\n%s", code, c.want, out)
			}
		})
	}
}

func rootOf(t *testing.T, dir, date string) string {
	t.Helper()
	cp, err := os.ReadFile(filepath.Join(dir, "snapshots", date, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(cp), "\n")[2]
}

func appendTo(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}

func dropLine(t *testing.T, p, prefix string) {
	t.Helper()
	d, _ := os.ReadFile(p)
	var kept []string
	for _, l := range strings.SplitAfter(string(d), "\n") {
		if !strings.HasPrefix(l, prefix) {
			kept = append(kept, l)
		}
	}
	if len(kept) == len(strings.SplitAfter(string(d), "\n")) {
		t.Fatalf("no line %q in %s", prefix, p)
	}
	os.WriteFile(p, []byte(strings.Join(kept, "")), 0o644)
}

func mustRunT(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := execCommand(name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}
