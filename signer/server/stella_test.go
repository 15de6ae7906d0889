package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/canonical"
	"github.com/stellaops/tlog/signer/dsse"
	"github.com/stellaops/tlog/signer/schema"
	"github.com/stellaops/tlog/signer/server"
)

// stellaFixture is the valid example statement of a Stella payload type
// (signer/schema/testdata). Its subjects' digests are SHA-256 of
// stellaBlobs.
func stellaFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "schema", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stellaBlobs are the artifacts the fixtures' subjects name.
var stellaBlobs = []string{"web image", "openssl rpm"}

// TestStellaPayloadTypes signs the fixture of every Stella payload type
// (as the tenant "other", whose catalogue is unrestricted), checks that
// the envelope carries the RFC 8785 form and that two serialisations give
// one PAE, and refuses an invalid variant of each with one audit row
// naming the failing field.
func TestStellaPayloadTypes(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	c := e.client(tokOther)
	ctx := context.Background()
	for _, ty := range schema.Types {
		t.Run(ty.Name, func(t *testing.T) {
			fx := stellaFixture(t, ty.Name)
			want, err := canonical.Transform([]byte(fx))
			if err != nil {
				t.Fatal(err)
			}
			wantPAE := sha256.Sum256(dsse.PAE(dsse.InTotoPayloadType, want))
			var paes []string
			for _, body := range []string{fx, string(want)} {
				resp, err := c.SignDSSE(ctx, api.DSSERequest{Statement: json.RawMessage(body)})
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				var env dsse.Envelope
				if err := json.Unmarshal(resp.Envelope, &env); err != nil {
					t.Fatal(err)
				}
				if string(env.Payload) != string(want) {
					t.Fatalf("envelope payload is not the canonical form:\n%s", env.Payload)
				}
				if resp.PredicateType != ty.PredicateType {
					t.Errorf("predicate type %s", resp.PredicateType)
				}
				row := e.audit(resp.RequestID)
				if row.Decision != "signed" || hex.EncodeToString(row.PAE) != resp.PAESHA256 || row.PredicateType != ty.PredicateType {
					t.Errorf("audit row %+v", row)
				}
				paes = append(paes, resp.PAESHA256)
			}
			if paes[0] != paes[1] || paes[0] != hex.EncodeToString(wantPAE[:]) {
				t.Fatalf("PAE digests %v, want %x twice", paes, wantPAE)
			}

			// Invalid: the producer's version missing.
			var doc map[string]any
			json.Unmarshal([]byte(fx), &doc)
			delete(doc["predicate"].(map[string]any)["producer"].(map[string]any), "version")
			bad, _ := json.Marshal(doc)
			before := e.auditCount()
			body, _ := json.Marshal(api.DSSERequest{Statement: bad})
			status, _, m := e.post(api.PathDSSE, tokOther, string(body))
			if status != 400 || m["error"] != "schema_violation" || !strings.Contains(m["message"].(string), "field /predicate/producer/version: required but missing") {
				t.Fatalf("invalid payload: %d %v", status, m)
			}
			if e.auditCount() != before+1 {
				t.Fatalf("audit rows %d → %d", before, e.auditCount())
			}
			row := e.audit(m["requestId"].(string))
			// A refused statement is audited with its predicate type as written.
			if row.Decision != "refused" || row.Reason != "schema_violation" || row.Items != 0 || row.PredicateType != doc["predicateType"] || len(row.PAE) != 32 {
				t.Errorf("refusal audit row %+v", row)
			}
		})
	}
}

