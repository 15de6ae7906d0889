package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/store"
)

// TestExportKillResume kills the real command (SIGKILL) in the middle of a
// slow download, checks that nothing unverified was published, and that
// the next run resumes: it fetches only what the first run had not staged.
func TestExportKillResume(t *testing.T) {
	logDir := t.TempDir()
	g, vkey, _ := newGenLog(t, logDir, "example.com/resume", 0)
	g.append(t, entriesOf("r", 0, 40*256+7))
	srv := serveDir(t, logDir)
	srv.delay.Store(int64(40 * time.Millisecond))
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+vkey+"\nquorum none\n"), 0o600)
	dir := t.TempDir()
	args := []string{"export", "--source", srv.URL, "--dir", dir, "--policy", policy, "--workers", "1"}
	total := len(c2sp.Tiles(0, int64(len(g.entries))))

	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MIRROR_TEST_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(dir, "staging")
	deadline := time.Now().Add(2 * time.Minute) // hang guard
	for {
		fs, _ := store.Files(staging)
		if len(fs) >= 20 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	staged, _ := store.Files(staging)
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); err == nil {
		t.Fatal("a snapshot was written by the killed run")
	}
	if _, err := os.Stat(filepath.Join(dir, "tile")); err == nil {
		t.Fatal("unverified tiles were published by the killed run")
	}

	srv.delay.Store(0)
	before := srv.requests.Load()
	out := mustRun(t, append(args, "--workers", "4")...)
	fetched := int(srv.requests.Load()-before) - 1 // the checkpoint
	if !strings.Contains(out, "size 10247") || fetched > total-len(staged) || fetched <= 0 {
		t.Fatalf("resume fetched %d of %d tiles with %d staged:\n%s", fetched, total, len(staged), out)
	}
	t.Logf("killed after %d of %d tiles staged; the resumed run fetched %d", len(staged), total, fetched)
	if code, out := runCode("verify", "--kit", dir); code != ExitFail || !strings.Contains(out, "no MANIFEST.sha256") || strings.Contains(out, "FAIL snapshot") {
		t.Fatalf("the mirror directory (not a kit) should verify except for the manifest:\n%s", out)
	}
}
