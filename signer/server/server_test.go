package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	fnote "github.com/transparency-dev/formats/note"
	sumdbnote "golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/server"
)

var subjectDigest = strings.Repeat("ab", 32)

func statement(predicateType string, predicate string) string {
	if predicate == "" {
		predicate = `{"builder":{"id":"https://ci.example/builder"}}`
	}
	return fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app.tar","digest":{"sha256":%q}}],"predicateType":%q,"predicate":%s}`,
		subjectDigest, predicateType, predicate)
}

// keyInfo returns the published data of key name's version v.
func keyInfo(t *testing.T, c *client.Client, name string, v int) api.KeyVersionInfo {
	t.Helper()
	ks, err := c.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks.Keys {
		if k.Name != name {
			continue
		}
		for _, kv := range k.Versions {
			if kv.Version == v {
				return kv
			}
		}
	}
	t.Fatalf("key %s version %d not published", name, v)
	return api.KeyVersionInfo{}
}

func parsePEM(t *testing.T, s string) crypto.PublicKey {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// sslVerifier adapts a public key to go-securesystemslib's dsse.Verifier.
type sslVerifier struct {
	pub   crypto.PublicKey
	keyID string
}

func (v sslVerifier) Verify(_ context.Context, data, sig []byte) error {
	switch pub := v.pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(data)
		if ecdsa.VerifyASN1(pub, d[:], sig) {
			return nil
		}
	case ed25519.PublicKey:
		if ed25519.Verify(pub, data, sig) {
			return nil
		}
	}
	return errors.New("bad signature")
}
func (v sslVerifier) KeyID() (string, error)   { return v.keyID, nil }
func (v sslVerifier) Public() crypto.PublicKey { return v.pub }

func TestDSSEVerifiesWithSecuresystemslibAndSigstoreGo(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	c := e.client(tokAcme)
	ctx := context.Background()
	for _, key := range []string{"acme-attest", "acme-attest-ed"} {
		t.Run(key, func(t *testing.T) {
			st := statement("https://slsa.dev/provenance/v1", "")
			resp, err := c.SignDSSE(ctx, api.DSSERequest{Key: key, Statement: json.RawMessage(st), Bundle: true})
			if err != nil {
				t.Fatal(err)
			}
			kv := keyInfo(t, c, key, 1)
			pub := parsePEM(t, kv.PublicKey)
			if resp.KeyID != kv.KeyID {
				t.Errorf("keyId %s, published %s", resp.KeyID, kv.KeyID)
			}

			// go-securesystemslib's verifier.
			var env ssldsse.Envelope
			if err := json.Unmarshal(resp.Envelope, &env); err != nil {
				t.Fatal(err)
			}
			ev, err := ssldsse.NewEnvelopeVerifier(sslVerifier{pub, kv.KeyID})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ev.Verify(ctx, &env); err != nil {
				t.Fatalf("securesystemslib: %v", err)
			}
			payload, _ := base64.StdEncoding.DecodeString(env.Payload)
			if string(payload) != st {
				t.Errorf("payload changed:\n%s\nwant\n%s", payload, st)
			}
			// A modified payload must not verify (the check can fail).
			env2 := env
			env2.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(st, "app.tar", "evil.tar", 1)))
			if _, err := ev.Verify(ctx, &env2); err == nil {
				t.Error("securesystemslib accepted a modified payload")
			}

			// The bundle, with sigstore-go (ECDSA: cosign's key type).
			var raw map[string]any
			json.Unmarshal(resp.Bundle, &raw)
			if raw["mediaType"] != api.BundleMediaType {
				t.Errorf("mediaType %v", raw["mediaType"])
			}
			vm, _ := raw["verificationMaterial"].(map[string]any)
			pk, _ := vm["publicKey"].(map[string]any)
			if pk["hint"] != kv.Hint {
				t.Errorf("hint %v, want %s", pk["hint"], kv.Hint)
			}
			if key != "acme-attest" {
				return
			}
			var b bundle.Bundle
			if err := b.UnmarshalJSON(resp.Bundle); err != nil {
				t.Fatalf("bundle: %v", err)
			}
			sv, err := signature.LoadVerifier(pub, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			tm := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{kv.Hint: root.NewExpiringKey(sv, time.Time{}, time.Time{})})
			v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
			if err != nil {
				t.Fatal(err)
			}
			dg, _ := hex.DecodeString(subjectDigest)
			res, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", dg), verify.WithKey()))
			if err != nil {
				t.Fatalf("sigstore-go: %v", err)
			}
			if res.Statement == nil || res.Statement.PredicateType != "https://slsa.dev/provenance/v1" {
				t.Errorf("sigstore-go statement %+v", res.Statement)
			}
			other := make([]byte, 32)
			if _, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", other), verify.WithKey())); err == nil {
				t.Error("sigstore-go accepted the bundle for another artifact")
			}
			row := e.audit(resp.RequestID)
			pae := ssldsse.PAE(env.PayloadType, payload)
			sum := sha256.Sum256(pae)
			if row.Decision != "signed" || row.Tenant != "acme" || row.KeyName != key || row.PredicateType != "https://slsa.dev/provenance/v1" ||
				!bytes.Equal(row.PAE, sum[:]) || !strings.Contains(row.Subjects.String, "sha256:"+subjectDigest) || row.Caller != "token:acme-ci" {
				t.Errorf("audit row %+v", row)
			}
		})
	}
}