func TestSchemasServed(t *testing.T) {
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	resp, err := http.Get(e.url + api.PathSchemas)
	if err != nil {
		t.Fatal(err)
	}
	var list api.SchemasResponse
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Schemas) != len(schema.Types) {
		t.Fatalf("%d schemas listed", len(list.Schemas))
	}
	for _, s := range append(list.Schemas, api.SchemaInfo{Path: api.PathSchemas + "/" + schema.CommonFile}) {
		resp, err := http.Get(e.url + s.Path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			ID string `json:"$id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || !strings.HasSuffix(s.Path, doc.ID[len(schema.BaseURL):]) ||
			resp.Header.Get("Content-Type") != "application/schema+json" {
			t.Errorf("%s: %d %v %q", s.Path, resp.StatusCode, err, doc.ID)
		}
	}
	if resp, _ := http.Get(e.url + api.PathSchemas + "/nope.json"); resp.StatusCode != 404 {
		t.Errorf("unknown schema: %d", resp.StatusCode)
	}
}

// TestCosignVerifiesStellaTypes checks the bundle of every Stella payload
// type with `cosign verify-blob-attestation --key --type`.
func TestCosignVerifiesStellaTypes(t *testing.T) {
	bin := cosign(t)
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	c := e.client(tokOther)
	dir := t.TempDir()
	kv := keyInfo(t, c, "other-attest", 1)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("key.pub", []byte(kv.PublicKey))
	root := write("trusted_root.json", []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	blobs := map[string]string{}
	for i, b := range stellaBlobs {
		blobs[b] = write("blob"+string(rune('0'+i)), []byte(b))
	}
	other := write("other", []byte("not the artifact"))
	for _, ty := range schema.Types {
		t.Run(ty.Name, func(t *testing.T) {
			fx := stellaFixture(t, ty.Name)
			resp, err := c.SignDSSE(context.Background(), api.DSSERequest{Statement: json.RawMessage(fx), Bundle: true})
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				PredicateType string `json:"predicateType"`
			}
			json.Unmarshal([]byte(fx), &st)
			bundle := write(ty.Name+".bundle.json", resp.Bundle)
			run := func(blob string) (string, error) {
				cmd := exec.Command(bin, "verify-blob-attestation", "--key", key, "--bundle", bundle, "--new-bundle-format",
					"--insecure-ignore-tlog=true", "--trusted-root", root, "--type", st.PredicateType, blob)
				cmd.Env = append(os.Environ(), "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			blob := blobs["web image"]
			if strings.Contains(fx, "nevra") {
				blob = blobs["openssl rpm"]
			}
			if out, err := run(blob); err != nil {
				t.Fatalf("cosign rejected the %s bundle: %v\n%s", ty.Name, err, out)
			}
			if out, err := run(other); err == nil {
				t.Fatalf("cosign accepted the %s bundle for another blob:\n%s", ty.Name, out)
			}
		})
	}
}

// jsonLines decodes the JSON log lines of a log text.
func jsonLines(text string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(text, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestDecisionLogsAndMetrics: every decision is one structured log line
// with the caller's W3C trace id (or a new one, returned in X-Trace-Id),
// the subject digests and the decision; and is counted by decision and
// key usage.
func TestDecisionLogsAndMetrics(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, baseConfig(time.Now()), server.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	send := func(traceparent, body string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest("POST", e.url+api.PathDSSE, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokOther)
		if traceparent != "" {
			req.Header.Set("Traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, resp.Header, m
	}
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, _ := json.Marshal(api.DSSERequest{Statement: json.RawMessage(stellaFixture(t, "scanResults"))})
	status, h, m := send("00-"+trace+"-00f067aa0ba902b7-01", string(body))
	if status != 200 || h.Get("X-Trace-Id") != trace {
		t.Fatalf("%d %v trace %q", status, m, h.Get("X-Trace-Id"))
	}
	status, h, _ = send("", `{"statement":{"_type":"nope"}}`)
	refusedTrace := h.Get("X-Trace-Id")
	if status != 400 || len(refusedTrace) != 32 || refusedTrace == trace {
		t.Fatalf("refusal: %d trace %q", status, refusedTrace)
	}
	var signed, refused map[string]any
	for _, l := range jsonLines(logs.String()) {
		if l["msg"] != "signer decision" {
			continue
		}
		switch l["trace_id"] {
		case trace:
			signed = l
		case refusedTrace:
			refused = l
		}
	}
	if signed == nil || signed["decision"] != "signed" || signed["tenant"] != "other" || signed["request_id"] != m["requestId"] ||
		signed["predicate_type"] != schema.ScanResultsV1 || !strings.Contains(fmt.Sprint(signed["subjects"]), "sha256:") || signed["key"] != "other-attest" {
		t.Errorf("signed decision log %v", signed)
	}
	if refused == nil || refused["decision"] != "refused" || refused["reason"] != "invalid_statement" {
		t.Errorf("refused decision log %v", refused)
	}
	met := e.metrics()
	for _, want := range []string{
		`signer_decisions_total{decision="signed",endpoint="dsse",reason="ok",tenant="other"} 1`,
		`signer_decisions_total{decision="refused",endpoint="dsse",reason="invalid_statement",tenant="other"} 1`,
		`signer_key_usage_total{key="other-attest",tenant="other"} 1`,
		`signer_key_version_not_after_timestamp_seconds{key="checkpoint",version="1"} `,
		`signer_entitlement_bypass_active 0`,
	} {
		if !strings.Contains(met, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestStellaConfigValidation(t *testing.T) {
	base := `audit: {dsn: "u:p@tcp(db:3306)/signer"}
keys: [{name: k, purposes: [dsse], versions: [{version: 1, file: k.pem}]}]
tenants:
  - name: t
    tokens: [{id: t, sha256: 6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b, scopes: [sign:dsse]}]
    keys: [k]
`
	releases := `releases:
  repositories: [reg.example/stella/scanner]
  trusted_keys:
    - name: r
      public_key: |
        -----BEGIN PUBLIC KEY-----
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVmVsP6UObm8XinkfQYf8k6wFXfF4
        D5aN280XW2ifZqqNCjUHNMJOmb/5g7W+R/VW/CsElSrhD0t409xK5Dyg9w==
        -----END PUBLIC KEY-----
`
	until := time.Now().Add(100 * time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, extra, want string // want "" = valid
	}{
		{"entitlement without section", "    require_entitlement: true\n", "require_entitlement needs an entitlements section"},
		{"release check without section", "    require_release_verification: true\n", "require_release_verification needs a releases section"},
		{"entitlements defaults", "entitlements: {}\n", ""},
		{"bypass without ticket", "entitlements: {emergency_bypass: {until: 2026-12-02T00:00:00Z, reason: r}}\n", "needs a reason and a ticket"},
		{"bypass too long", "entitlements: {emergency_bypass: {until: " + until + ", reason: r, ticket: T}}\n", "more than 72h0m0s away"},
		{"ttl below refresh", "entitlements: {refresh_interval: 1m, cache_ttl: 10s}\n", "cache_ttl is shorter"},
		{"releases ok", releases, ""},
		{"releases without trust", "releases: {repositories: [reg.example/stella/scanner]}\n", "nothing could pass"},
		{"releases bad key", "releases: {repositories: [reg.example/s], trusted_keys: [{name: r, public_key: nope}]}\n", "not a PEM PUBLIC KEY"},
		{"releases bad digest", "releases: {repositories: [reg.example/s], trusted_digests: [sha256:AB]}\n", "trusted digest"},
		{"releases bad repository", "releases: {repositories: [scanner], trusted_digests: []}\n", "want host[:port]/path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.ParseConfig([]byte(base + tc.extra))
			if tc.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
