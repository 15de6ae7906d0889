package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stellaops/tlog/mirror/export"
)

// TestExportDaemon runs the export on a short schedule: it exports, keeps
// running through a source outage (counted as fetch failures), catches up
// when the log is back and grown, and exposes it all as metrics.
func TestExportDaemon(t *testing.T) {
	logDir := t.TempDir()
	g, vkey, _ := newGenLog(t, logDir, "example.com/daemon", 0)
	g.append(t, entriesOf("d", 0, 10))
	srv := serveDir(t, logDir)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+vkey+"\nquorum none\n"), 0o600)
	dir := t.TempDir()
	now := time.Now()
	e := newExporter(t, export.Config{Source: srv.URL, Dir: dir, PolicyFile: policy, Every: 50 * time.Millisecond, Retries: 1}, &now)
	m := e.Metrics()
	scrape := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer scrape.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Daemon(ctx) }()

	waitFor := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute) // hang guard
		for {
			resp, err := scrape.Client().Get(scrape.URL)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if ok(string(b)) {
					return string(b)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics never showed %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a success", func(s string) bool { return strings.Contains(s, "mirror_export_snapshot_size 10\n") })
	srv.set("checkpoint", []byte("garbage"))
	waitFor("a failure", func(s string) bool { return !strings.Contains(s, `mirror_export_failures_total{reason="verify"} 0`) })
	srv.set("checkpoint", nil)
	g.append(t, entriesOf("d", 10, 300))
	out := waitFor("the catch-up", func(s string) bool { return strings.Contains(s, "mirror_export_snapshot_size 310\n") })
	if !strings.Contains(out, "mirror_export_lag_entries 0") || !strings.Contains(out, "mirror_export_last_success_timestamp_seconds ") {
		t.Fatalf("metrics:\n%s", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestExportProgressLines checks the progress lines an export prints when
// its stderr is not a terminal.
func TestExportProgressLines(t *testing.T) {
	logDir := t.TempDir()
	g, vkey, _ := newGenLog(t, logDir, "example.com/progress", 0)
	g.append(t, entriesOf("p", 0, 600))
	srv := serveDir(t, logDir)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+vkey+"\nquorum none\n"), 0o600)
	var out, errb bytes.Buffer
	if code := Run(t.Context(), []string{"export", "--source", srv.URL, "--dir", t.TempDir(), "--policy", policy}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "mirror: download 7/7 tiles") || !strings.Contains(errb.String(), "mirror: verify 7/7 tiles") {
		t.Fatalf("progress:\n%s", errb.String())
	}
}

// TestExportProgressBar runs the real command on a terminal (util-linux
// script(1) gives it a pty) and checks that it draws a bar in place.
func TestExportProgressBar(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is not installed: no pty to test the progress bar on")
	}
	logDir := t.TempDir()
	g, vkey, _ := newGenLog(t, logDir, "example.com/bar", 0)
	g.append(t, entriesOf("b", 0, 20*256))
	srv := serveDir(t, logDir)
	srv.delay.Store(int64(15 * time.Millisecond))
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+vkey+"\nquorum none\n"), 0o600)
	cmd := fmt.Sprintf("%s export --source %s --dir %s --policy %s --workers 1", os.Args[0], srv.URL, t.TempDir(), policy)
	c := exec.Command(scriptBin, "-q", "-e", "-c", cmd, "/dev/null")
	c.Env = append(os.Environ(), "MIRROR_TEST_MAIN=1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\rdownload [") || !strings.Contains(string(out), "] 41/41") {
		t.Fatalf("no progress bar on the terminal:\n%q", out)
	}
}
