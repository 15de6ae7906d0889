package e2e

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"

	tentries "github.com/stellaops/tlog/testing/entries"
)

// rawHashedRekord is a hashedrekord 0.0.1 proposal built by hand, so its
// fields can be wrong on purpose.
func rawHashedRekord(sig []byte, pubPEM []byte, algorithm, value string) map[string]any {
	return map[string]any{
		"kind":       "hashedrekord",
		"apiVersion": "0.0.1",
		"spec": map[string]any{
			"signature": map[string]any{
				"content":   base64.StdEncoding.EncodeToString(sig),
				"publicKey": map[string]any{"content": base64.StdEncoding.EncodeToString(pubPEM)},
			},
			"data": map[string]any{"hash": map[string]any{"algorithm": algorithm, "value": value}},
		},
	}
}

func signDigest(t testing.TB, s *tentries.Signer, digest []byte) []byte {
	t.Helper()
	sig, err := ecdsa.SignASN1(rand.Reader, s.Key, digest)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// badCase is one rejected submission: the status and message parts Rekor
// v1.5.4 answers.
type badCase struct {
	name     string
	body     any
	status   int
	contains []string
}

func badCreateCases(t testing.TB, s *tentries.Signer) []badCase {
	artifact := []byte("bad input artifact")
	d256 := sha256.Sum256(artifact)
	d512 := sha512.Sum512(artifact)
	d1 := sha1.Sum(artifact)
	goodSig := signDigest(t, s, d256[:])
	otherDigest := sha256.Sum256([]byte("something else"))
	wrongSig := signDigest(t, s, otherDigest[:])
	h256 := hex.EncodeToString(d256[:])

	badDSSE, err := s.DSSE(artifact)
	if err != nil {
		t.Fatal(err)
	}
	// Break the envelope signature of a DSSE proposal.
	dsseJSON, _ := json.Marshal(badDSSE)
	var dsse map[string]any
	_ = json.Unmarshal(dsseJSON, &dsse)
	spec := dsse["spec"].(map[string]any)
	env := spec["proposedContent"].(map[string]any)
	var envelope map[string]any
	_ = json.Unmarshal([]byte(env["envelope"].(string)), &envelope)
	envelope["signatures"].([]any)[0].(map[string]any)["sig"] = base64.StdEncoding.EncodeToString(wrongSig)
	envBytes, _ := json.Marshal(envelope)
	env["envelope"] = string(envBytes)

	noKind := rawHashedRekord(goodSig, s.PubPEM, "sha256", h256)
	delete(noKind, "kind")
	noSpec := rawHashedRekord(goodSig, s.PubPEM, "sha256", h256)
	delete(noSpec, "spec")
	kind := func(k, v string) map[string]any {
		m := rawHashedRekord(goodSig, s.PubPEM, "sha256", h256)
		m["kind"], m["apiVersion"] = k, v
		return m
	}

	return []badCase{
		{name: "malformed JSON", body: []byte(`{"kind":"hashedrekord",`), status: 400},
		{name: "not JSON", body: []byte(`hello`), status: 400},
		{name: "empty body", body: []byte{}, status: 422, contains: []string{"proposedEntry in body is required"}},
		{name: "blank body", body: []byte(" \n"), status: 422, contains: []string{"proposedEntry in body is required"}},
		{name: "missing kind", body: noKind, status: 422, contains: []string{"kind in body is required"}},
		{name: "unknown kind", body: kind("nope", "0.0.1"), status: 422, contains: []string{`invalid kind value: "nope"`}},
		{name: "kind not accepted by this log (rekord)", body: kind("rekord", "0.0.1"), status: 400, contains: []string{"error processing entry"}},
		{name: "unknown apiVersion", body: kind("hashedrekord", "9.9.9"), status: 400, contains: []string{"error processing entry"}},
		{name: "apiVersion not semver", body: kind("hashedrekord", "one"), status: 422, contains: []string{"apiVersion"}},
		{name: "missing spec", body: noSpec, status: 422, contains: []string{"spec"}},
		{name: "bad signature", body: rawHashedRekord(wrongSig, s.PubPEM, "sha256", h256), status: 400,
			contains: []string{"error processing entry", "signature"}},
		{name: "signature not base64", body: json.RawMessage(`{"kind":"hashedrekord","apiVersion":"0.0.1","spec":{"signature":{"content":"%%%","publicKey":{"content":"` +
			base64.StdEncoding.EncodeToString(s.PubPEM) + `"}},"data":{"hash":{"algorithm":"sha256","value":"` + h256 + `"}}}}`), status: 400},
		{name: "public key not a key", body: rawHashedRekord(goodSig, []byte("not a key"), "sha256", h256), status: 400,
			contains: []string{"error processing entry"}},
		{name: "sha512 algorithm, sha256-length value", body: rawHashedRekord(goodSig, s.PubPEM, "sha512", h256), status: 400,
			contains: []string{"error processing entry", "invalid value for hash"}},
		{name: "sha256 algorithm, sha512-length value", body: rawHashedRekord(signDigest(t, s, d512[:]), s.PubPEM, "sha256", hex.EncodeToString(d512[:])), status: 400,
			contains: []string{"error processing entry"}},
		{name: "SHA-1", body: rawHashedRekord(signDigest(t, s, d1[:]), s.PubPEM, "sha1", hex.EncodeToString(d1[:])), status: 400,
			contains: []string{"error processing entry"}},
		{name: "digest not hex", body: rawHashedRekord(goodSig, s.PubPEM, "sha256", "zz"+h256[2:]), status: 400,
			contains: []string{"error processing entry"}},
		{name: "dsse with a bad envelope signature", body: dsse, status: 400, contains: []string{"error processing entry"}},
		// Valid signature, but P-256 with SHA-512 is not in Rekor's default
		// --client-signing-algorithms (ecdsa-sha2-256-nistp256 only).
		{name: "P-256 key with a SHA-512 digest", body: rawHashedRekord(signDigest(t, s, d512[:]), s.PubPEM, "sha512", hex.EncodeToString(d512[:])),
			status: 400, contains: []string{"error processing entry: entry algorithms are not allowed"}},
	}
}

func testBadInput(t *testing.T, f *apiFixture) {
	e := f.e
	for _, c := range badCreateCases(t, f.s) {
		t.Run(c.name, func(t *testing.T) {
			before := e.treeSize(t)
			r := e.post(t, "/api/v1/log/entries", c.body)
			wantError(t, c.name, r, c.status, c.contains...)
			if r.header.Get("Location") != "" {
				t.Errorf("%s: rejected entry has a Location %q", c.name, r.header.Get("Location"))
			}
			if after := e.treeSize(t); after != before {
				t.Fatalf("%s: tree size went from %d to %d", c.name, before, after)
			}
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		r := e.do(t, http.MethodPut, "/api/v1/log/entries", []byte(`{}`))
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("PUT /api/v1/log/entries: got %s, want 405", r)
		}
	})
}
