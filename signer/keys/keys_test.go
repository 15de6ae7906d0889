package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stellaops/tlog/signer/pkcs11"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

// labelSeq keeps key labels unique when tests run more than once (-count).
var labelSeq atomic.Int64

const testToken = "keys-test"

var testModule string

func TestMain(m *testing.M) {
	env, cleanup, err := softhsmtest.Setup(testToken)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up SoftHSM2:", err)
		os.Exit(1)
	}
	testModule = env.Module
	code := m.Run()
	cleanup()
	os.Exit(code)
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

// openBoth returns a file key and a token key of algorithm alg.
func openBoth(t *testing.T, alg Algorithm) map[string]Key {
	t.Helper()
	pemBytes, err := GeneratePEM(alg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	fk, closeFile, err := Open(t.Context(), Config{File: file})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFile() })

	cfg := pkcs11.Config{Module: testModule, TokenLabel: testToken, PIN: softhsmtest.PIN, Sessions: 1}
	tok, err := pkcs11.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	label := fmt.Sprintf("%s-%d-%s", t.Name(), labelSeq.Add(1), alg)
	_, err = tok.Generate(t.Context(), label, pkcs11.KeyType(alg))
	tok.Close()
	if err != nil {
		t.Fatal(err)
	}
	tk, closeTok, err := Open(t.Context(), Config{PKCS11: &PKCS11Config{Config: cfg, Label: label}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeTok(); err != nil {
			t.Error(err)
		}
	})
	return map[string]Key{"file": fk, "pkcs11": tk}
}

func TestKeysHonourOneContract(t *testing.T) {
	for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
		for store, k := range openBoth(t, alg) {
			t.Run(store+"/"+string(alg), func(t *testing.T) {
				if k.Algorithm() != alg {
					t.Fatalf("Algorithm = %q, want %q", k.Algorithm(), alg)
				}
				if got, err := AlgorithmOf(k.Public()); err != nil || got != alg {
					t.Fatalf("AlgorithmOf(Public) = %q, %v", got, err)
				}
				msg := []byte("the same message for every store")
				sig, err := SignMessage(context.Background(), k, msg)
				if err != nil {
					t.Fatal(err)
				}
				if !verify(k.Public(), msg, sig) {
					t.Fatal("SignMessage signature does not verify")
				}
				d := sha256.Sum256(msg)
				var bad crypto.SignerOpts = crypto.SHA256 // wrong for Ed25519
				in := d[:]
				if alg == ECDSAP256 {
					bad, in = crypto.SHA384, make([]byte, 48)
				}
				_, err = k.Sign(rand.Reader, in, bad)
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("Sign with wrong options: got %v, want an unsupported error", err)
				}
			})
		}
	}
}

func TestParsePEMRejectsOtherKeys(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(p384)
	if _, err := ParsePEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); !errors.Is(err, ErrUnsupported) {
		t.Errorf("P-384 key: got %v, want ErrUnsupported", err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	k, err := ParsePEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	if err != nil || k.Algorithm() != ECDSAP256 {
		t.Errorf("SEC 1 P-256 key: %v", err)
	}
	if _, err := ParsePEM([]byte("not pem")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("garbage: got %v, want ErrUnsupported", err)
	}
}

func TestOpenNeedsExactlyOneStore(t *testing.T) {
	if _, _, err := Open(t.Context(), Config{}); err == nil {
		t.Error("empty config accepted")
	}
	if _, _, err := Open(t.Context(), Config{File: "x", PKCS11: &PKCS11Config{}}); err == nil {
		t.Error("two stores accepted")
	}
}

func TestDigestSigner(t *testing.T) {
	digests := [][sha256.Size]byte{sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))}
	for store, k := range openBoth(t, ECDSAP256) {
		sigs, err := DigestSigner{k}.SignDigests(t.Context(), digests)
		if err != nil {
			t.Fatalf("%s: %v", store, err)
		}
		if len(sigs) != len(digests) {
			t.Fatalf("%s: %d signatures for %d digests", store, len(sigs), len(digests))
		}
		for i := range digests {
			if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digests[i][:], sigs[i]) {
				t.Errorf("%s: signature %d does not verify", store, i)
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := (DigestSigner{k}).SignDigests(ctx, digests); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: cancelled context: got %v", store, err)
		}
	}
	pemBytes, _ := GeneratePEM(Ed25519)
	ed, _ := ParsePEM(pemBytes)
	if _, err := (DigestSigner{ed}).SignDigests(t.Context(), digests); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Ed25519 key: got %v, want ErrUnsupported", err)
	}
}
