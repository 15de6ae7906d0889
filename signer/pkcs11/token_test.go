package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

func openTest(t *testing.T, sessions int) *Token {
	t.Helper()
	tok, err := Open(t.Context(), Config{Module: testModule, TokenLabel: testToken, PINEnv: testPINEnvName, Sessions: sessions})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tok
}

var labelIDs = struct {
	sync.Mutex
	byTest map[*testing.T]int
}{byTest: map[*testing.T]int{}}

// label makes a key label unique to the test run (tests share the token,
// and -count=N runs a test N times in one process).
func label(t *testing.T, kt KeyType) string {
	labelIDs.Lock()
	id, ok := labelIDs.byTest[t]
	if !ok {
		id = len(labelIDs.byTest)
		labelIDs.byTest[t] = id
	}
	labelIDs.Unlock()
	return fmt.Sprintf("%s-%d-%s", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), id, kt)
}

// sign signs msg the way callers of a crypto.Signer must for kt.
func sign(ctx context.Context, s *Signer, msg []byte) ([]byte, error) {
	if s.KeyType() == ECDSAP256 {
		d := sha256.Sum256(msg)
		return s.SignContext(ctx, d[:], crypto.SHA256)
	}
	return s.SignContext(ctx, msg, crypto.Hash(0))
}

func verify(pub crypto.PublicKey, msg, sig []byte) bool {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(pub, d[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(pub, msg, sig)
	}
	return false
}

func TestSignVerify(t *testing.T) {
	tok := openTest(t, 2)
	for _, kt := range []KeyType{ECDSAP256, Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			gen, err := tok.Generate(t.Context(), label(t, kt), kt)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			// A second lookup by label finds the same key.
			s, err := tok.Signer(t.Context(), label(t, kt))
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			if !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(gen.Public()) {
				t.Fatal("public key differs between Generate and Signer")
			}
			msg := []byte("tlog.example/stella\n42\nAAAA\n")
			sig, err := sign(t.Context(), s, msg)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			if !verify(s.Public(), msg, sig) {
				t.Fatal("signature does not verify")
			}
			if verify(s.Public(), append(msg, 'x'), sig) {
				t.Fatal("signature verifies over another message")
			}
			// Through the crypto.Signer interface too.
			var cs crypto.Signer = s
			if kt == Ed25519 {
				sig, err = cs.Sign(nil, msg, crypto.Hash(0))
				if err == nil && !ed25519.Verify(s.Public().(ed25519.PublicKey), msg, sig) {
					t.Fatal("crypto.Signer Ed25519 signature does not verify")
				}
			} else {
				d := sha256.Sum256(msg)
				sig, err = cs.Sign(nil, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
					t.Fatal("crypto.Signer ECDSA signature does not verify")
				}
			}
			if err != nil {
				t.Fatalf("crypto.Signer.Sign: %v", err)
			}
		})
	}
}

func TestGenerateRefusesExistingLabel(t *testing.T) {
	tok := openTest(t, 1)
	l := label(t, Ed25519)
	if _, err := tok.Generate(t.Context(), l, Ed25519); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Generate(t.Context(), l, ECDSAP256); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second Generate: got %v, want ErrKeyExists", err)
	}
}

