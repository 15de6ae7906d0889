package evidence

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/sigstore/rekor/pkg/types"
	hashedrekord "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
	"github.com/sigstore/rekor/pkg/types/intoto"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.2"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// rekorBody makes the canonical body Rekor v1.5.4's own entry types make
// (and so the checks Rekor makes on admission, such as the envelope's
// signatures, have passed) for an envelope and its key.
func rekorBody(t *testing.T, kind, version string, props types.ArtifactProperties) []byte {
	t.Helper()
	pe, err := types.NewProposedEntry(t.Context(), kind, version, props)
	if err != nil {
		t.Fatal(err)
	}
	ei, err := types.UnmarshalEntry(pe)
	if err != nil {
		t.Fatal(err)
	}
	b, err := types.CanonicalizeEntry(t.Context(), ei)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pubPEM(t *testing.T, pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestIntoto checks intoto 0.0.1 and 0.0.2 bodies made by Rekor's types
// for ECDSA and Ed25519 envelopes: the envelope as logged passes; an
// altered envelope, a body whose payload hash or key is not the envelope's
// fail, each with its reason.
func TestIntoto(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecSV, _ := signature.LoadECDSASignerVerifier(ec, crypto.SHA256)
	edSV, _ := signature.LoadED25519SignerVerifier(edPriv)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"a","digest":{"sha256":"00"}}]}`)
	for _, c := range []struct {
		name string
		sv   signature.Signer
		pub  crypto.PublicKey
	}{{"ecdsa", ecSV, &ec.PublicKey}, {"ed25519", edSV, edPub}} {
		env, err := dsse.WrapSigner(c.sv, "application/vnd.in-toto+json").SignMessage(bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		for _, version := range []string{"0.0.1", "0.0.2"} {
			name := c.name + " intoto " + version
			body := rekorBody(t, intoto.KIND, version, types.ArtifactProperties{ArtifactBytes: env, PublicKeyBytes: [][]byte{pubPEM(t, c.pub)}})
			check := func(env, body []byte) []string {
				var e Entry
				e.Body, e.EnvelopeRaw = body, env
				if err := json.Unmarshal(env, &e.Envelope); err != nil {
					t.Fatal(err)
				}
				b, err := ParseBody(body)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				r := &Result{}
				r.checkIntoto(&e, b)
				return r.Failures
			}
			if f := check(env, body); len(f) != 0 {
				t.Errorf("%s: %v", name, f)
			}
			// The payload altered in the envelope.
			altered := bytes.Replace(env, []byte(base64.StdEncoding.EncodeToString(payload)[:8]), []byte("AAAAAAAA"), 1)
			if bytes.Equal(altered, env) {
				t.Fatal("no alteration")
			}
			want(t, name+" altered envelope", check(altered, body), "the envelope hashes to")
			// A body that records another payload hash, or another key,
			// for the same envelope hash.
			var m map[string]any
			json.Unmarshal(body, &m)
			content := m["spec"].(map[string]any)["content"].(map[string]any)
			content["payloadHash"].(map[string]any)["value"] = strings.Repeat("ab", 32)
			wrongPayload, _ := json.Marshal(m)
			want(t, name+" payload hash", check(env, wrongPayload), "the envelope's payload hashes to")
			json.Unmarshal(body, &m)
			otherKey := base64.StdEncoding.EncodeToString(pubPEM(t, &other.PublicKey))
			if version == "0.0.1" {
				m["spec"].(map[string]any)["publicKey"] = otherKey
			} else {
				sigs := m["spec"].(map[string]any)["content"].(map[string]any)["envelope"].(map[string]any)["signatures"].([]any)
				sigs[0].(map[string]any)["publicKey"] = otherKey
			}
			wrongKey, _ := json.Marshal(m)
			want(t, name+" wrong key", check(env, wrongKey), "no envelope signature verifies with key")
		}
	}
}

// TestEd25519HashedRekord checks a hashedrekord made by Rekor's type for
// an Ed25519ph signature over a SHA-512 digest (what cosign makes), and
// that a plain Ed25519 signature or a SHA-256 digest does not pass.
func TestEd25519HashedRekord(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	artifact := []byte("release 3\n")
	d := sha512.Sum512(artifact)
	ph, _ := signature.LoadED25519phSigner(priv)
	sig, err := ph.SignMessage(nil, options.WithDigest(d[:]), options.WithCryptoSignerOpts(crypto.SHA512))
	if err != nil {
		t.Fatal(err)
	}
	body := rekorBody(t, "hashedrekord", hashedrekord.APIVERSION, types.ArtifactProperties{
		ArtifactHash: "sha512:" + hex.EncodeToString(d[:]), SignatureBytes: sig, PublicKeyBytes: [][]byte{pubPEM(t, pub)}, PKIFormat: "x509"})
	check := func(body []byte, o Options) []string {
		b, err := ParseBody(body)
		if err != nil {
			t.Fatal(err)
		}
		r := &Result{}
		r.checkHashedRekord(&Entry{Body: body}, b, o)
		return r.Failures
	}
	if f := check(body, Options{Artifact: artifact}); len(f) != 0 {
		t.Fatalf("ed25519ph: %v", f)
	}
	want(t, "wrong artifact", check(body, Options{Artifact: []byte("release 4\n")}), "the artifact's sha512")
	// The same body with a pure Ed25519 signature over the digest.
	var m map[string]any
	json.Unmarshal(body, &m)
	m["spec"].(map[string]any)["signature"].(map[string]any)["content"] = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, d[:]))
	pure, _ := json.Marshal(m)
	want(t, "pure ed25519", check(pure, Options{}), "does not verify over the logged digest")
	json.Unmarshal(body, &m)
	data := m["spec"].(map[string]any)["data"].(map[string]any)["hash"].(map[string]any)
	data["algorithm"], data["value"] = "sha256", strings.Repeat("ab", 32)
	sha256Body, _ := json.Marshal(m)
	want(t, "sha256 digest", check(sha256Body, Options{}), "an Ed25519 hashedrekord signs a SHA-512 digest")

	// Rekor v2 (rekor-tiles v2.3.0 verifies Ed25519 as Ed25519ph too).
	spki, _ := x509.MarshalPKIXPublicKey(pub)
	v2 := func(sig []byte, alg string) []byte {
		b, _ := json.Marshal(map[string]any{"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": map[string]any{"hashedRekordV002": map[string]any{
			"data":      map[string]any{"algorithm": alg, "digest": d[:]},
			"signature": map[string]any{"content": sig, "verifier": map[string]any{"publicKey": map[string]any{"rawBytes": spki}, "keyDetails": "PKIX_ED25519_PH"}}}}})
		return b
	}
	if f := check(v2(sig, "SHA2_512"), Options{Artifact: artifact}); len(f) != 0 {
		t.Fatalf("ed25519ph hashedrekord 0.0.2: %v", f)
	}
	want(t, "v2 pure ed25519", check(v2(ed25519.Sign(priv, d[:]), "SHA2_512"), Options{}), "does not verify over the logged digest")
	if _, err := ParseBody(v2(sig, "SHA2_256")); err == nil {
		t.Error("a 64-byte digest named SHA2_256 parses")
	}
}

func want(t *testing.T, name string, failures []string, reason string) {
	t.Helper()
	if !strings.Contains(strings.Join(failures, "\n"), reason) {
		t.Errorf("%s: failures %q, want %q", name, failures, reason)
	}
}
