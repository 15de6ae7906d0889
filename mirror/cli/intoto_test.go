package cli

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/stellaops/tlog/mirror/evidence"
	"github.com/stellaops/tlog/mirror/export"
)

// TestBundlesIntotoEd25519 checks the entry kinds cosign v2.6.5 makes
// beside ECDSA hashedrekord, with the real cosign against our logserver:
// legacy attest-blob bundles (`--rekor-entry-type intoto`: an intoto 0.0.1
// entry; the default: dsse 0.0.1; the bundle's base64Signature is the DSSE
// envelope as logged) and sign-blob with an Ed25519 key (a
// hashedrekord signed Ed25519ph over a SHA-512 digest), in the legacy and
// the sigstore bundle formats; then altered envelope, payload and
// signature, and the wrong artifact.
func TestBundlesIntotoEd25519(t *testing.T) {
	r := newRekorLog(t)
	dir := t.TempDir()
	r.add(t, "pre", 2)
	cosignRun(t, dir, "generate-key-pair")
	blob := filepath.Join(dir, "artifact.txt")
	os.WriteFile(blob, []byte("release 2.0.0\n"), 0o644)
	pred := filepath.Join(dir, "predicate.json")
	os.WriteFile(pred, []byte(`{"buildType":"https://example.com/build","builder":{"id":"ci"}}`), 0o644)
	cosignRun(t, dir, "attest-blob", "--yes", "--key", "cosign.key", "--rekor-url", r.ls.URL, "--rekor-entry-type", "intoto",
		"--predicate", pred, "--type", "slsaprovenance", "--bundle", "att.bundle", blob)
	cosignRun(t, dir, "attest-blob", "--yes", "--key", "cosign.key", "--rekor-url", r.ls.URL,
		"--predicate", pred, "--type", "slsaprovenance", "--bundle", "att-dsse.bundle", blob)

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ed.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cosignRun(t, dir, "import-key-pair", "--key", "ed.pem", "--output-key-prefix", "ed")
	cosignRun(t, dir, "sign-blob", "--yes", "--key", "ed.key", "--rekor-url", r.ls.URL, "--bundle", "ed.bundle", blob)
	cosignRun(t, dir, "sign-blob", "--yes", "--key", "ed.key", "--rekor-url", r.ls.URL, "--new-bundle-format", "--bundle", "ed.sigstore.json", blob)

	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+r.vkey+"\nquorum none\n"), 0o600)
	mdir := t.TempDir()
	now := time.Now()
	e := newExporter(t, export.Config{Source: r.ls.URL, Kind: export.KindRekorV1, Dir: mdir, PolicyFile: policy}, &now)
	if _, err := e.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	kitFile := filepath.Join(t.TempDir(), "kit.tar")
	mustRun(t, "kit", "--dir", mdir, "--out", kitFile)

	for _, c := range []struct {
		file, kind string
		artifact   bool
	}{
		{"att.bundle", "intoto/0.0.1", false},
		{"att-dsse.bundle", "dsse/0.0.1", false},
		{"ed.bundle", "hashedrekord/0.0.1", true},
		{"ed.sigstore.json", "hashedrekord/0.0.1", true},
	} {
		args := []string{"--kit", kitFile, "--bundle", filepath.Join(dir, c.file)}
		if c.artifact {
			args = append(args, "--artifact", blob)
		}
		code, v, out := verdictOf(t, args...)
		if code != 0 || !v.Verified || len(v.Bundles) != 1 {
			t.Fatalf("%s: exit %d\n%s", c.file, code, out)
		}
		res := v.Bundles[0]
		if res.Kind != c.kind || !res.Checks.Signature || !res.Checks.Inclusion || !res.Checks.SET || len(res.Signer.Keys) != 1 {
			t.Fatalf("%s: %+v", c.file, res)
		}
	}

	sigstoreGoAccepts(t, r, filepath.Join(dir, "ed.sigstore.json"), filepath.Join(dir, "ed.pub"))
	if sigstoreGoVerify(t, r, filepath.Join(dir, "ed.sigstore.json"), filepath.Join(dir, "cosign.pub")) == nil {
		t.Error("sigstore-go accepts the Ed25519 bundle with another signer key: the cross-check proves nothing")
	}

	// The legacy attest-blob bundle: base64Signature is the envelope.
	var att map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "att.bundle"))
	json.Unmarshal(data, &att)
	envRaw, err := base64.StdEncoding.DecodeString(att["base64Signature"].(string))
	if err != nil {
		t.Fatal(err)
	}
	withEnvelope := func(name string, mutate func(env map[string]any)) string {
		var env map[string]any
		if err := json.Unmarshal(envRaw, &env); err != nil {
			t.Fatal(err)
		}
		mutate(env)
		raw, _ := json.Marshal(env)
		att["base64Signature"] = base64.StdEncoding.EncodeToString(raw)
		out, _ := json.Marshal(att)
		f := filepath.Join(dir, name)
		os.WriteFile(f, out, 0o644)
		return f
	}
	payload, _ := base64.StdEncoding.DecodeString(mustEnvelope(t, envRaw)["payload"].(string))
	tamperedPayload := withEnvelope("payload.bundle", func(env map[string]any) {
		env["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte("ci"), []byte("evil"), 1))
	})
	tamperedSig := withEnvelope("sig.bundle", func(env map[string]any) {
		sigs := env["signatures"].([]any)
		s := sigs[0].(map[string]any)
		b, _ := base64.StdEncoding.DecodeString(s["sig"].(string))
		b[len(b)-1] ^= 1
		s["sig"] = base64.StdEncoding.EncodeToString(b)
	})
	// The same envelope re-serialised: same payload and signatures, not
	// the bytes the log recorded.
	reserialised := withEnvelope("reser.bundle", func(map[string]any) {})

	var ed map[string]any
	data, _ = os.ReadFile(filepath.Join(dir, "ed.bundle"))
	json.Unmarshal(data, &ed)
	sig, _ := base64.StdEncoding.DecodeString(ed["base64Signature"].(string))
	sig[0] ^= 1
	ed["base64Signature"] = base64.StdEncoding.EncodeToString(sig)
	edTampered := filepath.Join(dir, "ed-sig.bundle")
	data, _ = json.Marshal(ed)
	os.WriteFile(edTampered, data, 0o644)
	wrong := filepath.Join(dir, "wrong.txt")
	os.WriteFile(wrong, []byte("release 6.6.6\n"), 0o644)

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"intoto tampered payload", []string{"--bundle", tamperedPayload}, "signature: the envelope hashes to"},
		{"intoto tampered envelope signature", []string{"--bundle", tamperedSig}, "signature: the envelope hashes to"},
		{"intoto envelope not as logged", []string{"--bundle", reserialised}, "signature: the envelope hashes to"},
		{"ed25519 tampered signature", []string{"--bundle", edTampered, "--artifact", blob}, "signature: the bundle's signature is not the logged one"},
		{"ed25519 wrong artifact", []string{"--bundle", filepath.Join(dir, "ed.sigstore.json"), "--artifact", wrong}, "signature: the artifact's sha512"},
	} {
		code, v, out := verdictOf(t, append([]string{"--kit", kitFile}, c.args...)...)
		if code != ExitFail || v.Verified || v.Bundles[0].Checks.Signature || !strings.Contains(strings.Join(v.Failures, "\n"), c.want) {
			t.Errorf("%s: exit %d, want failure %q:\n%s", c.name, code, c.want, out)
		}
	}
}

