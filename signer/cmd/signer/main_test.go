package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	sumdbnote "golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/note"
	"github.com/stellaops/tlog/signer/pkcs11"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

var signerBin string

// TestMain builds the real binary once; the tests run it as a subprocess,
// so each command is its own process, as in production.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "signer-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	signerBin = filepath.Join(dir, "signer")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	if out, err := exec.Command(goBin, "build", "-o", signerBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building signer: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cli struct {
	t   *testing.T
	env []string
}

func (c cli) run(extraEnv []string, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command(signerBin, args...)
	cmd.Env = append(append(os.Environ(), c.env...), extraEnv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return o.String(), e.String(), ee.ExitCode()
		}
		c.t.Fatalf("running signer %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(nil, args...)
	if code != 0 {
		c.t.Fatalf("signer %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeysEndToEnd(t *testing.T) {
	hsm, err := softhsmtest.New(t.TempDir()) // installs SoftHSM2 if missing
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "hsm", "softhsm2.conf")
	soPIN, userPIN := filepath.Join(dir, "so.pin"), filepath.Join(dir, "user.pin")
	writeFile(t, soPIN, "87654321\n")
	writeFile(t, userPIN, "246810\n")
	c := cli{t: t, env: []string{"SOFTHSM2_CONF=" + conf, "SIGNER_PKCS11_MODULE=" + hsm.Module, "SIGNER_PKCS11_TOKEN=dev", "SIGNER_PKCS11_PIN="}}

	out := c.ok("keys", "init-token", "-softhsm-conf", conf, "-token-dir", filepath.Join(dir, "hsm", "tokens"),
		"-label", "dev", "-so-pin-file", soPIN, "-pin-file", userPIN)
	if !strings.Contains(out, "export SOFTHSM2_CONF="+conf) {
		t.Errorf("init-token output: %s", out)
	}
	if _, errOut, code := c.run(nil, "keys", "init-token", "-softhsm-conf", conf, "-label", "dev", "-so-pin-file", soPIN, "-pin-file", userPIN); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("second init-token of the same label: exit %d, %s", code, errOut)
	}

	pubs := map[string]string{}
	for label, typ := range map[string]string{"log-ed": "ed25519", "log-ec": "ecdsa-p256"} {
		out := c.ok("keys", "generate", "-pin-file", userPIN, "-label", label, "-type", typ)
		if !strings.Contains(out, "generated "+typ) || !strings.Contains(out, "BEGIN PUBLIC KEY") {
			t.Errorf("generate %s: %s", label, out)
		}
		pubs[label] = out[strings.Index(out, "-----BEGIN"):]
	}
	if _, errOut, code := c.run(nil, "keys", "generate", "-pin-file", userPIN, "-label", "log-ec", "-type", "ed25519"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Errorf("generate over an existing label: exit %d, %s", code, errOut)
	}
	if _, _, code := c.run(nil, "keys", "generate", "-pin-file", userPIN, "-label", "x", "-type", "rsa"); code != 2 {
		t.Errorf("generate -type rsa: exit %d, want 2", code)
	}

	out = c.ok("keys", "list", "-pin-file", userPIN)
	for label, typ := range map[string]string{"log-ed": "ed25519", "log-ec": "ecdsa-p256"} {
		if !regexp.MustCompile(`(?m)^` + label + `\s+` + typ + `\s+[0-9a-f]{16}\s+[0-9a-f]+\s+true\s+false$`).MatchString(out) {
			t.Errorf("list has no sensitive, non-extractable %s %s:\n%s", typ, label, out)
		}
	}

	// PEM output parses and matches what generate printed.
	pemOut := c.ok("keys", "public", "-pin-file", userPIN, "-label", "log-ec")
	if pemOut != pubs["log-ec"] {
		t.Errorf("public -format pem = %q, generate printed %q", pemOut, pubs["log-ec"])
	}
	block, _ := pem.Decode([]byte(pemOut))
	if block == nil {
		t.Fatalf("public: not PEM: %q", pemOut)
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		t.Fatal(err)
	}

	// vkeys parse with the libraries that will verify them.
	const origin, witness = "log.example.internal/stella", "witness.example.internal"
	edVkey := strings.TrimSpace(c.ok("keys", "public", "-pin-file", userPIN, "-label", "log-ed", "-format", "vkey", "-name", origin))
	edV, err := sumdbnote.NewVerifier(edVkey)
	if err != nil {
		t.Fatalf("x/mod rejects Ed25519 vkey %q: %v", edVkey, err)
	}
	cosVkey := strings.TrimSpace(c.ok("keys", "public", "-pin-file", userPIN, "-label", "log-ed", "-format", "cosigner-vkey", "-name", witness))
	if _, err := fnote.NewVerifierForCosignatureV1(cosVkey); err != nil || !strings.HasPrefix(cosVkey, witness+"+") {
		t.Fatalf("cosigner vkey %q: %v", cosVkey, err)
	}
	ecVkey := strings.TrimSpace(c.ok("keys", "public", "-pin-file", userPIN, "-label", "log-ec", "-format", "vkey", "-name", "rekor.example"))
	ecV, err := fnote.NewECDSAVerifier(ecVkey)
	if err != nil {
		t.Fatalf("formats rejects ECDSA vkey %q: %v", ecVkey, err)
	}
	if _, _, code := c.run(nil, "keys", "public", "-pin-file", userPIN, "-label", "log-ec", "-format", "cosigner-vkey", "-name", "w"); code != 1 {
		t.Errorf("cosigner-vkey of an ECDSA key: exit %d, want 1", code)
	}

	// The keys the CLI made sign, in this process, notes that verify with
	// the vkeys the CLI printed.
	t.Setenv("SOFTHSM2_CONF", conf)
	tok, err := pkcs11.Open(t.Context(), pkcs11.Config{TokenLabel: "dev", PINFile: userPIN, Module: hsm.Module})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	for label, v := range map[string]sumdbnote.Verifier{"log-ed": edV, "log-ec": ecV} {
		k, err := keys.FromToken(t.Context(), tok, label)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(v.Name(), k)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := sumdbnote.Sign(&sumdbnote.Note{Text: origin + "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sumdbnote.Open(signed, sumdbnote.VerifierList(v)); err != nil {
			t.Errorf("%s: note does not verify with the CLI's vkey: %v", label, err)
		}
	}

	// Bench runs a fixed number of signatures and reports them.
	out = c.ok("keys", "bench", "-pin-file", userPIN, "-label", "log-ec,log-ed", "-goroutines", "1,3", "-n", "20")
	for _, want := range []string{`log-ec\s+ecdsa-p256\s+1\s+3\s+20\s`, `log-ed\s+ed25519\s+3\s+3\s+60\s`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("bench output lacks %s:\n%s", want, out)
		}
	}
}

func TestKeysErrors(t *testing.T) {
	hsm, err := softhsmtest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	c := cli{t: t, env: []string{"SOFTHSM2_CONF=" + conf, "SIGNER_PKCS11_MODULE=" + hsm.Module, "SIGNER_PKCS11_SO_PIN=11223344", "SIGNER_PKCS11_PIN=135790", "SIGNER_PKCS11_TOKEN=t"}}
	c.ok("keys", "init-token", "-softhsm-conf", conf, "-token-dir", filepath.Join(dir, "tokens"), "-label", "t")

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"wrong PIN", []string{"SIGNER_PKCS11_PIN=999999"}, []string{"list"}, 1, "CKR_PIN_INCORRECT"},
		{"no PIN", []string{"SIGNER_PKCS11_PIN="}, []string{"list"}, 1, "no PIN"},
		{"unknown token", nil, []string{"list", "-token", "nope"}, 1, "no token with that label"},
		{"unknown key", nil, []string{"public", "-label", "nope"}, 1, "no key with that label"},
		{"vkey without name", nil, []string{"public", "-label", "x", "-format", "vkey"}, 2, "-name is required"},
		{"unknown command", nil, []string{"frobnicate"}, 2, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := c.run(tc.env, append([]string{"keys"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
			if strings.Contains(errOut, "999999") || strings.Contains(errOut, "135790") {
				t.Errorf("stderr shows a PIN: %q", errOut)
			}
		})
	}
}
