package rekorpeer

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	rekorssh "github.com/sigstore/rekor/pkg/pki/ssh"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/theupdateframework/go-tuf"
	"github.com/veraison/go-cose"
	"golang.org/x/crypto/ssh"

	"github.com/stellaops/tlog/testing/entries"
)

// A kindCase is one input of one kind, as rekor-cli would propose it, and
// the public keys a client would search for it with.
type kindCase struct {
	name string
	pe   models.ProposedEntry
	keys []*models.SearchIndexPublicKey
}

// rekorModuleDir is the module cache directory of sigstore/rekor v1.5.4,
// whose test fixtures (signed rpm, jar, apk, helm provenance, TUF
// metadata, RFC 3161 token, COSE message, PGP and minisign signatures) the
// cases reuse.
func rekorModuleDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/sigstore/rekor").Output()
	if err != nil {
		t.Fatalf("go list rekor module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if !strings.HasSuffix(dir, "@v1.5.4") {
		t.Fatalf("rekor module is %s, want v1.5.4", dir)
	}
	return dir
}

func readFile(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func propose(t testing.TB, kind, version string, p types.ArtifactProperties) models.ProposedEntry {
	t.Helper()
	pe, err := types.NewProposedEntry(context.Background(), kind, version, p)
	if err != nil {
		t.Fatalf("propose %s %s: %v", kind, version, err)
	}
	return pe
}

func pubKey(format string, content []byte) *models.SearchIndexPublicKey {
	return &models.SearchIndexPublicKey{Format: &format, Content: content}
}

// x509Identity is an ECDSA P-256 key with a self-signed certificate for
// an e-mail address and a URI (Rekor indexes both, lower-cased).
type x509Identity struct {
	key     *ecdsa.PrivateKey
	pubPEM  []byte
	certPEM []byte
}

func newX509Identity(t testing.TB, email string) *x509Identity {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(time.Now().UnixNano()),
		Subject:        pkix.Name{CommonName: "kinds"},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(time.Hour),
		EmailAddresses: []string{email},
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return &x509Identity{key: k,
		pubPEM:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})}
}

