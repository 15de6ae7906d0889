package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/client"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/testing/stack"
)

// TestServeEndToEnd runs `signer serve` as a process against a SoftHSM2
// token and MariaDB, signs through the API, and stops it with SIGTERM.
func TestServeEndToEnd(t *testing.T) {
	hsm, err := softhsmtest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := hsm.InitToken("serve", softhsmtest.SOPIN, softhsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pin := filepath.Join(dir, "user.pin")
	writeFile(t, pin, softhsmtest.PIN+"\n")
	c := cli{t: t, env: []string{"SOFTHSM2_CONF=" + hsm.Conf, "SIGNER_PKCS11_MODULE=" + hsm.Module, "SIGNER_PKCS11_TOKEN=serve", "SIGNER_PKCS11_PIN="}}
	c.ok("keys", "generate", "-pin-file", pin, "-label", "ckpt", "-type", "ed25519")
	c.ok("keys", "generate", "-pin-file", pin, "-label", "sets", "-type", "ecdsa-p256")

	out := c.ok("token")
	var tok, sum string
	fmt.Sscanf(out, "token: %s\nsha256: %s", &tok, &sum)
	if h := sha256.Sum256([]byte(tok)); hex.EncodeToString(h[:]) != sum || !strings.HasPrefix(tok, "stsk_") {
		t.Fatalf("signer token printed %q", out)
	}

	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "signerserve")
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dsnFile := filepath.Join(dir, "audit-dsn")
	writeFile(t, dsnFile, "\n"+dsn+"\n")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
token: {module: %s, token_label: serve, pin_file: %s, sessions: 2}
audit: {dsn_file: %s, migrate_dsn: %q}
logging: {format: json}
keys:
  - {name: checkpoint, purposes: [checkpoint], note_name: log.example/serve, versions: [{version: 1, label: ckpt}]}
  - {name: sets, purposes: [digests], versions: [{version: 1, label: sets}]}
tenants:
  - name: logserver
    tokens: [{id: ls, sha256: %s, scopes: [sign:digests, sign:checkpoint]}]
    keys: [checkpoint, sets]
`, port, hsm.Module, pin, dsnFile, dsn, sum)
	cfgPath := filepath.Join(dir, "signer.yaml")
	writeFile(t, cfgPath, cfg)

	// -c, the short form of -config; the audit DSN from a secret file
	// (surrounding whitespace ignored); JSON logs from the file.
	cmd := exec.Command(signerBin, "serve", "-c", cfgPath)
	cmd.Env = append(cmd.Environ(), c.env...)
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening on ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("serve did not start: %q %v\n%s", line, err, stderr.String())
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}

	ctx := context.Background()
	sc := client.New(base, tok, nil)
	ds, err := sc.NewDigestSigner(ctx, "sets")
	if err != nil {
		t.Fatal(err)
	}
	d := [][32]byte{sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))}
	sigs, err := ds.SignDigests(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(ds.Public().(*ecdsa.PublicKey), d[1][:], sigs[1]) {
		t.Error("digest signature does not verify")
	}
	root := sha256.Sum256([]byte("r"))
	nr, err := sc.SignCheckpoint(ctx, "checkpoint", "log.example/serve\n1\n"+base64.StdEncoding.EncodeToString(root[:])+"\n")
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := sc.Keys(ctx)
	v, err := note.NewVerifier(ks.Keys[0].Versions[0].NoteVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open([]byte(nr.SignedNote), note.VerifierList(v)); err != nil {
		t.Errorf("checkpoint: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"signer stopped"`) {
		t.Errorf("no orderly shutdown in the JSON log:\n%s", stderr.String())
	}
	sdb, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var n int
	if err := sdb.QueryRow("SELECT COUNT(*) FROM signer_audit WHERE decision = 'signed'").Scan(&n); err != nil || n != 2 {
		t.Errorf("audit rows: %d %v", n, err)
	}
}