func TestDSSEPolicy(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	p := api.PathDSSE
	body := func(req api.DSSERequest) string { b, _ := json.Marshal(req); return string(b) }
	alias := stellaFixture(t, "promotion") // predicate type stella.ops/promotion@v1
	pii := statement("https://slsa.dev/provenance/v1", `{"pii":true}`)
	cases := []struct {
		name, token, body string
		status            int
		code              string
	}{
		{"malformed json", tokAcme, `{"statement":`, 400, "bad_request"},
		{"unknown field", tokAcme, `{"statment":{}}`, 400, "bad_request"},
		{"no payload", tokAcme, `{}`, 400, "bad_request"},
		{"invalid statement", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x"}`)}), 400, "invalid_statement"},
		{"predicate not allowed", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(statement("https://spdx.dev/Document", ""))}), 403, "predicate_type_not_allowed"},
		{"unknown predicate", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(statement("https://example.com/nope/v1", ""))}), 403, "predicate_type_not_allowed"},
		{"pii without ticket", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(pii)}), 403, "redaction_required"},
		{"pii flag without ticket", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(alias), PII: true}), 403, "redaction_required"},
		{"pii with ticket", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(pii), RedactionTicket: "PRIV-1234"}), 200, ""},
		{"alias", tokAcme, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(alias)}), 200, ""},
		{"payload type not allowed", tokAcme, body(api.DSSERequest{Key: "acme-attest", PayloadType: "text/plain", Payload: []byte("hello")}), 403, "payload_type_not_allowed"},
		{"other payload type allowed", tokAcme, body(api.DSSERequest{Key: "acme-attest", PayloadType: "application/vnd.cyclonedx+json", Payload: []byte(`{"bomFormat":"CycloneDX"}`)}), 200, ""},
		{"other payload type pii", tokAcme, body(api.DSSERequest{Key: "acme-attest", PayloadType: "application/vnd.cyclonedx+json", Payload: []byte(`{}`), PII: true}), 403, "redaction_required"},
		{"unknown key", tokAcme, body(api.DSSERequest{Key: "nope", Statement: json.RawMessage(alias)}), 404, "unknown_key"},
		{"other tenant's key", tokAcme, body(api.DSSERequest{Key: "other-attest", Statement: json.RawMessage(alias)}), 403, "key_not_allowed"},
		{"wrong purpose", tokLog, body(api.DSSERequest{Key: "log", Statement: json.RawMessage(alias)}), 403, "scope_missing"},
		{"key ambiguous", tokAcme, body(api.DSSERequest{Statement: json.RawMessage(alias)}), 400, "bad_request"},
		{"key implied", tokOther, body(api.DSSERequest{Statement: json.RawMessage(statement("https://spdx.dev/Document", ""))}), 200, ""},
		{"no token", "", body(api.DSSERequest{Statement: json.RawMessage(alias)}), 401, "unauthenticated"},
		{"bad token", "not-a-token", body(api.DSSERequest{Statement: json.RawMessage(alias)}), 401, "unauthenticated"},
		{"missing scope", tokAcmeNoDS, body(api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(alias)}), 403, "scope_missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.auditCount()
			status, _, m := e.post(p, tc.token, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, m)
			}
			rid, _ := m["requestId"].(string)
			if tc.status == 401 {
				// Unauthenticated: answered, counted, never audited.
				if m["error"] != tc.code || rid == "" {
					t.Errorf("error body %v, want code %s", m, tc.code)
				}
				if n := e.auditCount(); n != before {
					t.Fatalf("audit rows %d → %d for an unauthenticated request, want none", before, n)
				}
				return
			}
			if tc.status != 200 {
				if m["error"] != tc.code || m["message"] == "" {
					t.Errorf("error body %v, want code %s", m, tc.code)
				}
				if _, has := m["envelope"]; has {
					t.Error("a refusal carried an envelope")
				}
				if row := e.audit(rid); row.Items != 0 {
					t.Errorf("refusal audited with %d signatures", row.Items)
				}
			} else if m["envelope"] == nil {
				t.Errorf("no envelope: %v", m)
			}
			if e.auditCount() != before+1 {
				t.Fatalf("audit rows %d → %d, want one more", before, e.auditCount())
			}
			row := e.audit(rid)
			want := "refused"
			if tc.status == 200 {
				want = "signed"
			}
			if row.Decision != want || row.Status != tc.status || row.Reason != tc.code || row.Endpoint != "dsse" {
				t.Errorf("audit row %+v", row)
			}
			switch tc.name {
			case "alias":
				if m["predicateType"] != "https://stella-ops.org/attestations/promotion/v1" || row.PredicateType != m["predicateType"] {
					t.Errorf("canonical predicate type: response %v, audit %q", m["predicateType"], row.PredicateType)
				}
			case "pii with ticket":
				if row.Ticket != "PRIV-1234" {
					t.Errorf("audit ticket %q", row.Ticket)
				}
			case "predicate not allowed":
				if row.PredicateType != "https://spdx.dev/Document" || row.Tenant != "acme" || len(row.PAE) != 32 {
					t.Errorf("refusal audit lacks detail: %+v", row)
				}
			}
		})
	}
}

