package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/mirror/store"
	"github.com/stellaops/tlog/mirror/tiles"
	"github.com/stellaops/tlog/mirror/trust"
)

// addFiles appends the given entries (in order) with posix-oneshot.
func (l *tessera) addFiles(prefix string, contents ...[]byte) {
	l.t.Helper()
	entries := filepath.Join(l.dir, "entries-"+prefix)
	os.Mkdir(entries, 0o700)
	for i, c := range contents {
		os.WriteFile(filepath.Join(entries, fmt.Sprintf("%06d", i)), c, 0o600)
	}
	l.addDir(entries, len(contents))
}

// TestBundlesTesseraV2 logs a Rekor v2 hashedrekord 0.0.2 body and a DSSE
// envelope in a tessera log cosigned by our witness, mirrors it, and checks
// a sigstore bundle v0.3 with the v2 entry and the envelope with its
// c2sp.org/tlog-proof against the kit: witnessed, aged by the cosignature.
func TestBundlesTesseraV2(t *testing.T) {
	const origin = "example.com/tessera-v2"
	l := newTessera(t, origin)
	w := startWitness(t, "witness.test/w2", origin, l.vkey)
	l.witnessedBy(w)
	l.add("pre", 7)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "signer.pub")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	artifact := []byte("image sha256 of release 2\n")
	digest := sha256.Sum256(artifact)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	body := fmt.Appendf(nil, `{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":"SHA2_256","digest":%q},"signature":{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}}}}`,
		b64(digest[:]), b64(sig), b64(der))
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"release","digest":{"sha256":"` + fmt.Sprintf("%x", digest) + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`)
	ptype := "application/vnd.in-toto+json"
	pd := sha256.Sum256(pae(ptype, payload))
	esig, _ := ecdsa.SignASN1(rand.Reader, key, pd[:])
	envelope, _ := json.Marshal(map[string]any{"payloadType": ptype, "payload": payload, "signatures": []map[string]any{{"keyid": "", "sig": esig}}})
	l.addFiles("evidence", body, envelope)
	l.add("post", 3)
	const bodyIndex, envIndex = 7, 8

	// Mirror it and pack the kit.
	srv := serveDir(t, l.storage)
	policy := writePolicy(t, l.vkey, w)
	mdir := t.TempDir()
	now := time.Now()
	if _, err := newExporter(t, export.Config{Source: srv.URL, Dir: mdir, PolicyFile: policy}, &now).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	kitFile := filepath.Join(t.TempDir(), "kit.tar.gz")
	mustRun(t, "kit", "--dir", mdir, "--out", kitFile)

	// Proofs from the log's own tiles, against its witnessed checkpoint.
	cp, _ := os.ReadFile(filepath.Join(l.storage, "checkpoint"))
	tr, err := tiles.Open(context.Background(), tiles.Layers{Layers: []interface {
		Tile(c2sp.TileRef) ([]byte, error)
	}{store.FileTiles{Root: l.storage}}}, int64(l.n))
	if err != nil {
		t.Fatal(err)
	}
	proofOf := func(i int64) [][]byte {
		p, err := tr.InclusionProof(context.Background(), i, int64(l.n))
		if err != nil {
			t.Fatal(err)
		}
		out := make([][]byte, len(p))
		for j := range p {
			out[j] = append([]byte(nil), p[j][:]...)
		}
		return out
	}
	tt, _ := trust.Load(policy, "")
	root, _ := tr.Root(context.Background(), int64(l.n))
	logID := sha256.Sum256(tt.Logs[0].SPKI)
	b := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "signer"}},
			TlogEntries: []*protorekor.TransparencyLogEntry{{
				LogIndex: bodyIndex, LogId: &protocommon.LogId{KeyId: logID[:]},
				KindVersion: &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.2"},
				InclusionProof: &protorekor.InclusionProof{LogIndex: bodyIndex, RootHash: root[:], TreeSize: int64(l.n), Hashes: proofOf(bodyIndex),
					Checkpoint: &protorekor.Checkpoint{Envelope: string(cp)}},
				CanonicalizedBody: body,
			}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: digest[:]}, Signature: sig}},
	}
	bj, _ := protojson.Marshal(b)
	bundleFile := filepath.Join(dir, "v2.sigstore.json")
	os.WriteFile(bundleFile, bj, 0o644)
	if _, err := bundle.LoadJSONFromPath(bundleFile); err != nil {
		t.Fatalf("sigstore-go rejects the v2 bundle: %v", err)
	}
	envFile := filepath.Join(dir, "attestation.dsse.json")
	os.WriteFile(envFile, envelope, 0o644)
	var hs [][c2sp.HashSize]byte
	for _, h := range proofOf(envIndex) {
		hs = append(hs, [c2sp.HashSize]byte(h))
	}
	os.WriteFile(filepath.Join(dir, "attestation.dsse.tlog-proof"), (&c2sp.Proof{Index: envIndex, Hashes: hs, Checkpoint: cp}).Marshal(), 0o644)

	artFile := filepath.Join(dir, "artifact")
	os.WriteFile(artFile, artifact, 0o644)
	code, v, out := verdictOf(t, "--kit", kitFile, "--bundle", bundleFile, "--bundle", envFile, "--key", keyFile, "--max-age", "1h")
	if code != 0 || !v.Verified || !v.Witnessed || v.Attestations.RekorAgeHours == nil || *v.Attestations.RekorAgeHours > 1 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, r := range v.Bundles {
		if !r.Witnessed || r.AgeHours == nil || !r.Checks.Signature || !r.Checks.Inclusion {
			t.Fatalf("%s: %+v", r.File, r)
		}
	}
	if v.Bundles[0].Kind != "hashedrekord/0.0.2" || v.Bundles[1].Format != "dsse+tlog-proof" {
		t.Fatalf("kinds: %s %s", v.Bundles[0].Kind, v.Bundles[1].Format)
	}
	mustRun(t, "verify", "--kit", kitFile, "--bundle", bundleFile, "--artifact", artFile)

	// Tampering: no signer key for the envelope, another key, an altered
	// proof, an altered payload.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oder, _ := x509.MarshalPKIXPublicKey(&otherKey.PublicKey)
	otherFile := filepath.Join(dir, "other.pub")
	os.WriteFile(otherFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: oder}), 0o644)
	badProof := filepath.Join(dir, "bad.dsse.json")
	os.WriteFile(badProof, envelope, 0o644)
	hs[0][0] ^= 1
	os.WriteFile(filepath.Join(dir, "bad.dsse.tlog-proof"), (&c2sp.Proof{Index: envIndex, Hashes: hs, Checkpoint: cp}).Marshal(), 0o644)
	altered := filepath.Join(dir, "altered.dsse.json")
	os.WriteFile(altered, []byte(strings.Replace(string(envelope), `"payloadType":"application/vnd.in-toto+json"`, `"payloadType":"application/vnd.in-toto+jsoN"`, 1)), 0o644)
	hs[0][0] ^= 1
	os.WriteFile(filepath.Join(dir, "altered.dsse.tlog-proof"), (&c2sp.Proof{Index: envIndex, Hashes: hs, Checkpoint: cp}).Marshal(), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundle", envFile}, "needs the signer's key"},
		{[]string{"--bundle", envFile, "--key", otherFile}, "no envelope signature verifies"},
		{[]string{"--bundle", badProof, "--key", keyFile}, "bundled inclusion proof does not verify"},
		{[]string{"--bundle", altered, "--key", keyFile}, "is not this entry"},
	} {
		code, v, out := verdictOf(t, append([]string{"--kit", kitFile}, c.args...)...)
		if code != ExitFail || v.Verified || !strings.Contains(strings.Join(v.Failures, "\n"), c.want) {
			t.Errorf("%v: exit %d, want %q:\n%s", c.args, code, c.want, out)
		}
	}
}

func pae(typ string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(typ), typ, len(payload), payload)
}
