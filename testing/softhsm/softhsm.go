// Package softhsm prepares real SoftHSM2 tokens for tests of every
// component: it installs the softhsm2 Debian package when it is missing,
// writes a softhsm2.conf whose token directory is private to the test,
// and initialises tokens with softhsm2-util (keys are generated inside them
// with signer/pkcs11). Nothing here is meant for production code.
package softhsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Env is a SoftHSM2 configuration rooted in one directory.
type Env struct {
	Module   string // path of libsofthsm2.so
	Conf     string // path of softhsm2.conf; set SOFTHSM2_CONF to it
	TokenDir string
}

var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
}

var ensure = sync.OnceValues(func() (string, error) {
	if m := findModule(); m != "" {
		if _, err := exec.LookPath("softhsm2-util"); err == nil {
			return m, nil
		}
	}
	if os.Geteuid() != 0 {
		return "", errors.New("softhsm2 is not installed and installing it needs root: apt-get install softhsm2")
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "softhsm2"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if m := findModule(); m != "" {
		return m, nil
	}
	return "", errors.New("softhsm2 installed but libsofthsm2.so not found")
})

func findModule() string {
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// New makes sure SoftHSM2 is installed and writes dir/softhsm2.conf with its
// token directory dir/tokens. It does not set SOFTHSM2_CONF.
func New(dir string) (*Env, error) {
	mod, err := ensure()
	if err != nil {
		return nil, err
	}
	e := &Env{Module: mod, Conf: filepath.Join(dir, "softhsm2.conf"), TokenDir: filepath.Join(dir, "tokens")}
	if err := os.MkdirAll(e.TokenDir, 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", e.TokenDir)
	if err := os.WriteFile(e.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// InitToken creates a token with softhsm2-util in the first free slot.
// The PINs are test values, so passing them as arguments is acceptable here.
func (e *Env) InitToken(label, soPIN, pin string) error {
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util --init-token %s: %v\n%s", label, err, out)
	}
	return nil
}

// Test PINs used by [Setup]; they protect throwaway tokens only.
const (
	SOPIN = "12345678"
	PIN   = "1234"
)

// Setup is for TestMain: it creates a private token directory with the
// given tokens (PINs [SOPIN] and [PIN]) and points SOFTHSM2_CONF at it, all
// before the test process first initialises the module (SoftHSM2 reads its
// configuration then). cleanup removes the directory.
func Setup(tokens ...string) (env *Env, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "signer-softhsm-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if env, err = New(dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	for _, label := range tokens {
		if err := env.InitToken(label, SOPIN, PIN); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	if err := os.Setenv("SOFTHSM2_CONF", env.Conf); err != nil {
		cleanup()
		return nil, nil, err
	}
	return env, cleanup, nil
}

// Token is an initialised SoftHSM2 token in a private directory.
type Token struct {
	Module string // path of libsofthsm2.so
	Conf   string // softhsm2.conf; processes using the token need SOFTHSM2_CONF=Conf
	Label  string
}

// NewToken writes a softhsm2.conf in a t.TempDir, creates a token labelled
// label with PINs [SOPIN] and [PIN], and sets SOFTHSM2_CONF for the rest of
// the test (t.Setenv), so the test process and its children see only this
// token. SoftHSM2 reads its configuration when the module is initialised:
// use one Token per test process at a time, and close every pkcs11.Token
// opened in the test process before the test ends.
func NewToken(t testing.TB, label string) *Token {
	t.Helper()
	env, err := New(t.TempDir())
	if err != nil {
		t.Fatalf("SoftHSM2: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", env.Conf)
	if err := env.InitToken(label, SOPIN, PIN); err != nil {
		t.Fatal(err)
	}
	return &Token{Module: env.Module, Conf: env.Conf, Label: label}
}
