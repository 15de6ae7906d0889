package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/witness/admin"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/store"
)

// TestMain lets the test binary act as the witness binary in a child
// process (for crash and signal tests).
func TestMain(m *testing.M) {
	if os.Getenv("WITNESS_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, io.Discard)
	return out.String(), err
}

// setup writes a key and a config file naming the given logs.
func setup(t *testing.T, logs ...*testlog.Log) (cfgPath, vkey string) {
	return setupExtra(t, "", logs...)
}

// setupExtra is setup with extra YAML lines.
func setupExtra(t *testing.T, extra string, logs ...*testlog.Log) (cfgPath, vkey string) {
	t.Helper()
	dir := t.TempDir()
	out, err := runCmd(t, "keygen", "-name", "witness.test/w1", "-out", filepath.Join(dir, "w.key"))
	if err != nil {
		t.Fatal(err)
	}
	vkey = strings.TrimSpace(out)
	var b strings.Builder
	fmt.Fprintf(&b, "name: witness.test/w1\nkey_file: w.key\ndb_file: w.db\nlisten: 127.0.0.1:0\nbudget: {rate: 1000, burst: 1000}\nlogging: {format: json}\n%slogs:\n", extra)
	for _, l := range logs {
		fmt.Fprintf(&b, "  - origin: %q\n    vkeys: [%q]\n", l.Origin, l.VKey)
	}
	cfgPath = filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, vkey
}

func TestKeygenAndVKey(t *testing.T) {
	cfg, vkey := setup(t)
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil || v.Name() != "witness.test/w1" {
		t.Fatalf("keygen printed %q: %v", vkey, err)
	}
	if !strings.Contains(vkey, "+B") { // base64 of 0x04 || key starts with "B"
		t.Errorf("vkey %q is not type 0x04", vkey)
	}
	out, err := runCmd(t, "vkey", "-c", cfg)
	if err != nil || strings.TrimSpace(out) != vkey {
		t.Fatalf("vkey printed %q (%v), keygen %q", out, err, vkey)
	}
	if _, err := runCmd(t, "keygen", "-name", "witness.test/w1", "-out", filepath.Join(filepath.Dir(cfg), "w.key")); err == nil {
		t.Fatal("keygen overwrote a key")
	}
}

func TestLogVKey(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	p := filepath.Join(t.TempDir(), "rekor.pub")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	out, err := runCmd(t, "log-vkey", "-name", "rekor.example.com", "-pubkey", p)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := notekey.ECDSAVerifierKey("rekor.example.com", &k.PublicKey)
	if strings.TrimSpace(out) != want {
		t.Fatalf("log-vkey %q, want %q", out, want)
	}
	if _, err := fnote.NewECDSAVerifier(want); err != nil {
		t.Fatalf("formats rejects the vkey: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil, {"frobnicate"}, {"keygen"}, {"keygen", "-name", "x"}, {"logs"}, {"logs", "grow"},
		{"logs", "add", "-c", "x.yaml"}, {"serve", "-bogus"}, {"serve", "extra"},
	} {
		if _, err := runCmd(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if _, err := runCmd(t, "serve", "-c", filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("serve with a missing config succeeded")
	}
}

func TestLogsOffline(t *testing.T) {
	l, _ := testlog.NewEd25519("example.com/a")
	cfg, _ := setup(t)
	if _, err := runCmd(t, "logs", "add", "-c", cfg, "-origin", "example.com/a", "-vkey", "garbage"); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("bad vkey: %v", err)
	}
	if _, err := runCmd(t, "logs", "add", "-c", cfg, "-origin", l.Origin, "-vkey", l.VKey); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "logs", "add", "-c", cfg, "-origin", l.Origin, "-vkey", l.VKey); !errors.Is(err, store.ErrLogExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := runCmd(t, "logs", "disable", "-c", cfg, "-origin", "nope"); !errors.Is(err, store.ErrLogNotFound) {
		t.Fatalf("disable unknown: %v", err)
	}
	if _, err := runCmd(t, "logs", "disable", "-c", cfg, "-origin", l.Origin); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, "logs", "list", "-c", cfg)
	if err != nil || !strings.Contains(out, l.Origin) || !strings.Contains(out, "disabled") || !strings.Contains(out, "admin") {
		t.Fatalf("list: %q %v", out, err)
	}
}

// child is a witness server in a child process.
type child struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	logs bytes.Buffer
	done chan error
}

func startChild(t *testing.T, cfg string) *child {
	t.Helper()
	c := &child{t: t, done: make(chan error, 1)}
	c.cmd = exec.Command(os.Args[0], "serve", "-c", cfg)
	c.cmd.Env = append(os.Environ(), "WITNESS_TEST_MAIN=1")
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		addr := ""
		for sc.Scan() {
			c.logs.Write(append(sc.Bytes(), '\n'))
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
		c.done <- c.cmd.Wait()
	}()
	select {
	case c.addr = <-started:
	case err := <-c.done:
		t.Fatalf("witness exited before starting: %v\n%s", err, c.logs.String())
	case <-time.After(2 * time.Minute): // a hang guard, not a timing assertion
		c.cmd.Process.Kill()
		t.Fatalf("witness did not start\n%s", c.logs.String())
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *child) post(body []byte) (int, string) {
	c.t.Helper()
	resp, err := http.Post("http://"+c.addr+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *child) wait() error {
	select {
	case err := <-c.done:
		return err
	case <-time.After(2 * time.Minute): // hang guard
		c.cmd.Process.Kill()
		return errors.New("witness did not exit")
	}
}

func verify(t *testing.T, signed []byte, l *testlog.Log, witnessVKey string) {
	t.Helper()
	wv, err := fnote.NewVerifierForCosignatureV1(witnessVKey)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := fnote.NewVerifier(l.VKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(lv, wv))
	if err != nil {
		t.Fatalf("cosigned checkpoint does not verify: %v\n%s", err, signed)
	}
	if len(n.Sigs) != 2 {
		t.Fatalf("verified signatures: %+v", n.Sigs)
	}
}

// TestServeCrashRestart runs the real binary: cosign, add a log through the
// admin socket while serving, crash it with SIGKILL, restart, check that
// state survived, then stop it with SIGTERM.
func TestServeCrashRestart(t *testing.T) {
	ed, _ := testlog.NewEd25519("example.com/ed")
	rk, _ := testlog.NewRekor("rekor.example.com", 42)
	cfg, vkey := setup(t, ed)
	ed.Append(20)
	rk.Append(20)

	c := startChild(t, cfg)
	if code, body := c.post(ed.Request(0, 10)); code != http.StatusOK {
		t.Fatalf("first cosign: %d %q", code, body)
	}
	// Unknown until added through the admin socket of the running server.
	if code, _ := c.post(rk.Request(0, 10)); code != http.StatusNotFound {
		t.Fatalf("rekor log before add: %d", code)
	}
	if _, err := runCmd(t, "logs", "add", "-c", cfg, "-origin", rk.Origin, "-vkey", rk.VKey); err != nil {
		t.Fatalf("logs add while serving: %v", err)
	}
	code, body := c.post(rk.Request(0, 10))
	if code != http.StatusOK {
		t.Fatalf("rekor log after live add: %d %q", code, body)
	}
	verify(t, append(rk.Checkpoint(10), body...), rk, vkey)
	out, err := runCmd(t, "logs", "list", "-c", cfg, "-json")
	if err != nil {
		t.Fatal(err)
	}
	var list []admin.LogStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].Size != 10 || list[1].Size != 10 {
		t.Fatalf("list while serving: %s %v", out, err)
	}
	if code, _ := c.post(ed.Request(10, 15)); code != http.StatusOK {
		t.Fatalf("10→15: %d", code)
	}

	// Crash.
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.wait()

	c = startChild(t, cfg)
	if code, body := c.post(ed.Request(10, 20)); code != http.StatusConflict || body != "15\n" {
		t.Fatalf("after crash, stale old: %d %q", code, body)
	}
	if code, body := c.post(rk.Request(0, 20)); code != http.StatusConflict || body != "10\n" {
		t.Fatalf("after crash, rekor stale old: %d %q", code, body)
	}
	code, body = c.post(ed.Request(15, 20))
	if code != http.StatusOK {
		t.Fatalf("15→20 after crash: %d %q", code, body)
	}
	id := sha256.Sum256([]byte(ed.Origin))
	resp, err := http.Get("http://" + c.addr + "/" + hex.EncodeToString(id[:]) + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	mon, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(mon, []byte(ed.Text(20, ed.Root(20)))) {
		t.Fatalf("monitoring: %d %q", resp.StatusCode, mon)
	}
	verify(t, mon, ed, vkey)

	// Disable live, then stop gracefully.
	if _, err := runCmd(t, "logs", "disable", "-c", cfg, "-origin", ed.Origin); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.post(ed.Request(20, 20)); code != http.StatusNotFound {
		t.Fatalf("disabled log: %d", code)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, c.logs.String())
	}
	if !strings.Contains(c.logs.String(), `"msg":"store closed"`) {
		t.Errorf("no orderly shutdown in logs:\n%s", c.logs.String())
	}
	// The store is released and holds the state.
	out, err = runCmd(t, "logs", "list", "-c", cfg)
	if err != nil || !strings.Contains(out, "20") || !strings.Contains(out, "disabled") {
		t.Fatalf("offline list: %q %v", out, err)
	}
}

// TestSlowClient checks the server drops a client that never finishes its
// headers (read_header_timeout) and one that stalls in its body
// (read_timeout), instead of holding the connection.
func TestSlowClient(t *testing.T) {
	cfg, _ := setupExtra(t, "read_header_timeout: 200ms\nread_timeout: 400ms\n")
	c := startChild(t, cfg)
	for name, partial := range map[string]string{
		"headers": "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\n",
		"body":    "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\nold 0\n",
	} {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, partial); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Minute)) // hang guard
		got, err := io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: server kept a stalled connection open", name)
		}
		if len(got) > 0 && !bytes.HasPrefix(got, []byte("HTTP/1.1 4")) {
			t.Fatalf("%s: answer %q", name, got)
		}
		t.Logf("%s: closed after %q", name, got)
	}
}