// sigstoreGoAccepts checks with sigstore-go v1.3.0's verifier that the
// tlog part of a sigstore bundle the mirror accepted (SET, inclusion proof
// and checkpoint, the entry matching the bundle's signature content)
// verifies under a trusted root made from the log's key, with the signer's
// key (PEM file) as the bundle's public key.
func sigstoreGoAccepts(t *testing.T, r *rekorLog, file, signerPub string) {
	t.Helper()
	if err := sigstoreGoVerify(t, r, file, signerPub); err != nil {
		t.Errorf("sigstore-go rejects %s, which the mirror accepts: %v", filepath.Base(file), err)
	}
}

func sigstoreGoVerify(t *testing.T, r *rekorLog, file, signerPub string) error {
	t.Helper()
	pemBytes, err := os.ReadFile(r.ls.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(blk.Bytes)
	tl := &root.TransparencyLog{BaseURL: r.ls.URL, ID: id[:], ValidityPeriodStart: time.Now().Add(-24 * time.Hour),
		HashFunc: crypto.SHA256, PublicKey: pub, SignatureHashFunc: crypto.SHA256}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, nil, nil, nil, map[string]*root.TransparencyLog{hex.EncodeToString(id[:]): tl})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(signerPub)
	if err != nil {
		t.Fatal(err)
	}
	spub, _, err := evidence.KeyMaterial(data)
	if err != nil {
		t.Fatal(err)
	}
	var opts []signature.LoadOption
	if _, ok := spub.(ed25519.PublicKey); ok {
		opts = append(opts, options.WithED25519ph())
	}
	sv, err := signature.LoadVerifierWithOpts(spub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	keys := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
	})
	b, err := bundle.LoadJSONFromPath(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify.VerifyTlogEntry(b, root.TrustedMaterialCollection{tr, keys}, 1, true)
	return err
}

func mustEnvelope(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	return env
}
