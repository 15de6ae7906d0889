package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// softhsmTokenDir returns the directory SoftHSM2 keeps the token labelled
// label in (a UUID-named directory under the token directory).
func softhsmTokenDir(t *testing.T, label string) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(testTokenDir, "*", "token.object"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(label)) {
			return filepath.Dir(f)
		}
	}
	t.Fatalf("no SoftHSM2 directory holds token %q", label)
	return ""
}

// awayPath is where dir goes while its token is "removed": beside the
// token directory, not in it.
func awayPath(dir string) string {
	return filepath.Join(filepath.Dir(testTokenDir), "away-"+filepath.Base(dir))
}

// TestTokenRemovedAndRestored takes a real SoftHSM2 token away while it is
// in use and brings it back, twice: once only the token's own directory
// (C_Initialize then succeeds without the token: "token not found"), once
// the whole token directory (C_Initialize itself fails meanwhile). Each
// time signing must fail fast with ErrTokenUnavailable, Check must report
// it, and once the token is back both must work again with the same
// Signer, without reopening the Token. A second Token on another token of
// the same module must keep working across the module's re-initialisation.
func TestTokenRemovedAndRestored(t *testing.T) {
	ctx := t.Context()
	tok, err := Open(ctx, Config{Module: testModule, TokenLabel: removableToken, PIN: testPIN, Sessions: 2, RetryInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	other := openTest(t, 1)
	s, err := tok.Generate(ctx, label(t, ECDSAP256), ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	os2, err := other.Generate(ctx, label(t, Ed25519), Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("removal"))
	signOK := func(when string) {
		t.Helper()
		msg := []byte("removable token " + when)
		sig, err := sign(ctx, s, msg)
		if err != nil || !verify(s.Public(), msg, sig) {
			t.Fatalf("%s: removable token: %v", when, err)
		}
		msg = []byte("other token " + when)
		sig, err = sign(ctx, os2, msg)
		if err != nil || !verify(os2.Public(), msg, sig) {
			t.Fatalf("%s: other token: %v", when, err)
		}
	}
	signOK("before")

	for _, tc := range []struct{ name, dir string }{
		{"token directory", softhsmTokenDir(t, removableToken)},
		{"whole token store", testTokenDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Outside the token directory: SoftHSM2 reads every directory
			// in it, whatever its name.
			away := awayPath(tc.dir)
			if err := os.Rename(tc.dir, away); err != nil {
				t.Fatal(err)
			}
			restored := false
			restore := func() {
				if !restored {
					restored = true
					if err := os.Rename(away, tc.dir); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer restore()
			if _, err := s.SignContext(ctx, d[:], crypto.SHA256); !errors.Is(err, ErrTokenUnavailable) {
				t.Fatalf("signing without the token: %v, want ErrTokenUnavailable", err)
			}
			// Fails fast meanwhile, and keeps failing while reconnection
			// attempts (every RetryInterval, and every Check) fail.
			for range 3 {
				t0 := time.Now()
				if _, err := s.SignContext(ctx, d[:], crypto.SHA256); !errors.Is(err, ErrTokenUnavailable) {
					t.Fatalf("signing while lost: %v", err)
				}
				if err := tok.Check(ctx); !errors.Is(err, ErrTokenUnavailable) {
					t.Fatalf("Check while lost: %v", err)
				}
				if err := tok.Present(); !errors.Is(err, ErrTokenUnavailable) {
					t.Fatalf("Present while lost: %v", err)
				}
				if d := time.Since(t0); d > 5*time.Second {
					t.Fatalf("a failing round took %v", d)
				}
				time.Sleep(60 * time.Millisecond)
			}
			restore()
			if err := tok.Check(ctx); err != nil {
				t.Fatalf("Check after the token came back: %v", err)
			}
			if err := tok.Present(); err != nil {
				t.Fatalf("Present after the token came back: %v", err)
			}
			signOK("after " + tc.name)
		})
	}
	// Signing calls alone (no Check) reconnect too, after RetryInterval.
	dir := softhsmTokenDir(t, removableToken)
	if err := os.Rename(dir, awayPath(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignContext(ctx, d[:], crypto.SHA256); !errors.Is(err, ErrTokenUnavailable) {
		os.Rename(awayPath(dir), dir)
		t.Fatalf("signing without the token: %v", err)
	}
	if err := os.Rename(awayPath(dir), dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.SignContext(ctx, d[:], crypto.SHA256)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrTokenUnavailable) || time.Now().After(deadline) {
			t.Fatalf("signing after the token came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	signOK("after signing-driven reconnection")
}

// TestTokenRemovedUnderLoad removes and restores the whole token store
// while goroutines sign on two Tokens of the module: no call may fail with
// anything but ErrTokenUnavailable (in particular none may overlap the
// module's re-initialisation, which SoftHSM2 would not survive), and once
// the token is back every goroutine signs again.
func TestTokenRemovedUnderLoad(t *testing.T) {
	ctx := t.Context()
	tok, err := Open(ctx, Config{Module: testModule, TokenLabel: removableToken, PIN: testPIN, Sessions: 2, RetryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	other := openTest(t, 2)
	var signers []*Signer
	for _, tk := range []*Token{tok, other} {
		s, err := tk.Generate(ctx, label(t, ECDSAP256)+tk.Label(), ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []error
	okAfter := make([]atomic.Int64, 8)
	var unavailable [2]atomic.Int64
	var restored atomic.Bool
	for g := range 8 {
		s := signers[g%2]
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Appendf(nil, "load %d %d", g, i)
				sig, err := sign(ctx, s, msg)
				switch {
				case err == nil && !verify(s.Public(), msg, sig):
					err = errors.New("signature does not verify")
				case err == nil:
					if restored.Load() {
						okAfter[g].Add(1)
					}
					continue
				case errors.Is(err, ErrTokenUnavailable):
					unavailable[g%2].Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				unexpected = append(unexpected, err)
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	away := awayPath(testTokenDir)
	for round := range 3 {
		if err := os.Rename(testTokenDir, away); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			tok.Check(ctx)
			time.Sleep(20 * time.Millisecond)
		}
		if err := os.Rename(away, testTokenDir); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for tok.Check(ctx) != nil || other.Check(ctx) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: not back: %v / %v", round, tok.Check(ctx), other.Check(ctx))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	restored.Store(true)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, err := range unexpected {
		t.Errorf("unexpected error under load: %v", err)
	}
	if unavailable[0].Load() == 0 || unavailable[1].Load() == 0 {
		t.Errorf("ErrTokenUnavailable seen %d and %d times: the removal did not reach the signers", unavailable[0].Load(), unavailable[1].Load())
	}
	for g := range okAfter {
		if okAfter[g].Load() == 0 {
			t.Errorf("goroutine %d signed nothing after the token came back", g)
		}
	}
}
