package queue_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stellaops/tlog/testing/stack"
)

var binDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "queue-bin")
	if err != nil {
		panic(err)
	}
	binDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// logserverBin builds the real logserver binary (once per test process).
func logserverBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "logserver")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	out, err := exec.Command("go", "build", "-tags", "batched_queue", "-o", bin, "github.com/stellaops/tlog/logserver/cmd/logserver").CombinedOutput()
	if err != nil {
		t.Fatalf("go build logserver: %v\n%s", err, out)
	}
	return bin
}

// proc is the logserver binary running on a config file.
type proc struct {
	t    *testing.T
	bin  string
	cfg  string
	url  string
	dsn  string
	dir  string
	port int
	cmd  *exec.Cmd
}

func newProc(t *testing.T, dsn string) *proc {
	t.Helper()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &proc{t: t, bin: logserverBin(t), cfg: filepath.Join(dir, "logserver.yaml"), dsn: dsn, dir: dir, port: port,
		url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	t.Cleanup(func() {
		if p.cmd != nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// start writes the configuration (drain on or off) and starts the binary.
func (p *proc) start(drain bool) {
	p.t.Helper()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
hostname: stella.test
database:
  dsn: %q
  allow_non_durable: true
key:
  file: %q
  create: true
  public_key_file: %q
sequencer:
  interval: 20ms
api:
  write_timeout: 2s
queue:
  drain: %v
  poll: 50ms
  lease: 13s
logging:
  level: warn
`, p.port, p.dsn, filepath.Join(p.dir, "log-key.pem"), filepath.Join(p.dir, "log-key.pub.pem"), drain)
	if err := os.WriteFile(p.cfg, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, "-config", p.cfg)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := http.Get(p.url + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("logserver not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) stop(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Wait()
	p.cmd = nil
}

// admin runs `logserver queue <args> -config …` and returns its output
// and exit code.
func (p *proc) admin(args ...string) (string, int) {
	p.t.Helper()
	full := append([]string{"queue", args[0], "-config", p.cfg}, args[1:]...)
	out, err := exec.Command(p.bin, full...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	return string(out), code
}

// TestQueueSurvivesSIGKILL: 300 entries are queued; the real logserver
// binary is killed with SIGKILL while it drains them, and restarted; every
// queued id ends logged exactly once: 300 distinct entries, the log holds
// 300 leaves, each row's entry verifies and is served by the log.
func TestQueueSurvivesSIGKILL(t *testing.T) {
	const n = 300
	e := &env{}
	e.m = stack.TestMariaDB(t, false)
	e.dsn = stack.TestDatabase(t, e.m, "crash")
	p := newProc(t, e.dsn)
	p.start(false)
	e.ls = &stack.Logserver{URL: p.url, PublicKeyFile: filepath.Join(p.dir, "log-key.pub.pem")}
	e.dir = p.dir
	e.connect(t)
	ids := make([]string, n)
	for i := range n {
		ids[i] = e.enqueue(t, "v1", e.v1Body(t, fmt.Sprintf("crash %d", i)), nil)
	}
	p.stop(syscall.SIGTERM)

	p.start(true)
	start := time.Now()
	for e.count(t, "SELECT COUNT(*) FROM queue_entries WHERE state = 'logged'") < 60 {
		if time.Since(start) > time.Minute {
			t.Fatal("the drainer does not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.stop(syscall.SIGKILL)
	elapsed := time.Since(start)
	// Statements the dead process had sent may still commit: let them.
	time.Sleep(time.Second)
	before := e.count(t, "SELECT COUNT(*) FROM queue_entries WHERE state = 'logged'")
	claimed := e.count(t, "SELECT COUNT(*) FROM queue_entries WHERE state = 'pending' AND claim_token IS NOT NULL")
	if before >= n {
		t.Fatalf("all %d logged before the kill: not a kill mid-drain", before)
	}
	t.Logf("SIGKILL after %v: %d of %d logged (%.0f entries/s), %d rows claimed in flight", elapsed, before, n, float64(before)/elapsed.Seconds(), claimed)

	p.start(true)
	restarted := time.Now()
	for _, id := range ids {
		waitState(t, p.url, id, "logged", 2*time.Minute)
	}
	t.Logf("restart: the remaining %d logged in %v (claims of the killed process lapse after queue.lease 13s); %v found already in the log (submitted before the kill, not yet recorded)",
		n-before, time.Since(restarted), metric(t, p.url, "logserver_queue_already_logged_total"))

	if got := e.count(t, "SELECT COUNT(DISTINCT entry_uuid) FROM queue_entries WHERE state = 'logged'"); got != n {
		t.Fatalf("%d distinct logged entries, want %d", got, n)
	}
	if got := e.count(t, "SELECT COUNT(DISTINCT log_index) FROM queue_entries WHERE state = 'logged'"); got != n {
		t.Fatalf("%d distinct log indexes, want %d", got, n)
	}
	if size := treeSize(t, p.url); size != n {
		t.Fatalf("the log holds %d leaves, want %d (nothing lost, nothing twice)", size, n)
	}
	for _, id := range ids {
		_, st := getStatus(t, p.url, id)
		uuid, _ := e.verifyV1(t, st.Entry)
		if a := do(t, "GET", p.url+"/api/v1/log/entries/"+uuid, nil, nil); a.code != http.StatusOK {
			t.Fatalf("entry %s of %s not served: %d", uuid, id, a.code)
		}
	}
	// The restarted process recorded the rest; the depth is 0.
	if got := metric(t, p.url, "attestor_rekor_success_total"); got != float64(n-before) {
		t.Fatalf("attestor_rekor_success_total %v, want %d", got, n-before)
	}
	if got := metric(t, p.url, `attestor_rekor_queue_depth{tier="graph"}`); got != 0 {
		t.Fatalf("queue depth %v", got)
	}
}

// TestAdminCommands runs `logserver queue list|cancel|drain` (the real
// binary) against the database of a real logserver process.
func TestAdminCommands(t *testing.T) {
	e := &env{}
	e.m = stack.TestMariaDB(t, false)
	e.dsn = stack.TestDatabase(t, e.m, "admin")
	p := newProc(t, e.dsn)
	p.start(false)
	e.ls = &stack.Logserver{URL: p.url, PublicKeyFile: filepath.Join(p.dir, "log-key.pub.pem")}
	e.dir = p.dir
	e.connect(t)
	a := e.enqueue(t, "v1", e.v1Body(t, "admin a"), nil)
	b := e.enqueue(t, "v1", e.v1Body(t, "admin b"), map[string]string{"X-Queue-Priority": "7"})
	c := e.enqueue(t, "v1", e.v1Body(t, "admin c"), nil)

	out, code := p.admin("list", "-state", "pending", "-json")
	if code != 0 {
		t.Fatalf("list: %d %s", code, out)
	}
	var listed []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var row struct {
			ID, State string
			Priority  int
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil || row.State != "pending" {
			t.Fatalf("list line %q: %v", sc.Text(), err)
		}
		listed = append(listed, row.ID)
	}
	if strings.Join(listed, ",") != strings.Join([]string{b, a, c}, ",") {
		t.Fatalf("list order %v, want b (priority 7), a, c", listed)
	}

	if out, code := p.admin("cancel", "-reason", "test says no", a); code != 0 || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %d %s", code, out)
	}
	if _, st := getStatus(t, p.url, a); st.Status != "cancelled" || st.LastError != "test says no" {
		t.Fatalf("cancelled row: %+v", st)
	}
	if out, code := p.admin("cancel", a); code != 1 || !strings.Contains(out, "is cancelled, not pending") {
		t.Fatalf("second cancel: %d %s", code, out)
	}
	if out, code := p.admin("cancel", strings.Repeat("0", 32)); code != 1 || !strings.Contains(out, "no such queued entry") {
		t.Fatalf("cancel of an unknown id: %d %s", code, out)
	}
	if out, code := p.admin("list", "-state", "bogus"); code != 1 {
		t.Fatalf("list -state bogus: %d %s", code, out)
	}

	// b waits an hour (as after a backoff); the drainer logs c only.
	if _, err := e.db.Exec("UPDATE queue_entries SET next_attempt_at = NOW(6) + INTERVAL 1 HOUR WHERE id = ?", b); err != nil {
		t.Fatal(err)
	}
	p.stop(syscall.SIGTERM)
	p.start(true)
	waitState(t, p.url, c, "logged", 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	if _, st := getStatus(t, p.url, b); st.Status != "transparency_pending" {
		t.Fatalf("b: %+v, want still pending", st)
	}
	if got := metric(t, p.url, `attestor_rekor_queue_depth{tier="graph"}`); got != 1 {
		t.Fatalf("depth %v, want 1", got)
	}
	out, code = p.admin("drain")
	if code != 0 || !strings.HasPrefix(out, "1 rows made due now") {
		t.Fatalf("drain: %d %s", code, out)
	}
	e.verifyV1(t, waitState(t, p.url, b, "logged", 30*time.Second).Entry)
	if _, st := getStatus(t, p.url, a); st.Status != "cancelled" {
		t.Fatalf("the cancelled row was touched: %+v", st)
	}
	out, code = p.admin("list")
	if code != 0 || !bytes.Contains([]byte(out), []byte(b)) || strings.Count(out, " logged ") != 2 || strings.Count(out, " cancelled ") != 1 {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if got := metric(t, p.url, "attestor_rekor_success_total"); got != 2 {
		t.Fatalf("success_total %v, want 2", got)
	}
	if got := metric(t, p.url, `attestor_rekor_queue_depth{tier="graph"}`); got != 0 {
		t.Fatalf("depth %v, want 0", got)
	}
}