func TestGeneratedKeysStayInToken(t *testing.T) {
	tok := openTest(t, 1)
	for _, kt := range []KeyType{ECDSAP256, Ed25519} {
		l := label(t, kt)
		if _, err := tok.Generate(t.Context(), l, kt); err != nil {
			t.Fatal(err)
		}
		err := tok.do(t.Context(), func(h pkcs11.SessionHandle, _ uint64) error {
			o, err := findOne(tok.mod.ctx, h, pkcs11.CKO_PRIVATE_KEY, l)
			if err != nil {
				return err
			}
			a, err := attrs(tok.mod.ctx, h, o, pkcs11.CKA_TOKEN, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_PRIVATE)
			if err != nil {
				return err
			}
			for _, want := range []struct {
				name string
				attr uint
				val  bool
			}{{"CKA_TOKEN", pkcs11.CKA_TOKEN, true}, {"CKA_SENSITIVE", pkcs11.CKA_SENSITIVE, true},
				{"CKA_EXTRACTABLE", pkcs11.CKA_EXTRACTABLE, false}, {"CKA_PRIVATE", pkcs11.CKA_PRIVATE, true}} {
				if got := boolAttr(a[want.attr]); got != want.val {
					t.Errorf("%s %s = %v, want %v", kt, want.name, got, want.val)
				}
			}
			_, err = attrs(tok.mod.ctx, h, o, pkcs11.CKA_VALUE)
			if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
				t.Errorf("%s: reading CKA_VALUE: got %v, want CKR_ATTRIBUTE_SENSITIVE", kt, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	keys, err := tok.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, k := range keys {
		if strings.HasPrefix(k.Label, label(t, "")) {
			found++
			if !k.Sensitive || k.Extractable || k.Public == nil || k.ID == "" {
				t.Errorf("Keys: %+v", k)
			}
		}
	}
	if found != 2 {
		t.Errorf("Keys listed %d of this test's keys, want 2", found)
	}
}

func TestSignRejectsWrongInput(t *testing.T) {
	tok := openTest(t, 1)
	ec, err := tok.Generate(t.Context(), label(t, ECDSAP256), ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := tok.Generate(t.Context(), label(t, Ed25519), Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	d256 := sha256.Sum256([]byte("m"))
	d512 := sha512.Sum512([]byte("m"))
	for name, call := range map[string]func() ([]byte, error){
		"ecdsa sha384 opts":    func() ([]byte, error) { return ec.Sign(nil, d512[:48], crypto.SHA384) },
		"ecdsa short digest":   func() ([]byte, error) { return ec.Sign(nil, d256[:20], crypto.SHA256) },
		"ecdsa long digest":    func() ([]byte, error) { return ec.Sign(nil, d512[:], crypto.SHA256) },
		"ecdsa no hash":        func() ([]byte, error) { return ec.Sign(nil, []byte("m"), crypto.Hash(0)) },
		"ed25519 prehashed":    func() ([]byte, error) { return ed.Sign(nil, d512[:], crypto.SHA512) },
		"ed25519 with context": func() ([]byte, error) { return ed.Sign(nil, []byte("m"), &ed25519.Options{Context: "x"}) },
	} {
		if _, err := call(); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: got %v, want ErrUnsupported", name, err)
		}
	}
}

func TestConcurrentSigning(t *testing.T) {
	const goroutines, each = 16, 40
	tok := openTest(t, 3)
	var signers []*Signer
	for _, kt := range []KeyType{ECDSAP256, Ed25519} {
		s, err := tok.Generate(t.Context(), label(t, kt), kt)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			s := signers[g%len(signers)]
			for i := range each {
				msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				sig, err := sign(t.Context(), s, msg)
				if err != nil {
					errs <- err
					return
				}
				if !verify(s.Public(), msg, sig) {
					errs <- fmt.Errorf("goroutine %d: bad %s signature %d", g, s.KeyType(), i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRecoversAfterLogout(t *testing.T) {
	tok := openTest(t, 2)
	s, err := tok.Generate(t.Context(), label(t, Ed25519), Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("before")
	if _, err := sign(t.Context(), s, msg); err != nil {
		t.Fatal(err)
	}
	before := tok.generation()
	tok.mu.Lock()
	err = tok.mod.ctx.Logout(tok.anchor.h) // logs every session of this application out
	tok.mu.Unlock()
	if err != nil {
		t.Fatalf("C_Logout: %v", err)
	}
	for i := range 3 {
		msg := fmt.Appendf(nil, "after %d", i)
		sig, err := sign(t.Context(), s, msg)
		if err != nil {
			t.Fatalf("sign after logout: %v", err)
		}
		if !verify(s.Public(), msg, sig) {
			t.Fatal("bad signature after recovery")
		}
	}
	if tok.generation() == before {
		t.Fatal("signing after logout did not go through recovery")
	}

	// Looking keys up while logged out recovers too: private objects are
	// merely invisible then, which must not read as "no such key".
	for name, op := range map[string]func() error{
		"Signer":   func() error { _, err := tok.Signer(t.Context(), s.Label()); return err },
		"Generate": func() error { _, err := tok.Generate(t.Context(), label(t, ECDSAP256), ECDSAP256); return err },
		"Keys": func() error {
			ks, err := tok.Keys(t.Context())
			if err == nil && len(ks) == 0 {
				err = errors.New("no keys listed")
			}
			return err
		},
	} {
		tok.mu.Lock()
		err := tok.mod.ctx.Logout(tok.anchor.h)
		tok.mu.Unlock()
		if err != nil {
			t.Fatalf("C_Logout: %v", err)
		}
		if err := op(); err != nil {
			t.Errorf("%s after logout: %v", name, err)
		}
	}
}

func TestRecoversAfterSessionsClosed(t *testing.T) {
	tok := openTest(t, 2)
	var signers []*Signer
	for _, kt := range []KeyType{ECDSAP256, Ed25519} {
		s, err := tok.Generate(t.Context(), label(t, kt), kt)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	if err := tok.mod.ctx.CloseAllSessions(tok.slot); err != nil {
		t.Fatalf("C_CloseAllSessions: %v", err)
	}
	// More signatures than sessions, concurrently, so that every dead
	// session is met and replaced, some of them at the same time.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			s := signers[g%2]
			for i := range 4 {
				msg := fmt.Appendf(nil, "%d/%d", g, i)
				sig, err := sign(t.Context(), s, msg)
				if err != nil {
					errs <- err
					return
				}
				if !verify(s.Public(), msg, sig) {
					errs <- errors.New("bad signature after recovery")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// PKCS#11 lets a token give the handle of a closed session to a new one.
// A pool entry whose handle was reissued must never be used as is, or two
// goroutines would share one session.
func TestReissuedHandleIsNotShared(t *testing.T) {
	tok := openTest(t, 2)
	s, err := tok.Generate(t.Context(), label(t, ECDSAP256), ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := tok.acquire(t.Context())
	b, _ := tok.acquire(t.Context())
	// SoftHSM2 does not reuse handles, so play the token: a's replacement
	// session gets b's handle number.
	tok.mu.Lock()
	tok.adoptLocked(a, b.h)
	tok.mu.Unlock()
	if !b.stale {
		t.Fatal("the previous holder of a reissued handle is not marked stale")
	}
	h, _, err := tok.prepare(b)
	if err != nil {
		t.Fatal(err)
	}
	if h == a.h || b.stale {
		t.Fatalf("stale session not replaced before use: a=%d b=%d stale=%v", a.h, h, b.stale)
	}
	tok.release(a)
	tok.release(b)
	for i := range 4 {
		if _, err := sign(t.Context(), s, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWrongPIN(t *testing.T) {
	_, err := Open(t.Context(), Config{Module: testModule, TokenLabel: wrongPINToken, PIN: "9999"})
	if !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("Open with wrong PIN: got %v, want ErrPINIncorrect", err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Op != "C_Login" || pe.Name() != "CKR_PIN_INCORRECT" {
		t.Fatalf("Open with wrong PIN: got %#v, want *Error{C_Login CKR_PIN_INCORRECT}", err)
	}
	if strings.Contains(err.Error(), "9999") {
		t.Fatal("error message contains the PIN")
	}
	// The right PIN still works afterwards.
	tok, err := Open(t.Context(), Config{Module: testModule, TokenLabel: wrongPINToken, PIN: testPIN})
	if err != nil {
		t.Fatalf("Open with right PIN: %v", err)
	}
	tok.Close()
}

func TestMissingLabels(t *testing.T) {
	_, err := Open(t.Context(), Config{Module: testModule, TokenLabel: "no-such-token", PIN: testPIN})
	if !errors.Is(err, ErrTokenNotFound) {
		t.Errorf("Open unknown token: got %v, want ErrTokenNotFound", err)
	}
	tok := openTest(t, 1)
	if _, err := tok.Signer(t.Context(), "no-such-key"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("Signer unknown key: got %v, want ErrKeyNotFound", err)
	}
	if _, err := Open(t.Context(), Config{Module: "/nonexistent/libnothing.so", TokenLabel: testToken, PIN: testPIN}); !errors.Is(err, ErrModule) {
		t.Errorf("Open missing module: got %v, want ErrModule", err)
	}
}

func TestWaitForSessionHonoursContext(t *testing.T) {
	tok := openTest(t, 1)
	s, err := tok.Generate(t.Context(), label(t, Ed25519), Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	held, err := tok.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.SignContext(ctx, []byte("m"), crypto.Hash(0)); !errors.Is(err, context.Canceled) {
		t.Errorf("sign with the only session lent out: got %v, want context.Canceled", err)
	}
	tok.release(held)
	if _, err := s.SignContext(t.Context(), []byte("m"), crypto.Hash(0)); err != nil {
		t.Errorf("sign after the session came back: %v", err)
	}
}

func TestTokensShareModule(t *testing.T) {
	a := openTest(t, 1)
	b, err := Open(t.Context(), Config{Module: testModule, TokenLabel: testToken, PIN: testPIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a.mod != b.mod {
		t.Fatal("two tokens on one module path loaded it twice")
	}
	s, err := b.Generate(t.Context(), label(t, ECDSAP256), ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sign(t.Context(), s, []byte("m")); !errors.Is(err, ErrClosed) {
		t.Errorf("sign on a closed token: got %v, want ErrClosed", err)
	}
	// Closing b must neither finalise the module nor log a out.
	sa, err := a.Signer(t.Context(), label(t, ECDSAP256))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign(t.Context(), sa, []byte("m")); err != nil {
		t.Errorf("sign on the other token after Close: %v", err)
	}
}

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pin")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pin, err := ReadPIN(f, ""); err != nil || pin != "s3cret" {
		t.Errorf("ReadPIN(file) = %q, %v", pin, err)
	}
	t.Setenv("SIGNER_TEST_PIN_X", "envpin")
	if pin, err := ReadPIN("", "SIGNER_TEST_PIN_X"); err != nil || pin != "envpin" {
		t.Errorf("ReadPIN(env) = %q, %v", pin, err)
	}
	if _, err := ReadPIN(f, "SIGNER_TEST_PIN_X"); err == nil {
		t.Error("ReadPIN with both sources: no error")
	}
	if _, err := ReadPIN("", ""); !errors.Is(err, ErrNoPIN) {
		t.Errorf("ReadPIN with no source: %v", err)
	}
	if _, err := ReadPIN("", "SIGNER_TEST_PIN_UNSET"); !errors.Is(err, ErrNoPIN) {
		t.Errorf("ReadPIN with unset env: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := ReadPIN(empty, ""); !errors.Is(err, ErrNoPIN) {
		t.Errorf("ReadPIN with empty file: %v", err)
	}
}

func TestRawToDER(t *testing.T) {
	rs := make([]byte, 64)
	rs[31], rs[63] = 1, 0x80 // r = 1, s = 128 (needs a leading zero in DER)
	der, err := rawToDER(rs)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80}
	if string(der) != string(want) {
		t.Fatalf("rawToDER = %x, want %x", der, want)
	}
	if _, err := rawToDER(rs[:63]); err == nil {
		t.Fatal("odd-length r||s accepted")
	}
}

func TestParsePublic(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	wrapped := append([]byte{0x04, 0x20}, pub...) // DER OCTET STRING
	for name, tc := range map[string]struct {
		params, point []byte
	}{
		"OID, wrapped point":               {oidEd25519DER, wrapped},
		"OID, raw point":                   {oidEd25519DER, pub},
		"edwards25519 name, wrapped point": {nameEd25519DER, wrapped},
		"edwards25519 name, raw point":     {nameEd25519DER, pub},
	} {
		kt, got, err := parsePublic(ckkECEdwards, tc.params, tc.point)
		if err != nil || kt != Ed25519 || !pub.Equal(got) {
			t.Errorf("%s: got %v %v %v", name, kt, got, err)
		}
	}
	if _, _, err := parsePublic(ckkECEdwards, oidEd25519DER, pub[:31]); err == nil {
		t.Error("31-byte Ed25519 point accepted")
	}
	if _, _, err := parsePublic(pkcs11.CKK_EC, []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, wrapped); !errors.Is(err, ErrUnsupported) {
		t.Errorf("P-384 parameters: got %v, want ErrUnsupported", err)
	}
}

func TestCloseWhileSigning(t *testing.T) {
	tok, err := Open(t.Context(), Config{Module: testModule, TokenLabel: testToken, PIN: testPIN, Sessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tok.Generate(t.Context(), label(t, Ed25519), Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	started := make(chan struct{}, len(errs))
	for i := range errs {
		wg.Go(func() {
			for n := 0; ; n++ {
				if n == 1 {
					started <- struct{}{}
				}
				if _, err := sign(context.Background(), s, []byte("m")); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	for range errs {
		<-started
	}
	if err := tok.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("signer %d stopped with %v, want ErrClosed", i, err)
		}
	}
}