func TestQuotas(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	small := `{"statement":` + statement("https://spdx.dev/Document", "") + `}`
	// Oversize first: refused before the rate limiter? No: quotas come
	// first, so spend the one-request bucket on the oversize request.
	big := `{"statement":` + statement("https://spdx.dev/Document", `{"pad":"`+strings.Repeat("x", 4096)+`"}`) + `}`
	status, _, m := e.post(api.PathDSSE, tokTiny, big)
	if status != http.StatusRequestEntityTooLarge || m["error"] != "payload_too_large" {
		t.Fatalf("oversize: %d %v", status, m)
	}
	if row := e.audit(m["requestId"].(string)); row.Decision != "refused" || row.Status != 413 || row.Tenant != "tiny" {
		t.Errorf("audit %+v", row)
	}
	status, h, m := e.post(api.PathDSSE, tokTiny, small)
	if status != http.StatusTooManyRequests || m["error"] != "rate_limited" {
		t.Fatalf("second request: %d %v", status, m)
	}
	if ra := h.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	if row := e.audit(m["requestId"].(string)); row.Decision != "refused" || row.Status != 429 || row.Reason != "rate_limited" {
		t.Errorf("audit %+v", row)
	}
	// The client surfaces Retry-After.
	_, err := e.client(tokTiny).SignDSSE(context.Background(), api.DSSERequest{Statement: json.RawMessage(statement("https://spdx.dev/Document", ""))})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 429 || ce.RetryAfter < time.Second {
		t.Errorf("client error %v", err)
	}
}

