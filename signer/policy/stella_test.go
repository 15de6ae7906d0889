package policy

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stellaops/tlog/signer/dsse"
	"github.com/stellaops/tlog/signer/schema"
)

// pinned are, per Stella payload type, SHA-256 of the DSSE PAE of its
// fixture (signer/schema/testdata) after canonicalisation, and SHA-256 of
// the JSON envelope signed with the fixed Ed25519 test key (Ed25519 is
// deterministic). A change here is a change of the signed bytes: every
// verifier pinning an attestation would see it.
var pinned = map[string]struct{ pae, envelope string }{
	"buildProvenance":  {"a87de7e8768de3810d167294bac99c4b0c85b2ce488715fa6847586559001fff", "aa4b16e5a2452e97a29a02b1d85e474f731c8272f9daced8995be37c8bc4aff1"},
	"sbom":             {"2ffd2b90051ce470132816418450c928f6143bc047c84e5d27e83b859227b66a", "2f7ccbc69c46b161046e080f9b9dc38c278537eb2d2776c8e8b8b8185605695f"},
	"scanResults":      {"0cf25231a6443170ccd716526050db099df304726fbdc9d8723d73c6099533fd", "11cfbf5a210e70a1160fd2d6392258ceb6358fd93274b32086c8eff98ff0192c"},
	"policyEvaluation": {"64a0da7fdd6e77788827ddda57f1b263c529bc884bbde244c794035199f36be8", "3847bd8ca2c06cd36d1dee42300dba2a8f10cb53b9d005835795e777402a892a"},
	"vex":              {"a0bafc458ea341677158c072c4600b8f02b119bfe596913e7ebe083f8f794581", "6899d65d933032f5b8fd77547abb6d8a810c54d93203af10b74c50639e318d26"},
	"riskProfile":      {"f26a9522472a0138d0dd5e4f922bed67615fb08bb2e96cd9b6c3b4793a850460", "b55ee09307fb5e211ba6b49a45fc81d72ebb236bed67d55de0a852734ba05cae"},
	"promotion":        {"14b131b6394d2ffaf7185a0a05b63e1f9b78250c13e74b6ba2528660f9b8b86c", "226881b43511070eba0a90cb0864f2330a86aee60180eaf8e249fb1cbcb49697"},
	"vexDecision":      {"c6f3713e0e448c40fc4781e989a6252b5cb648601c12fce8ec3bba0bec6a1495", "b1f945f44cb73dba8a121ac2ad9adda4d35f21a6983d1f4e81299aefa8d6bc6e"},
	"graph":            {"f5746f812b392f98e1277c32e30b02f1ba5b84a0a2d47d5aae610407d4772e00", "af3d3bfb3d906155b481528a65d77f1a29ce3f79d8bad63c013bb8c48ffcb1f0"},
	"replay":           {"733e07ec9261237cd6ea691375f2774494658616a96b3bcc837561231fe19d33", "e6c291de4e328e8b4916f8bff42a3f1d19458ed3db2ce39cee9d9293a1a2981d"},
	"evidence":         {"7cfa3d92284c31514f20bf07160afddd80835d5703ee6450c3fdad2e27515b08", "1c0a9e524b42aa645cfaeff2d32348d40e68835bee29c8435d2c55650ad56fb2"},
}

func fixtureKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("stella payload fixture key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "schema", "testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reserialise writes the same JSON value differently: members in reverse
// order, other indentation.
func reserialise(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var w func(v any) string
	w = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			var keys []string
			for k := range x {
				keys = append(keys, k)
			}
			// reverse lexical order
			for i := range keys {
				for j := i + 1; j < len(keys); j++ {
					if keys[j] > keys[i] {
						keys[i], keys[j] = keys[j], keys[i]
					}
				}
			}
			var parts []string
			for _, k := range keys {
				kb, _ := json.Marshal(k)
				parts = append(parts, "\n\t"+string(kb)+" :  "+w(x[k]))
			}
			return "{" + strings.Join(parts, " ,") + "\n}"
		case []any:
			var parts []string
			for _, e := range x {
				parts = append(parts, w(e))
			}
			return "[ " + strings.Join(parts, ",  ") + " ]"
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	return []byte(w(v))
}

func TestStellaTypesDeterministic(t *testing.T) {
	key := fixtureKey()
	p := &Policy{}
	for _, ty := range schema.Types {
		t.Run(ty.Name, func(t *testing.T) {
			orig := readFixture(t, ty.Name)
			var paes []string
			var envs []string
			for _, payload := range [][]byte{orig, reserialise(t, orig)} {
				d, err := p.Check(Request{PayloadType: dsse.InTotoPayloadType, Payload: payload})
				if err != nil {
					t.Fatalf("fixture refused: %v", err)
				}
				if d.Stella == nil || d.Stella.Type.Name != ty.Name || d.PredicateType != ty.PredicateType {
					t.Fatalf("decision %+v", d)
				}
				if d.Stella.Producer.Service == "" || d.Stella.Producer.Version == "" {
					t.Fatalf("producer not read: %+v", d.Stella.Producer)
				}
				if strings.ContainsAny(string(d.Payload), "\n\t") {
					t.Fatalf("payload not canonical: %s", d.Payload)
				}
				pae := sha256.Sum256(dsse.PAE(dsse.InTotoPayloadType, d.Payload))
				paes = append(paes, hex.EncodeToString(pae[:]))
				env, err := dsse.Sign(context.Background(), dsse.InTotoPayloadType, d.Payload, key)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := dsse.Verify(env, key.Public()); err != nil {
					t.Fatal(err)
				}
				ej, _ := json.Marshal(env)
				es := sha256.Sum256(ej)
				envs = append(envs, hex.EncodeToString(es[:]))
			}
			if paes[0] != paes[1] || envs[0] != envs[1] {
				t.Fatalf("two serialisations of the same statement give different PAEs %v or envelopes %v", paes, envs)
			}
			want, ok := pinned[ty.Name]
			if !ok {
				t.Fatalf("no pinned hashes; got {%q, %q}", paes[0], envs[0])
			}
			if paes[0] != want.pae || envs[0] != want.envelope {
				t.Fatalf("signed bytes changed: PAE sha256 %s (pinned %s), envelope sha256 %s (pinned %s)", paes[0], want.pae, envs[0], want.envelope)
			}
		})
	}
}

func TestStellaSchemaRefusal(t *testing.T) {
	doc := strings.Replace(string(readFixture(t, "promotion")), `"version": "1.4.2"`, `"version": ""`, 1)
	_, err := (&Policy{}).Check(Request{PayloadType: dsse.InTotoPayloadType, Payload: []byte(doc)})
	if !errors.Is(err, ErrSchema) || Reason(err) != "schema_violation" || !strings.Contains(err.Error(), "field /predicate/producer/version") {
		t.Fatalf("got %v (%s)", err, Reason(err))
	}
	// Non-Stella statements are signed as sent.
	st := stmt(goodSubject, SLSAProvenanceV1, `{"b":1,  "a":2}`)
	d, err := (&Policy{}).Check(Request{PayloadType: dsse.InTotoPayloadType, Payload: st})
	if err != nil || string(d.Payload) != string(st) || d.Stella != nil {
		t.Fatalf("SLSA statement changed: %s, %v", d.Payload, err)
	}
	// A Stella payload with an integer a double cannot hold is refused,
	// not silently rounded.
	big := strings.Replace(string(readFixture(t, "graph")), `"nodes": 18211`, `"nodes": 9007199254740993`, 1)
	if _, err := (&Policy{}).Check(Request{PayloadType: dsse.InTotoPayloadType, Payload: []byte(big)}); !errors.Is(err, ErrInvalidStatement) || !strings.Contains(err.Error(), "/predicate/graph/nodes") {
		t.Fatalf("big integer: %v", err)
	}
}

// BenchmarkCheck measures the policy step alone: a Stella payload (JSON
// Schema validation and RFC 8785 canonicalisation) next to an SLSA
// statement (Statement v1 checks only).
//
//	go test -run '^$' -bench Check ./signer/policy
func BenchmarkCheck(b *testing.B) {
	p := &Policy{}
	promo, err := os.ReadFile(filepath.Join("..", "schema", "testdata", "promotion.json"))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"slsa", stmt(goodSubject, SLSAProvenanceV1, `{"builder":{"id":"https://ci.example/builder"}}`)},
		{"stella-promotion", promo},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Check(Request{PayloadType: dsse.InTotoPayloadType, Payload: tc.payload}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
