package note

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rekorutil "github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	sumdbnote "golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/pkcs11"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

// labelSeq keeps key labels unique when tests run more than once (-count).
var labelSeq atomic.Int64

const testToken = "note-test"

var tok *pkcs11.Token

func TestMain(m *testing.M) {
	env, cleanup, err := softhsmtest.Setup(testToken)
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up SoftHSM2:", err)
		os.Exit(1)
	}
	tok, err = pkcs11.Open(context.Background(), pkcs11.Config{Module: env.Module, TokenLabel: testToken, PIN: softhsmtest.PIN})
	if err != nil {
		fmt.Fprintln(os.Stderr, "opening token:", err)
		cleanup()
		os.Exit(1)
	}
	code := m.Run()
	tok.Close()
	cleanup()
	os.Exit(code)
}

func hsmKey(t *testing.T, kt pkcs11.KeyType) keys.Key {
	t.Helper()
	label := fmt.Sprintf("%s-%d-%s", t.Name(), labelSeq.Add(1), kt)
	if _, err := tok.Generate(t.Context(), label, kt); err != nil {
		t.Fatal(err)
	}
	k, err := keys.FromToken(t.Context(), tok, label)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func checkpoint(origin string) []byte {
	root := sha256.Sum256([]byte("root"))
	return log.Checkpoint{Origin: origin, Size: 42, Hash: root[:]}.Marshal()
}

// A C2SP checkpoint signed with the token's Ed25519 key verifies with
// golang.org/x/mod/sumdb/note and transparency-dev/formats/log.
func TestHSMEd25519Checkpoint(t *testing.T) {
	const origin = "log.example.internal/stella"
	k := hsmKey(t, pkcs11.Ed25519)
	s, err := NewSigner(origin, k)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := VerifierKey(origin, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := sumdbnote.NewEd25519VerifierKey(origin, k.Public().(ed25519.PublicKey)); vkey != want {
		t.Fatalf("vkey = %s, x/mod says %s", vkey, want)
	}
	signed, err := sumdbnote.Sign(&sumdbnote.Note{Text: string(checkpoint(origin))}, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sumdbnote.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sumdbnote.Open(signed, sumdbnote.VerifierList(v))
	if err != nil {
		t.Fatalf("x/mod note.Open: %v\n%s", err, signed)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Hash != s.KeyHash() {
		t.Fatalf("verified signatures %+v", n.Sigs)
	}
	if _, _, _, err := log.ParseCheckpoint(signed, origin, v); err != nil {
		t.Fatalf("log.ParseCheckpoint: %v", err)
	}
	tampered := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := sumdbnote.Open(tampered, sumdbnote.VerifierList(v)); err == nil {
		t.Fatal("tampered checkpoint verified")
	}
}

// A Rekor-style note signed with the token's ECDSA key verifies with
// transparency-dev/formats/note's ECDSA verifier.
func TestHSMECDSARekorNote(t *testing.T) {
	const origin = "rekor.stella.internal - 1193050959916656506"
	k := hsmKey(t, pkcs11.ECDSAP256)
	name := strings.Fields(origin)[0]
	s, err := NewSigner(name, k)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := VerifierKey(name, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	id, _ := keys.ID(k.Public())
	if want := fmt.Sprintf("%s+%x+%s", name, id[:4], base64.StdEncoding.EncodeToString(append([]byte{2}, der...))); vkey != want {
		t.Fatalf("vkey = %s, want %s", vkey, want)
	}
	signed, err := sumdbnote.Sign(&sumdbnote.Note{Text: string(checkpoint(origin))}, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewECDSAVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sumdbnote.Open(signed, sumdbnote.VerifierList(v)); err != nil {
		t.Fatalf("note.Open with formats' ECDSA verifier: %v\n%s", err, signed)
	}
	// The generic parser dispatches on the type byte to the same verifier.
	gv, err := fnote.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := log.ParseCheckpoint(signed, origin, gv); err != nil {
		t.Fatalf("log.ParseCheckpoint: %v", err)
	}
	// And Rekor v1's own checkpoint parser and verifier accept it.
	var sc rekorutil.SignedCheckpoint
	if err := sc.UnmarshalText(signed); err != nil {
		t.Fatalf("rekor UnmarshalText: %v", err)
	}
	rv, err := signature.LoadVerifier(k.Public(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Verify(rv) || sc.Origin != origin || sc.Size != 42 {
		t.Fatalf("rekor rejects the checkpoint (origin %q size %d)", sc.Origin, sc.Size)
	}
}

func TestHSMCosignature(t *testing.T) {
	const origin = "log.example.internal/stella"
	const witness = "witness.stella.internal"
	k := hsmKey(t, pkcs11.Ed25519)
	at := time.Unix(1795000000, 0)
	s, err := NewCosigner(witness, k, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := CosignerVerifierKey(witness, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := VerifierKey(witness, k.Public())
	if want, err := fnote.VKeyToCosignatureV1(plain); err != nil || vkey != want {
		t.Fatalf("cosigner vkey = %s, formats says %s (%v)", vkey, want, err)
	}
	signed, err := sumdbnote.Sign(&sumdbnote.Note{Text: string(checkpoint(origin))}, s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sumdbnote.Open(signed, sumdbnote.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open cosignature: %v\n%s", err, signed)
	}
	if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || !ts.Equal(at) {
		t.Fatalf("cosignature time = %v, %v; want %v", ts, err, at)
	}
	// A plain Ed25519 verifier must not accept a cosignature (different key hash).
	pv, _ := sumdbnote.NewVerifier(plain)
	if _, err := sumdbnote.Open(signed, sumdbnote.VerifierList(pv)); err == nil {
		t.Fatal("cosignature verified as a plain Ed25519 note signature")
	}
}

// A software Ed25519 key gives byte-for-byte the note x/mod's own signer gives.
func TestFileKeyMatchesXMod(t *testing.T) {
	const name = "dev.example/log"
	skey, _, err := sumdbnote.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := sumdbnote.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4]) // PRIVATE+KEY+name+hash+key
	der, _ := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(raw[1:]))
	k, err := keys.ParsePEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(name, k)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyHash() != ref.KeyHash() {
		t.Fatalf("key hash %08x, x/mod %08x", s.KeyHash(), ref.KeyHash())
	}
	n := &sumdbnote.Note{Text: string(checkpoint(name))}
	got, err := sumdbnote.Sign(n, s)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sumdbnote.Sign(n, ref)
	if !bytes.Equal(got, want) {
		t.Fatalf("signed note differs from x/mod's:\n%s\n%s", got, want)
	}
}

func TestRejects(t *testing.T) {
	pemBytes, _ := keys.GeneratePEM(keys.ECDSAP256)
	ec, _ := keys.ParsePEM(pemBytes)
	if _, err := NewCosigner("w", ec, nil); !errors.Is(err, keys.ErrUnsupported) {
		t.Errorf("ECDSA cosigner: got %v, want ErrUnsupported", err)
	}
	for _, name := range []string{"", "a b", "a+b", "a\nb"} {
		if _, err := NewSigner(name, ec); !errors.Is(err, ErrName) {
			t.Errorf("name %q: got %v, want ErrName", name, err)
		}
	}
}
