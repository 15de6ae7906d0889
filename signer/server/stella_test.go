package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