func (x *x509Identity) sign(t testing.TB, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, x.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func randomArtifact(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(hex.EncodeToString(b))
}

// jarSignatureBlock is the PKCS#7 signature block of a signed JAR (what a
// client searches a jar entry's key with, --pki-format pkcs7).
func jarSignatureBlock(t testing.TB, jar []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(jar), int64(len(jar)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if strings.HasPrefix(f.Name, "META-INF/") && (strings.HasSuffix(f.Name, ".RSA") || strings.HasSuffix(f.Name, ".EC") || strings.HasSuffix(f.Name, ".DSA")) {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			_, err = buf.ReadFrom(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
	}
	t.Fatal("no signature block in the jar")
	return nil
}

// kindCases returns one case for every kind and version of Rekor v1.5.4,
// and for rekord one per public-key format.
func kindCases(t testing.TB) []kindCase {
	t.Helper()
	rk := rekorModuleDir(t)
	var cs []kindCase

	// hashedrekord: a bare key, and a certificate with an e-mail SAN.
	signer, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	pe, err := signer.HashedRekord(randomArtifact(t))
	if err != nil {
		t.Fatal(err)
	}
	cs = append(cs, kindCase{"hashedrekord/x509-key", pe, []*models.SearchIndexPublicKey{pubKey("x509", signer.PubPEM)}})
	id := newX509Identity(t, "Kinds.HashedRekord@Stella.Test")
	art := randomArtifact(t)
	d := sha256.Sum256(art)
	cs = append(cs, kindCase{"hashedrekord/x509-cert", propose(t, "hashedrekord", "0.0.1", types.ArtifactProperties{
		ArtifactHash: "sha256:" + hex.EncodeToString(d[:]), SignatureBytes: id.sign(t, art),
		PublicKeyBytes: [][]byte{id.certPEM}, PKIFormat: "x509"}),
		[]*models.SearchIndexPublicKey{pubKey("x509", id.certPEM)}})

	// rekord, with each of its public-key formats.
	pgpKey := readFile(t, rk, "pkg/pki/pgp/testdata/valid_armored_public.pgp")
	cs = append(cs, kindCase{"rekord/pgp", propose(t, "rekord", "0.0.1", types.ArtifactProperties{
		ArtifactBytes:  readFile(t, rk, "pkg/pki/pgp/testdata/hello_world.txt"),
		SignatureBytes: readFile(t, rk, "pkg/pki/pgp/testdata/hello_world.txt.asc.sig"),
		PublicKeyBytes: [][]byte{pgpKey}, PKIFormat: "pgp"}),
		[]*models.SearchIndexPublicKey{pubKey("pgp", pgpKey)}})
	mini := readFile(t, rk, "pkg/pki/minisign/testdata/minisign.pub")
	cs = append(cs, kindCase{"rekord/minisign", propose(t, "rekord", "0.0.1", types.ArtifactProperties{
		ArtifactBytes:  readFile(t, rk, "pkg/pki/minisign/testdata/hello_world.txt"),
		SignatureBytes: readFile(t, rk, "pkg/pki/minisign/testdata/hello_world.txt.minisig"),
		PublicKeyBytes: [][]byte{mini}, PKIFormat: "minisign"}),
		[]*models.SearchIndexPublicKey{pubKey("minisign", mini)}})
	sshPub, sshPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sshPriv, "kinds@stella.test")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(sshPub)
	if err != nil {
		t.Fatal(err)
	}
	sshPubBytes := ssh.MarshalAuthorizedKey(sp)
	art = randomArtifact(t)
	sshSig, err := rekorssh.Sign(string(pem.EncodeToMemory(block)), bytes.NewReader(art))
	if err != nil {
		t.Fatal(err)
	}
	cs = append(cs, kindCase{"rekord/ssh", propose(t, "rekord", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: art, SignatureBytes: sshSig, PublicKeyBytes: [][]byte{sshPubBytes}, PKIFormat: "ssh"}),
		[]*models.SearchIndexPublicKey{pubKey("ssh", sshPubBytes)}})
	id = newX509Identity(t, "Kinds.Rekord@Stella.Test")
	art = randomArtifact(t)
	cs = append(cs, kindCase{"rekord/x509-cert", propose(t, "rekord", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: art, SignatureBytes: id.sign(t, art), PublicKeyBytes: [][]byte{id.certPEM}, PKIFormat: "x509"}),
		[]*models.SearchIndexPublicKey{pubKey("x509", id.certPEM)}})
	art = randomArtifact(t)
	cs = append(cs, kindCase{"rekord/x509-key", propose(t, "rekord", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: art, SignatureBytes: id.sign(t, art), PublicKeyBytes: [][]byte{id.pubPEM}, PKIFormat: "x509"}),
		[]*models.SearchIndexPublicKey{pubKey("x509", id.pubPEM)}})

	// dsse and intoto, from the same producer key as cosign would send them.
	pe, err = signer.DSSE(randomArtifact(t))
	if err != nil {
		t.Fatal(err)
	}
	cs = append(cs, kindCase{"dsse", pe, []*models.SearchIndexPublicKey{pubKey("x509", signer.PubPEM)}})
	for _, v := range []string{"0.0.1", "0.0.2"} {
		pe, err = signer.Intoto(v, randomArtifact(t))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, kindCase{"intoto/" + v, pe, []*models.SearchIndexPublicKey{pubKey("x509", signer.PubPEM)}})
	}

	// The artifact kinds, from Rekor's own signed fixtures.
	id = newX509Identity(t, "kinds.cose@stella.test")
	aad := []byte("additional authenticated data")
	cs = append(cs, kindCase{"cose", propose(t, "cose", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: coseSign1(t, id.key, randomArtifact(t), aad), PublicKeyBytes: [][]byte{id.pubPEM},
		AdditionalAuthenticatedData: aad}),
		[]*models.SearchIndexPublicKey{pubKey("x509", id.pubPEM)}})
	jar := readFile(t, rk, "pkg/types/jar/v0.0.1/tests/test.jar")
	// Rekor indexes a jar by its hash only; its key (PKCS#7) is not a
	// search format (searchRefused).
	cs = append(cs, kindCase{"jar", propose(t, "jar", "0.0.1", types.ArtifactProperties{ArtifactBytes: jar}), nil})
	rpmKey := readFile(t, rk, "pkg/types/rpm/tests/test_rpm_public_key.key")
	cs = append(cs, kindCase{"rpm", propose(t, "rpm", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: readFile(t, rk, "pkg/types/rpm/tests/test.rpm"), PublicKeyBytes: [][]byte{rpmKey}}),
		[]*models.SearchIndexPublicKey{pubKey("pgp", rpmKey)}})
	helmKey := readFile(t, rk, "pkg/types/helm/tests/test_helm_armor.pub")
	cs = append(cs, kindCase{"helm", propose(t, "helm", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: readFile(t, rk, "pkg/types/helm/tests/test-0.1.0.tgz.prov"), PublicKeyBytes: [][]byte{helmKey}}),
		[]*models.SearchIndexPublicKey{pubKey("pgp", helmKey)}})
	apkKey := readFile(t, rk, "pkg/types/alpine/tests/test_alpine.pub")
	cs = append(cs, kindCase{"alpine", propose(t, "alpine", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: readFile(t, rk, "pkg/types/alpine/tests/test_alpine.apk"), PublicKeyBytes: [][]byte{apkKey}}),
		[]*models.SearchIndexPublicKey{pubKey("x509", apkKey)}})
	cs = append(cs, kindCase{"rfc3161", propose(t, "rfc3161", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: readFile(t, rk, "pkg/types/rfc3161/tests/test.tsr")}), nil})
	// TUF: fresh metadata (the fixtures have expired, and Rekor refuses
	// expired metadata), generated as Rekor's own e2e test does.
	timestamp, root := tufMetadata(t)
	cs = append(cs, kindCase{"tuf", propose(t, "tuf", "0.0.1", types.ArtifactProperties{
		ArtifactBytes: timestamp, PublicKeyBytes: [][]byte{root}}),
		[]*models.SearchIndexPublicKey{pubKey("tuf", root)}})
	return cs
}

