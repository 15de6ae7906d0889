package dsse

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/secure-systems-lab/go-securesystemslib/signerverifier"

	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/pkcs11"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

// labelSeq keeps key labels unique when tests run more than once (-count).
var labelSeq atomic.Int64

const testToken = "dsse-test"

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

// sslibVerifier is go-securesystemslib's own verifier for pub, presenting
// our keyid so that its envelope verifier matches signatures to it.
type sslibVerifier struct {
	ssldsse.Verifier
	id string
}

func (v sslibVerifier) KeyID() (string, error) { return v.id, nil }

func newSSLibVerifier(t *testing.T, pub crypto.PublicKey) ssldsse.Verifier {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signerverifier.LoadKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	var v ssldsse.Verifier
	switch k.KeyType {
	case signerverifier.ECDSAKeyType:
		v, err = signerverifier.NewECDSASignerVerifierFromSSLibKey(k)
	case signerverifier.ED25519KeyType:
		v, err = signerverifier.NewED25519SignerVerifierFromSSLibKey(k)
	default:
		t.Fatalf("key type %s", k.KeyType)
	}
	if err != nil {
		t.Fatal(err)
	}
	id, _ := KeyID(pub)
	return sslibVerifier{v, id}
}

// toSSLib re-reads our JSON as go-securesystemslib's envelope type, so the
// wire form is what is checked.
func toSSLib(t *testing.T, env *Envelope) *ssldsse.Envelope {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	var e ssldsse.Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

func testKeys(t *testing.T) map[string]keys.Key {
	t.Helper()
	out := map[string]keys.Key{}
	for _, kt := range []pkcs11.KeyType{pkcs11.ECDSAP256, pkcs11.Ed25519} {
		label := fmt.Sprintf("%s-%d-%s", t.Name(), labelSeq.Add(1), kt)
		if _, err := tok.Generate(t.Context(), label, kt); err != nil {
			t.Fatal(err)
		}
		k, err := keys.FromToken(t.Context(), tok, label)
		if err != nil {
			t.Fatal(err)
		}
		out["pkcs11/"+string(kt)] = k
		pemBytes, _ := keys.GeneratePEM(keys.Algorithm(kt))
		if out["file/"+string(kt)], err = keys.ParsePEM(pemBytes); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

const statement = `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app.tar","digest":{"sha256":"6a4b2f3c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"}}],"predicateType":"https://stella-ops.org/attestations/promotion/v1","predicate":{"environment":"prod"}}`

func TestSignVerifiesWithSecureSystemsLib(t *testing.T) {
	for name, k := range testKeys(t) {
		t.Run(name, func(t *testing.T) {
			env, err := Sign(t.Context(), InTotoPayloadType, []byte(statement), k)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ssldsse.NewEnvelopeVerifier(newSSLibVerifier(t, k.Public()))
			if err != nil {
				t.Fatal(err)
			}
			accepted, body, err := ev.VerifyAndDecode(t.Context(), toSSLib(t, env))
			if err != nil {
				t.Fatalf("go-securesystemslib rejects the envelope: %v", err)
			}
			if string(body) != statement || len(accepted) != 1 {
				t.Fatalf("accepted %d keys, body %q", len(accepted), body)
			}
			if _, err := Verify(env, k.Public()); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// Changing the payload type breaks the signature (it is in PAE).
			bad := *env
			bad.PayloadType = "application/json"
			if _, err := ev.Verify(t.Context(), toSSLib(t, &bad)); err == nil {
				t.Fatal("go-securesystemslib accepts a changed payloadType")
			}
			if _, err := Verify(&bad, k.Public()); !errors.Is(err, ErrVerify) {
				t.Fatalf("Verify of a changed payloadType: %v", err)
			}
		})
	}
}

func TestSignWithTwoKeys(t *testing.T) {
	ks := testKeys(t)
	old, next := ks["pkcs11/ecdsa-p256"], ks["pkcs11/ed25519"]
	env, err := Sign(t.Context(), InTotoPayloadType, []byte(statement), old, next)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ssldsse.NewMultiEnvelopeVerifier(2, newSSLibVerifier(t, old.Public()), newSSLibVerifier(t, next.Public()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Verify(t.Context(), toSSLib(t, env)); err != nil {
		t.Fatalf("2-of-2 verification: %v", err)
	}
	if i, err := Verify(env, next.Public()); err != nil || i != 1 {
		t.Fatalf("Verify with the second key = %d, %v", i, err)
	}
}

func TestPAE(t *testing.T) {
	// The example of the DSSE protocol specification.
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	if want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; got != want {
		t.Errorf("PAE = %q, want %q", got, want)
	}
	if got, want := string(PAE("", nil)), "DSSEv1 0  0 "; got != want {
		t.Errorf("empty PAE = %q, want %q", got, want)
	}
	body := []byte(statement)
	if got, want := PAE(InTotoPayloadType, body), ssldsse.PAE(InTotoPayloadType, body); string(got) != string(want) {
		t.Errorf("PAE differs from go-securesystemslib's")
	}
}

func TestEnvelopeJSON(t *testing.T) {
	payload := []byte{0xfb, 0xff, 0xfe, 'x'} // base64 differs between std and URL alphabets
	sig := []byte{0xff, 0xee, 0xdd}
	env := Envelope{PayloadType: "t", Payload: payload, Signatures: []Signature{{KeyID: "k", Sig: sig}}}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"payloadType":"t","payload":"+//+eA==","signatures":[{"keyid":"k","sig":"/+7d"}]}`
	if string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	urlSafe := strings.NewReplacer("+//+eA==", base64.RawURLEncoding.EncodeToString(payload), "/+7d", base64.URLEncoding.EncodeToString(sig)).Replace(want)
	for _, in := range []string{want, urlSafe} {
		var got Envelope
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Fatalf("Unmarshal %s: %v", in, err)
		}
		if string(got.Payload) != string(payload) || string(got.Signatures[0].Sig) != string(sig) {
			t.Fatalf("Unmarshal %s = %+v", in, got)
		}
	}
	for _, in := range []string{`{"payloadType":"t"}`, `{"payloadType":"t","payload":"!!"}`, `{"payloadType":"t","payload":"","signatures":[{"sig":"*"}]}`} {
		var got Envelope
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("Unmarshal %s: no error", in)
		}
	}
}