func TestConcurrencyQuota(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	// Hold the tenant's only slot with a request whose body never ends.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, e.url+api.PathDSSE, pr)
	req.Header.Set("Authorization", "Bearer "+tokSingleton)
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	pw.Write([]byte(`{"statement":`))
	var got int
	var m map[string]any
	var h http.Header
	for range 500 { // until the first request holds the slot
		got, h, m = e.post(api.PathDSSE, tokSingleton, `{"statement":`+statement("https://spdx.dev/Document", "")+`}`)
		if got == http.StatusTooManyRequests {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got != http.StatusTooManyRequests || m["error"] != "concurrency_limited" || h.Get("Retry-After") == "" {
		t.Fatalf("second concurrent request: %d %v", got, m)
	}
	pw.Write([]byte(statement("https://spdx.dev/Document", "") + `}`))
	pw.Close()
	if s := <-done; s != http.StatusOK {
		t.Errorf("held request: %d", s)
	}
}

func TestDigestsBatch(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	ctx := context.Background()
	c := e.client(tokLog)
	ds, err := c.NewDigestSigner(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	digests := make([][32]byte, 1000)
	for i := range digests {
		digests[i] = sha256.Sum256(fmt.Appendf(nil, "entry %d", i))
	}
	sigs, err := ds.SignDigests(ctx, digests)
	if err != nil {
		t.Fatal(err)
	}
	pub := ds.Public().(*ecdsa.PublicKey)
	for i := range digests {
		if !ecdsa.VerifyASN1(pub, digests[i][:], sigs[i]) {
			t.Fatalf("signature %d does not verify", i)
		}
	}
	if ecdsa.VerifyASN1(pub, digests[1][:], sigs[0]) {
		t.Fatal("signature 0 verifies for digest 1")
	}
	rows := e.auditWhere("endpoint = 'digests'")
	if len(rows) != 1 || rows[0].Items != 1000 || rows[0].Decision != "signed" || rows[0].Tenant != "logserver" {
		t.Errorf("audit %+v", rows)
	}
	for _, tc := range []struct{ body, code string }{
		{`{"key":"log","digests":[]}`, "bad_request"},
		{`{"key":"log","digests":["AAAA"]}`, "bad_request"},
		{`{"key":"log","digests":"x"}`, "bad_request"},
		{`{"key":"checkpoint","digests":["` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"]}`, "wrong_key_purpose"},
		{`{"key":"log","version":7,"digests":["` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"]}`, "no_active_key_version"},
	} {
		status, _, m := e.post(api.PathDigests, tokLog, tc.body)
		if m["error"] != tc.code || status < 400 || m["signatures"] != nil {
			t.Errorf("%s: %d %v", tc.body, status, m)
		}
	}
	// A token without sign:digests.
	if status, _, m := e.post(api.PathDigests, tokWitness, `{"key":"log","digests":[]}`); status != 403 || m["error"] != "scope_missing" {
		t.Errorf("witness on digests: %d %v", status, m)
	}
}

func TestCheckpointRotationAndECDSA(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	ctx := context.Background()
	c := e.client(tokLog)
	root := sha256.Sum256([]byte("root"))
	text := fmt.Sprintf("log.example/stella\n42\n%s\n", base64.StdEncoding.EncodeToString(root[:]))
	resp, err := c.SignCheckpoint(ctx, "checkpoint", text)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Signatures) != 2 || fmt.Sprint(resp.KeyVersions) != "[1 2]" {
		t.Fatalf("overlap: %d lines, versions %v (want versions 1 and 2; 3 is pending)", len(resp.Signatures), resp.KeyVersions)
	}
	signed := []byte(text + "\n" + strings.Join(resp.Signatures, ""))
	if string(signed) != resp.SignedNote {
		t.Errorf("signedNote differs from text + lines")
	}
	for _, v := range []int{1, 2} {
		kv := keyInfo(t, c, "checkpoint", v)
		ver, err := sumdbnote.NewVerifier(kv.NoteVerifierKey)
		if err != nil {
			t.Fatal(err)
		}
		n, err := sumdbnote.Open(signed, sumdbnote.VerifierList(ver))
		if err != nil || len(n.Sigs) != 1 {
			t.Fatalf("version %d: x/mod note: %v", v, err)
		}
	}
	if kv := keyInfo(t, c, "checkpoint", 3); kv.State != "pending" {
		t.Errorf("version 3 state %s", kv.State)
	}
	// Tampered text fails.
	v1, _ := sumdbnote.NewVerifier(keyInfo(t, c, "checkpoint", 1).NoteVerifierKey)
	if _, err := sumdbnote.Open(bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1), sumdbnote.VerifierList(v1)); err == nil {
		t.Error("tampered checkpoint verified")
	}
	row := e.audit(resp.RequestID)
	if row.KeyVersions != "1,2" || row.Items != 2 || row.Endpoint != "checkpoint" {
		t.Errorf("audit %+v", row)
	}

	// ECDSA (Rekor-style) checkpoint signature.
	rtext := fmt.Sprintf("rekor.example - 1234\n42\n%s\n", base64.StdEncoding.EncodeToString(root[:]))
	rresp, err := c.SignCheckpoint(ctx, "rekor", rtext)
	if err != nil {
		t.Fatal(err)
	}
	if len(rresp.Signatures) != 1 {
		t.Fatalf("rekor: %d lines", len(rresp.Signatures))
	}
	rv, err := fnote.NewVerifier(keyInfo(t, c, "rekor", 1).NoteVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sumdbnote.Open([]byte(rresp.SignedNote), sumdbnote.VerifierList(rv)); err != nil {
		t.Fatalf("formats/note ECDSA: %v", err)
	}

	for _, bad := range []string{"no newline", "a\nb\n", "o\nx\nAAAA\n", "o\n1\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n\nx\n"} {
		status, _, m := e.post(api.PathCheckpoint, tokLog, fmt.Sprintf(`{"key":"checkpoint","note":%q}`, bad))
		if status != 400 || m["error"] != "bad_request" {
			t.Errorf("note %q: %d %v", bad, status, m)
		}
	}
}

func TestCosignature(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	e := newEnv(t, baseConfig(time.Now()), server.Options{Now: func() time.Time { return at }})
	ctx := context.Background()
	c := e.client(tokWitness)
	root := sha256.Sum256([]byte("root"))
	text := fmt.Sprintf("log.example/stella\n42\n%s\n", base64.StdEncoding.EncodeToString(root[:]))
	resp, err := c.Cosign(ctx, "witness", text)
	if err != nil {
		t.Fatal(err)
	}
	kv := keyInfo(t, c, "witness", 1)
	v, err := fnote.NewVerifierForCosignatureV1(kv.CosignatureVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sumdbnote.Open([]byte(resp.SignedNote), sumdbnote.VerifierList(v))
	if err != nil {
		t.Fatalf("cosignature: %v", err)
	}
	if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || !ts.Equal(at) {
		t.Errorf("timestamp %v %v", ts, err)
	}
	// The witness may not sign checkpoints.
	if _, err := c.SignCheckpoint(ctx, "witness", text); err == nil || err.(*client.Error).Status != 403 {
		t.Errorf("witness signing a checkpoint: %v", err)
	}
}

func TestReadinessMissingKey(t *testing.T) {
	cfg := baseConfig(time.Now())
	label := fmt.Sprintf("late-key-%d", time.Now().UnixNano())
	cfg.Keys = append(cfg.Keys, server.KeyConfig{Name: "late", Purposes: []string{"dsse"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: label}}})
	cfg.Tenants[1].Keys = append(cfg.Tenants[1].Keys, "late")
	e := newEnv(t, cfg, server.Options{})
	get := func() (int, map[string]any) {
		resp, err := http.Get(e.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, m := get()
	if status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(m["problems"]), "late/v1") {
		t.Fatalf("readyz with a missing key: %d %v", status, m)
	}
	if resp, _ := http.Get(e.url + "/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	st, h, body := e.post(api.PathDSSE, tokOther, `{"key":"late","statement":`+statement("https://spdx.dev/Document", "")+`}`)
	if st != 503 || body["error"] != "key_unavailable" || h.Get("Retry-After") != "1" {
		t.Errorf("signing with the missing key: %d %v Retry-After %q", st, body, h.Get("Retry-After"))
	}
	if row := e.audit(body["requestId"].(string)); row.Decision != "failed" || row.Status != 503 {
		t.Errorf("audit %+v", row)
	}
	// The operator adds the key: the next readiness pass finds it.
	if _, err := setupToken.Generate(context.Background(), label, "ecdsa-p256"); err != nil {
		t.Fatal(err)
	}
	if !e.srv.CheckReady(context.Background()) {
		t.Fatal("not ready after the key was added")
	}
	if status, m := get(); status != 200 || m["ready"] != true {
		t.Errorf("readyz: %d %v", status, m)
	}
	if st, _, body := e.post(api.PathDSSE, tokOther, `{"key":"late","statement":`+statement("https://spdx.dev/Document", "")+`}`); st != 200 {
		t.Errorf("signing with the added key: %d %v", st, body)
	}
}

func TestAuditFailureWithholdsSignature(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	if _, err := e.root.Exec(fmt.Sprintf("REVOKE INSERT ON `%s`.signer_audit FROM '%s'@'127.0.0.1'", e.dbName, e.svcUser)); err != nil {
		t.Fatal(err)
	}
	status, h, m := e.post(api.PathDSSE, tokAcme, `{"key":"acme-attest","statement":`+statement("https://slsa.dev/provenance/v1", "")+`}`)
	if status != 503 || m["error"] != "audit_unavailable" || m["envelope"] != nil || h.Get("Retry-After") == "" {
		t.Fatalf("%d %v Retry-After %q", status, m, h.Get("Retry-After"))
	}
	if n := e.auditCount(); n != 0 {
		t.Errorf("%d audit rows", n)
	}
	if _, err := e.root.Exec(fmt.Sprintf("GRANT INSERT ON `%s`.signer_audit TO '%s'@'127.0.0.1'", e.dbName, e.svcUser)); err != nil {
		t.Fatal(err)
	}
	if status, _, m := e.post(api.PathDSSE, tokAcme, `{"key":"acme-attest","statement":`+statement("https://slsa.dev/provenance/v1", "")+`}`); status != 200 {
		t.Fatalf("after GRANT: %d %v", status, m)
	}
}

// TestAuditGroupCommit sends many concurrent requests; every answer must
// have its row, and the rows must have been written in fewer INSERTs.
func TestAuditGroupCommit(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	c := e.client(tokBench)
	const n = 200
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			st := statement("https://spdx.dev/Document", fmt.Sprintf(`{"n":%d}`, i))
			resp, err := c.SignDSSE(context.Background(), api.DSSERequest{Key: "bench-attest", Statement: json.RawMessage(st)})
			if err == nil {
				ids[i] = resp.RequestID
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if row := e.audit(ids[i]); row.Decision != "signed" {
			t.Fatalf("row %+v", row)
		}
	}
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	for _, want := range []string{"signer_sign_duration_seconds_bucket{endpoint=\"dsse\",key=\"bench-attest\",tenant=\"bench\"", "signer_pkcs11_pool_wait_seconds_count", "signer_audit_batch_rows_count", "signer_ready 1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestKeysEndpoint(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	if resp, err := http.Get(e.url + api.PathDSSE); err != nil || resp.StatusCode != 405 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET on a signing endpoint: %v %v", resp, err)
	}
	ks, err := e.client("").Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range ks.Keys {
		names = append(names, k.Name)
		for _, v := range k.Versions {
			if !v.Available || v.PublicKey == "" || v.KeyID == "" {
				t.Errorf("%s v%d: %+v", k.Name, v.Version, v)
			}
		}
	}
	if !strings.Contains(strings.Join(names, ","), "checkpoint") {
		t.Errorf("keys %v", names)
	}
	ck := keyInfo(t, e.client(""), "checkpoint", 1)
	if ck.NotAfter == nil || ck.State != "active" || ck.Algorithm != "ed25519" || !strings.HasPrefix(ck.NoteVerifierKey, "log.example/stella+") {
		t.Errorf("checkpoint v1 %+v", ck)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"audit: {dsn: x}\nbogus: 1\n", "bogus"},
		{"listen: x\n", "exactly one of dsn, dsn_file and dsn_env"},
		{"audit: {dsn: x, dsn_file: f}\n", "exactly one of dsn, dsn_file and dsn_env"},
		{"audit: {dsn: x}\nread_timeout: -1s\n", "read_timeout -1s: must be positive"},
		{"audit: {dsn: x}\nlogging: {level: loud}\n", `logging.level "loud"`},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [dsse], versions: [{version: 1, label: l}]}]\n", "needs a token section"},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [sign], versions: [{version: 1, file: f}]}]\n", "unknown purpose"},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [checkpoint], versions: [{version: 1, file: f}]}]\n", "note_name"},
		{"audit: {dsn: x}\ntenants: [{name: t, tokens: [{id: i, sha256: abc, scopes: [sign:dsse]}]}]\n", "64 lowercase hex"},
		{"audit: {dsn: x}\ntenants: [{name: t, tokens: [{id: i, sha256: " + hashTok("x") + ", scopes: [sign:all]}]}]\n", "unknown scope"},
		{"audit: {dsn: x}\ntenants: [{name: t, keys: [k], tokens: [{id: i, sha256: " + hashTok("x") + ", scopes: [sign:dsse]}]}]\n", "unknown key"},
		{"audit: {dsn: x}\ntenants: [{name: t, allowed_predicate_types: [foo], tokens: [{id: i, sha256: " + hashTok("x") + ", scopes: [sign:dsse]}]}]\n", "not in the catalog"},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [dsse], versions: [{version: 1, file: f, not_before: 2026-02-01T00:00:00Z, not_after: 2026-01-01T00:00:00Z}]}]\n", "not_after"},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [digests, dsse], versions: [{version: 1, file: f}]}]\n", `key "a": a digests key signs any SHA-256 digest it is given, so it cannot also be a dsse key`},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [checkpoint, digests], note_name: n, versions: [{version: 1, file: f}]}]\n", "cannot also be a checkpoint key"},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [digests, cosignature], note_name: n, versions: [{version: 1, file: f}]}]\n", "cannot also be a cosignature key"},
		{"audit: {dsn: x}\nkeys: [{name: a, purposes: [digests], versions: [{version: 1, file: f}]}, {name: b, purposes: [checkpoint], note_name: n, versions: [{version: 1, file: f}]}]\n", `keys "a" and "b" use the same key pair (file f)`},
		{"audit: {dsn: x}\ntoken: {token_label: t, pin_env: P}\nkeys: [{name: a, purposes: [dsse], versions: [{version: 1, label: l}]}, {name: b, purposes: [digests], versions: [{version: 2, label: l}]}]\n", `keys "a" and "b" use the same key pair (label l)`},
	} {
		_, err := server.ParseConfig([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	ok := "audit: {dsn_env: SIGNER_DSN}\nkeys: [{name: a, purposes: [dsse], versions: [{version: 1, file: f}]}]\n" +
		"tenants: [{name: t, keys: [a], quota: {rps: 5}, tokens: [{id: i, sha256: " + hashTok("x") + ", scopes: [sign:dsse]}]}]\n"
	cfg, err := server.ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if q := cfg.Tenants[0].Quota; q.Burst != 10 || q.Concurrency != 16 || q.MaxPayloadBytes != 1<<20 || cfg.Listen == "" {
		t.Errorf("defaults %+v %q", q, cfg.Listen)
	}
}

func TestExampleConfigParses(t *testing.T) {
	cfg, err := server.LoadConfig("testdata/signer.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 4 || len(cfg.Tenants) != 4 || cfg.Token.Sessions != 2 || cfg.Entitlements == nil || cfg.Releases == nil {
		t.Errorf("parsed %+v", cfg)
	}
}
