package rekorv2_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/hashedrekord"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	sgtlog "github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/stack"
)

type env struct {
	ls     *stack.Logserver
	dir    string
	vkey   string // v2 note verifier key
	pubPEM []byte // v2 log public key
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "v2")
	dir := t.TempDir()
	e := &env{dir: dir}
	e.ls = stack.StartLogserver(t, dsn, dir, func(c *config.Config) {
		c.Witnessing = config.Witnessing{Origin: "v1.stella.test/log", KeyFile: filepath.Join(dir, "v1note.pem"), CreateKey: true}
		c.RekorV2 = &config.RekorV2{URL: "http://127.0.0.1", KeyFile: filepath.Join(dir, "v2.pem"), CreateKey: true,
			VKeyFile: filepath.Join(dir, "v2.vkey"), PublicKeyFile: filepath.Join(dir, "v2.pub.pem")}
	})
	vk, err := os.ReadFile(filepath.Join(dir, "v2.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	e.vkey = strings.TrimSpace(string(vk))
	if e.pubPEM, err = os.ReadFile(filepath.Join(dir, "v2.pub.pem")); err != nil {
		t.Fatal(err)
	}
	return e
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func (e *env) post(t *testing.T, body []byte) answer {
	t.Helper()
	resp, err := http.Post(e.ls.URL+"/api/v2/log/entries", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

type keyPair struct {
	k   *ecdsa.PrivateKey
	der []byte
}

func newKey(t *testing.T) keyPair {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return keyPair{k, der}
}

// request is a hashedrekord 0.0.2 request for artifact as cosign v3 sends
// it; sigKey signs, verKey is the key named in the request.
func request(t *testing.T, artifact []byte, sigKey, verKey keyPair) ([]byte, []byte, []byte) {
	return requestSigned(t, artifact, sigKey, verKey)
}

func requestTB(t testing.TB, artifact []byte, key keyPair) ([]byte, []byte, []byte) {
	return requestSigned(t, artifact, key, key)
}

func ecdsaCurve() elliptic.Curve { return elliptic.P256() }

func requestSigned(t testing.TB, artifact []byte, sigKey, verKey keyPair) ([]byte, []byte, []byte) {
	d := sha256.Sum256(artifact)
	sig, err := ecdsa.SignASN1(rand.Reader, sigKey.k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(fmt.Sprintf(`{"hashedRekordRequestV002":{"digest":%q,"signature":{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}}}`,
		base64.StdEncoding.EncodeToString(d[:]), base64.StdEncoding.EncodeToString(sig), base64.StdEncoding.EncodeToString(verKey.der))), d[:], sig
}

func wantStatus(t *testing.T, what string, a answer, code int, grpcCode int, msg string) {
	t.Helper()
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []any  `json:"details"`
	}
	if a.code != code || json.Unmarshal(a.body, &st) != nil || st.Code != grpcCode || !strings.Contains(st.Message, msg) || st.Details == nil {
		t.Fatalf("%s: %d %s; want %d {code %d, message ~%q, details []}", what, a.code, a.body, code, grpcCode, msg)
	}
}

// The v2 API as a raw client sees it: 201 with a TransparencyLogEntry whose
// body is rekor-tiles' canonical body (rebuilt by rekor-tiles' own
// ToEntryHash) and whose proof verifies under the checkpoint with
// sigstore-go; rekor-tiles' errors for duplicate, malformed, wrong key and
// unsupported kinds; search; the v2 tiles checked by tessera's fsck.
func TestRekorV2API(t *testing.T) {
	e := newEnv(t)
	key := newKey(t)
	var tles []*rekorpb.TransparencyLogEntry
	for i := 0; i < 5; i++ {
		req, digest, sig := request(t, []byte(fmt.Sprintf("artifact %d", i)), key, key)
		a := e.post(t, req)
		if a.code != http.StatusCreated || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("create: %d %s", a.code, a.body)
		}
		var tle rekorpb.TransparencyLogEntry
		if err := protojson.Unmarshal(a.body, &tle); err != nil {
			t.Fatal(err)
		}
		tles = append(tles, &tle)
		if tle.LogIndex != int64(i) || tle.KindVersion.Kind != "hashedrekord" || tle.KindVersion.Version != "0.0.2" ||
			tle.InclusionPromise != nil || tle.IntegratedTime != 0 {
			t.Fatalf("entry %d: %s", i, a.body)
		}
		// rekor-tiles' reconstruction gives the leaf of our body.
		want, err := hashedrekord.ToEntryHash(digest, &pb.Signature{Content: sig,
			Verifier: &pb.Verifier{KeyDetails: 5 /* PKIX_ECDSA_P256_SHA_256 */, Verifier: &pb.Verifier_PublicKey{PublicKey: &pb.PublicKey{RawBytes: key.der}}}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, rfc6962.DefaultHasher.HashLeaf(tle.CanonicalizedBody)) {
			t.Fatalf("canonical body %s does not rebuild", tle.CanonicalizedBody)
		}
		// sigstore-go: checkpoint (origin = host of the URL) and inclusion.
		entry, err := sgtlog.ParseTransparencyLogEntry(&tle)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := x509.ParsePKIXPublicKey(mustPEM(t, e.pubPEM))
		if err != nil {
			t.Fatal(err)
		}
		ver, err := signature.LoadVerifier(pub, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := sgtlog.VerifyCheckpointAndInclusion(entry, ver, "127.0.0.1"); err != nil {
			t.Fatalf("sigstore-go: %v", err)
		}
		if err := sgtlog.VerifyCheckpointAndInclusion(entry, ver, "rekor.other"); err == nil {
			t.Fatal("checkpoint verified under another origin")
		}
	}
	if !bytes.HasPrefix([]byte(tles[4].InclusionProof.Checkpoint.Envelope), []byte("127.0.0.1\n5\n")) {
		t.Fatalf("checkpoint %q", tles[4].InclusionProof.Checkpoint.Envelope)
	}

	// Duplicate: 409, X-Log-Index, rekor-tiles' message.
	dupBody, err := protojson.Marshal(&pb.CreateEntryRequest{Spec: &pb.CreateEntryRequest_HashedRekordRequestV002{
		HashedRekordRequestV002: &pb.HashedRekordRequestV002{Digest: digestOf(tles[3]), Signature: sigOf(tles[3])}}})
	if err != nil {
		t.Fatal(err)
	}
	a := e.post(t, dupBody)
	wantStatus(t, "duplicate", a, http.StatusConflict, 6, "an equivalent entry already exists in the transparency log with index 3")
	if a.header.Get("X-Log-Index") != "3" {
		t.Fatalf("duplicate: X-Log-Index %q", a.header.Get("X-Log-Index"))
	}

	other := newKey(t)
	wrongKey, _, _ := request(t, []byte("signed by another"), other, key)
	for _, c := range []struct {
		what string
		body string
		msg  string
	}{
		{"malformed JSON", `{"hashedRekordRequestV002":`, "unexpected EOF"},
		{"unknown field", `{"hashedRekordRequestV002":{},"bogus":1}`, "unknown field"},
		{"empty request", `{}`, "invalid type, must be either hashedrekord or dsse"},
		{"wrong key", string(wrongKey), "invalid hashedrekord request"},
		{"missing signature", `{"hashedRekordRequestV002":{"digest":"AAAA"}}`, "invalid hashedrekord request"},
		{"v1 proposed entry", `{"kind":"hashedrekord","apiVersion":"0.0.1","spec":{}}`, "unknown field"},
		{"dsse without verifiers", `{"dsseRequestV002":{"envelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AAAA","keyid":""}]},"verifiers":[]}}`, "invalid dsse request"},
		{"dsse wrong key", string(dsseRequest(t, other, key)), "invalid dsse request"},
	} {
		wantStatus(t, c.what, e.post(t, []byte(c.body)), http.StatusBadRequest, 3, c.msg)
	}

	// dsse 0.0.2 (dropped by rekor-tiles v2.3.0, sent by cosign v2): logged
	// as rekor-tiles v2.2 logged it.
	dreq := dsseRequest(t, key, key)
	a = e.post(t, dreq)
	if a.code != http.StatusCreated {
		t.Fatalf("dsse: %d %s", a.code, a.body)
	}
	var dtle rekorpb.TransparencyLogEntry
	if err := protojson.Unmarshal(a.body, &dtle); err != nil {
		t.Fatal(err)
	}
	var dr struct {
		DsseRequestV002 struct {
			Envelope struct {
				Payload    []byte `json:"payload"`
				Signatures []struct {
					Sig []byte `json:"sig"`
				} `json:"signatures"`
			} `json:"envelope"`
		} `json:"dsseRequestV002"`
	}
	if err := json.Unmarshal(dreq, &dr); err != nil {
		t.Fatal(err)
	}
	ph := sha256.Sum256(dr.DsseRequestV002.Envelope.Payload)
	wantBody := fmt.Sprintf(`{"apiVersion":"0.0.2","kind":"dsse","spec":{"dsseV002":{"payloadHash":{"algorithm":"SHA2_256","digest":%q},"signatures":[{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}]}}}`,
		base64.StdEncoding.EncodeToString(ph[:]), base64.StdEncoding.EncodeToString(dr.DsseRequestV002.Envelope.Signatures[0].Sig), base64.StdEncoding.EncodeToString(key.der))
	if string(dtle.CanonicalizedBody) != wantBody || dtle.KindVersion.Kind != "dsse" || dtle.KindVersion.Version != "0.0.2" || dtle.LogIndex != 5 {
		t.Fatalf("dsse entry %s:\nbody %s\nwant %s", a.body, dtle.CanonicalizedBody, wantBody)
	}
	wantStatus(t, "dsse duplicate", e.post(t, dreq), http.StatusConflict, 6, "with index 5")

	// Search by artifact digest and by public key.
	d := sha256.Sum256([]byte("artifact 2"))
	if got := search(t, e.ls.URL+"/api/v2/log/entries?digest=sha256:"+hex.EncodeToString(d[:])); got != `{"logIndexes":["2"]}` {
		t.Fatalf("search by digest: %s", got)
	}
	if got := search(t, e.ls.URL+"/api/v2/log/entries?publicKey="+url.QueryEscape(base64.StdEncoding.EncodeToString(key.der))); got != `{"logIndexes":["0","1","2","3","4","5"]}` {
		t.Fatalf("search by key: %s", got)
	}
	if got := search(t, e.ls.URL+"/api/v2/log/entries?publicKey="+url.QueryEscape(base64.StdEncoding.EncodeToString(other.der))); got != `{"logIndexes":[]}` {
		t.Fatalf("search by unknown key: %s", got)
	}

	// v1 search never finds a v2 entry (the index table is shared).
	resp, err := http.Post(e.ls.URL+"/api/v1/index/retrieve", "application/json",
		strings.NewReader(`{"hash":"sha256:`+hex.EncodeToString(d[:])+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	v1hits, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(v1hits)) != "[]" {
		t.Fatalf("v1 search found v2 entries: %d %s", resp.StatusCode, v1hits)
	}

	// The two logs stay apart: the v1 log has no entry, the v2 tiles hold
	// the v2 bodies and pass fsck under the v2 note key.
	if code, body := get(t, e.ls.URL+"/api/v1/log/entries?logIndex=0"); code != http.StatusNotFound {
		t.Fatalf("v1 log has entry 0: %d %s", code, body)
	}
	waitCheckpoint(t, e.ls.URL+"/api/v2/checkpoint", e.vkey, 6)
	u, _ := url.Parse(e.ls.URL + "/api/v2/")
	f, _ := client.NewHTTPFetcher(u, nil)
	b, err := client.GetEntryBundle(context.Background(), f.ReadEntryBundle, 0, 6)
	if err != nil || !bytes.Equal(b.Entries[2], tles[2].CanonicalizedBody) {
		t.Fatalf("v2 bundle: %v", err)
	}
	vkeyFile := filepath.Join(e.dir, "v2.vkey")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, stack.Fsck.Install(t), "--ui=false", "--storage_url="+e.ls.URL+"/api/v2/", "--public_key="+vkeyFile).CombinedOutput()
	if !strings.Contains(string(out), "Successfully fsck'd") {
		t.Fatalf("fsck of the v2 tiles:\n%s", out)
	}

	// A restart keeps the v2 tree and its entries.
	e.ls.Restart()
	a = e.post(t, dupBody)
	wantStatus(t, "duplicate after restart", a, http.StatusConflict, 6, "with index 3")
	req, _, _ := request(t, []byte("after restart"), key, key)
	if a := e.post(t, req); a.code != http.StatusCreated || !bytes.Contains(a.body, []byte(`"logIndex":"6"`)) {
		t.Fatalf("after restart: %d %s", a.code, a.body)
	}
}

// sigstore-go v1.3.0 signs through our v2 log as a client (sign.Bundle
// with a Rekor v2 transparency log) and verifies the bundle against a
// trusted root naming the log by its baseUrl; a tampered bundle, a wrong
// key and another artifact fail.
func TestSigstoreGoSignVerify(t *testing.T) {
	e := newEnv(t)
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	trusted := e.trustedRoot(t)
	artifact := []byte("release 1.2.3")
	b, err := sign.Bundle(&sign.PlainData{Data: artifact}, kp, sign.BundleOptions{
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: e.ls.URL, Version: 2})},
	})
	if err != nil {
		t.Fatalf("sigstore-go sign through our v2 log: %v", err)
	}
	if err := verifyBundle(t, trusted, kp.GetPublicKey(), kp.GetHint(), b, artifact); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := verifyBundle(t, trusted, kp.GetPublicKey(), kp.GetHint(), b, []byte("release 1.2.5")); err == nil {
		t.Fatal("another artifact (never logged) verified")
	}
	other, _ := sign.NewEphemeralKeypair(nil)
	if err := verifyBundle(t, trusted, other.GetPublicKey(), kp.GetHint(), b, artifact); err == nil {
		t.Fatal("wrong key verified")
	}
	tampered := protojsonClone(t, b)
	tle := tampered.VerificationMaterial.TlogEntries[0]
	tle.InclusionProof.Checkpoint.Envelope = strings.Replace(tle.InclusionProof.Checkpoint.Envelope, "\n1\n", "\n2\n", 1)
	if err := verifyBundle(t, trusted, kp.GetPublicKey(), kp.GetHint(), tampered, artifact); err == nil {
		t.Fatal("tampered checkpoint verified")
	}
	// sigstore-go rebuilds the leaf from the bundle's signature and digest
	// (the body is not trusted): a tampered signature or proof fails.
	tampered = protojsonClone(t, b)
	tampered.GetMessageSignature().Signature[10] ^= 1
	if err := verifyBundle(t, trusted, kp.GetPublicKey(), kp.GetHint(), tampered, artifact); err == nil {
		t.Fatal("tampered signature verified")
	}
	second := []byte("release 1.2.4")
	b2, err := sign.Bundle(&sign.PlainData{Data: second}, kp, sign.BundleOptions{
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: e.ls.URL, Version: 2})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyBundle(t, trusted, kp.GetPublicKey(), kp.GetHint(), b2, second); err != nil {
		t.Fatalf("verify second: %v", err)
	}
	tampered = protojsonClone(t, b2)
	tampered.VerificationMaterial.TlogEntries[0].InclusionProof.Hashes[0][0] ^= 1
	if err := verifyBundle(t, trusted, kp.GetPublicKey(), kp.GetHint(), tampered, second); err == nil {
		t.Fatal("tampered inclusion proof verified")
	}
	// A trusted root whose baseUrl host is not the origin cannot verify.
	wrongHost := e.trustedRootAt(t, strings.Replace(e.ls.URL, "127.0.0.1", "localhost", 1))
	if err := verifyBundle(t, wrongHost, kp.GetPublicKey(), kp.GetHint(), b, artifact); err == nil {
		t.Fatal("verified under another host name")
	}
}

func (e *env) trustedRoot(t *testing.T) *root.TrustedRoot { return e.trustedRootAt(t, e.ls.URL) }

func (e *env) trustedRootAt(t *testing.T, baseURL string) *root.TrustedRoot {
	t.Helper()
	der := mustPEM(t, e.pubPEM)
	id := logIDOf(t, e.vkey)
	js := fmt.Sprintf(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"baseUrl":%q,"hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":%q,"keyDetails":"PKIX_ED25519","validFor":{"start":"2020-01-01T00:00:00Z"}},"logId":{"keyId":%q}}]}`,
		baseURL, base64.StdEncoding.EncodeToString(der), base64.StdEncoding.EncodeToString(id))
	tr, err := root.NewTrustedRootFromJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// logIDOf is the full C2SP key hash of an Ed25519 vkey.
func logIDOf(t *testing.T, vkey string) []byte {
	parts := strings.SplitN(vkey, "+", 3)
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write([]byte(parts[0] + "\n"))
	h.Write(raw)
	return h.Sum(nil)
}

func verifyBundle(t *testing.T, tr *root.TrustedRoot, pub crypto.PublicKey, hint []byte, b *protobundle.Bundle, artifact []byte) error {
	t.Helper()
	sv, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	keys := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{
		string(hint): root.NewExpiringKey(sv, time.Time{}, time.Time{}),
	})
	v, err := verify.NewVerifier(root.TrustedMaterialCollection{tr, keys}, verify.WithTransparencyLog(1), verify.WithNoObserverTimestamps())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sgbundle.NewBundle(b)
	if err != nil {
		return err
	}
	_, err = v.Verify(sb, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(artifact)), verify.WithKey()))
	return err
}

func protojsonClone(t *testing.T, b *protobundle.Bundle) *protobundle.Bundle {
	data, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var c protobundle.Bundle
	if err := protojson.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func digestOf(tle *rekorpb.TransparencyLogEntry) []byte {
	var e pb.Entry
	_ = protojson.Unmarshal(tle.CanonicalizedBody, &e)
	return e.GetSpec().GetHashedRekordV002().GetData().GetDigest()
}

func sigOf(tle *rekorpb.TransparencyLogEntry) *pb.Signature {
	var e pb.Entry
	_ = protojson.Unmarshal(tle.CanonicalizedBody, &e)
	return e.GetSpec().GetHashedRekordV002().GetSignature()
}

func mustPEM(t *testing.T, p []byte) []byte {
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	return b.Bytes
}

func get(t *testing.T, u string) (int, []byte) {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func search(t *testing.T, u string) string {
	code, b := get(t, u)
	if code != 200 {
		t.Fatalf("search %s: %d %s", u, code, b)
	}
	return string(b)
}

func waitCheckpoint(t *testing.T, u, vkey string, size int) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, b := get(t, u)
		if code == 200 {
			n, err := note.Open(b, note.VerifierList(v))
			if err == nil && strings.HasPrefix(n.Text, fmt.Sprintf("127.0.0.1\n%d\n", size)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint at %s: %d %s", u, code, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dsseRequest is a dsse 0.0.2 request of an in-toto statement signed by
// sigKey, naming verKey.
func dsseRequest(t *testing.T, sigKey, verKey keyPair) []byte {
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`)
	const typ = "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(typ), typ, len(payload), payload)
	d := sha256.Sum256([]byte(pae))
	sig, err := ecdsa.SignASN1(rand.Reader, sigKey.k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(fmt.Sprintf(`{"dsseRequestV002":{"envelope":{"payload":%q,"payloadType":%q,"signatures":[{"sig":%q,"keyid":""}]},"verifiers":[{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}]}}`,
		base64.StdEncoding.EncodeToString(payload), typ, base64.StdEncoding.EncodeToString(sig), base64.StdEncoding.EncodeToString(verKey.der)))
}
