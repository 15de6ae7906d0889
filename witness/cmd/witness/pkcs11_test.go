package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	fnote "github.com/transparency-dev/formats/note"

	"github.com/stellaops/tlog/signer/pkcs11"
	hsmtest "github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/witness/internal/testlog"
)

// runChild runs the witness binary (this test binary, see TestMain) once
// with args, in its own process: the PKCS#11 module is then initialised
// with the test's SOFTHSM2_CONF and finalised when the process exits.
func runChild(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "WITNESS_TEST_MAIN=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// hsmConfig writes a witness configuration whose key is a PKCS#11 key and
// returns its path. pkcs11 is the YAML body of the pkcs11 mapping.
func hsmConfig(t *testing.T, dir, file, pkcs11 string, logs ...*testlog.Log) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: witness.test/hsm\npkcs11:\n%sdb_file: w.db\nlisten: 127.0.0.1:0\nbudget: {rate: 1000, burst: 1000}\nlogging: {format: json}\nlogs:\n", pkcs11)
	for _, l := range logs {
		fmt.Fprintf(&b, "  - origin: %q\n    vkeys: [%q]\n", l.Origin, l.VKey)
	}
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPKCS11Key runs the witness with its cosigning key in a real SoftHSM2
// token: `witness vkey` prints the token key's vkey (PIN from a file or
// from the environment), the server cosigns with it, and the cosignatures
// verify with transparency-dev/formats against that vkey. A key that is not
// Ed25519, a missing key and a wrong PIN stop start-up.
func TestPKCS11Key(t *testing.T) {
	tok := hsmtest.NewToken(t, "witness-test")
	generate(t, tok, pkcs11.Ed25519, "witness-ed25519")
	generate(t, tok, pkcs11.ECDSAP256, "witness-p256")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pin"), []byte(hsmtest.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WITNESS_TEST_PKCS11_PIN", hsmtest.PIN)
	t.Setenv("WITNESS_TEST_WRONG_PIN", "9999")
	keyYAML := func(token, label, pin string) string {
		return fmt.Sprintf("  module: %s\n  token_label: %s\n  key_label: %s\n  %s\n  sessions: 2\n", tok.Module, token, label, pin)
	}
	ed, err := testlog.NewEd25519("example.com/hsm-log")
	if err != nil {
		t.Fatal(err)
	}
	ed.Append(20)
	cfg := hsmConfig(t, dir, "witness.yaml", keyYAML(tok.Label, "witness-ed25519", "pin_file: pin"), ed)

	out, stderr, err := runChild(t, "vkey", "-c", cfg)
	if err != nil {
		t.Fatalf("witness vkey: %v\n%s", err, stderr)
	}
	vkey := strings.TrimSpace(out)
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil || v.Name() != "witness.test/hsm" || !strings.Contains(vkey, "+B") {
		t.Fatalf("witness vkey printed %q: %v", vkey, err)
	}
	t.Logf("token key vkey: %s", vkey)
	envCfg := hsmConfig(t, dir, "env.yaml", keyYAML(tok.Label, "witness-ed25519", "pin_env: WITNESS_TEST_PKCS11_PIN"))
	if out, stderr, err := runChild(t, "vkey", "-c", envCfg); err != nil || strings.TrimSpace(out) != vkey {
		t.Fatalf("vkey with pin_env: %q, %v\n%s; want %q", out, err, stderr, vkey)
	}

	for name, tc := range map[string]struct{ token, label, pin, want string }{
		"ecdsa key":     {tok.Label, "witness-p256", "pin_file: pin", "is ecdsa-p256, the witness needs an Ed25519 key"},
		"missing key":   {tok.Label, "no-such-key", "pin_file: pin", pkcs11.ErrKeyNotFound.Error()},
		"missing token": {"no-such-token", "witness-ed25519", "pin_file: pin", pkcs11.ErrTokenNotFound.Error()},
		"wrong pin":     {tok.Label, "witness-ed25519", "pin_env: WITNESS_TEST_WRONG_PIN", "CKR_PIN_INCORRECT"},
		"unset pin":     {tok.Label, "witness-ed25519", "pin_env: WITNESS_TEST_UNSET_PIN", "WITNESS_TEST_UNSET_PIN is empty or unset"},
	} {
		bad := hsmConfig(t, dir, strings.ReplaceAll(name, " ", "-")+".yaml", keyYAML(tc.token, tc.label, tc.pin), ed)
		for _, cmd := range []string{"vkey", "serve"} {
			out, stderr, err := runChild(t, cmd, "-c", bad)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("%s: witness %s: %v, stdout %q, stderr %q; want exit status 1 mentioning %q", name, cmd, err, out, stderr, tc.want)
			}
		}
	}

	c := startChild(t, cfg)
	var started map[string]any
	for _, line := range strings.Split(c.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"witness started"`) {
			if err := json.Unmarshal([]byte(line), &started); err != nil {
				t.Fatal(err)
			}
		}
	}
	if started["vkey"] != vkey || !strings.Contains(fmt.Sprint(started["key"]), `pkcs11 token "witness-test" key "witness-ed25519"`) {
		t.Errorf("start-up log %v, want vkey %q from the token key", started, vkey)
	}
	code, body := c.post(ed.Request(0, 10))
	if code != http.StatusOK {
		t.Fatalf("cosign 0→10 with the token key: %d %q", code, body)
	}
	verify(t, append(ed.Checkpoint(10), body...), ed, vkey)
	code, body = c.post(ed.Request(10, 20))
	if code != http.StatusOK {
		t.Fatalf("cosign 10→20 with the token key: %d %q", code, body)
	}
	verify(t, append(ed.Checkpoint(20), body...), ed, vkey)

	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.wait(); err != nil {
		t.Fatalf("exit after SIGTERM (closes the token): %v\n%s", err, c.logs.String())
	}
}

// generate creates a key pair inside the token with signer/pkcs11 and
// closes the token again.
func generate(t *testing.T, tok *hsmtest.Token, kt pkcs11.KeyType, label string) {
	t.Helper()
	ctx := context.Background()
	pt, err := pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: hsmtest.PIN, Sessions: 1})
	if err != nil {
		t.Fatalf("opening token %q: %v", tok.Label, err)
	}
	defer func() {
		if err := pt.Close(); err != nil {
			t.Errorf("closing token %q: %v", tok.Label, err)
		}
	}()
	if _, err := pt.Generate(ctx, label, kt); err != nil {
		t.Fatalf("generating %s key %q: %v", kt, label, err)
	}
}