// tufMetadata returns the timestamp and root metadata of a new TUF
// repository with one target.
func tufMetadata(t testing.TB) (timestamp, root []byte) {
	t.Helper()
	store := tuf.MemoryStore(nil, map[string][]byte{"artifact.txt": randomArtifact(t)})
	repo, err := tuf.NewRepo(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Init(false); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"root", "snapshot", "targets", "timestamp"} {
		if _, err := repo.GenKey(role); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []func() error{
		func() error { return repo.AddTarget("artifact.txt", nil) },
		repo.Snapshot, repo.Timestamp, repo.Commit,
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := store.GetMeta()
	if err != nil {
		t.Fatal(err)
	}
	return meta["timestamp.json"], meta["root.json"]
}

// coseSign1 is a COSE_Sign1 message (ES256) over payload with external
// additional authenticated data aad.
func coseSign1(t testing.TB, key *ecdsa.PrivateKey, payload, aad []byte) []byte {
	t.Helper()
	signer, err := cose.NewSigner(cose.AlgorithmES256, key)
	if err != nil {
		t.Fatal(err)
	}
	msg := cose.NewSign1Message()
	msg.Payload = payload
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmES256)
	msg.Headers.Protected[cose.HeaderLabelContentType] = "text/plain"
	if err := msg.Sign(rand.Reader, aad, signer); err != nil {
		t.Fatal(err)
	}
	b, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
