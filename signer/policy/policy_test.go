package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/stellaops/tlog/signer/schema"
)

const (
	sha256Hex = "6a4b2f3c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
	sha512Hex = sha256Hex + sha256Hex
)

// stmt builds a Statement v1 JSON text from its subjects (JSON objects,
// comma-separated), predicate type and optional predicate (JSON).
func stmt(subject, predicateType, predicate string) []byte {
	s := `{"_type":"https://in-toto.io/Statement/v1","subject":[` + subject + `],"predicateType":"` + predicateType + `"`
	if predicate != "" {
		s += `,"predicate":` + predicate
	}
	return []byte(s + "}")
}

var goodSubject = `{"name":"app.tar","digest":{"sha256":"` + sha256Hex + `"}}`

func TestParseStatement(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		ok      bool
	}{
		{"minimal", string(stmt(goodSubject, PromotionV1, "")), true},
		{"with predicate", string(stmt(goodSubject, PromotionV1, `{"env":"prod"}`)), true},
		{"sha512 only", string(stmt(`{"digest":{"sha512":"`+sha512Hex+`"}}`, SPDX, "")), true},
		{"sha256 and another algorithm", string(stmt(`{"digest":{"sha256":"`+sha256Hex+`","gitCommit":"abc"}}`, SPDX, "")), true},
		{"all descriptor fields", string(stmt(`{"name":"n","uri":"pkg:oci/app","digest":{"sha256":"`+sha256Hex+`"},"downloadLocation":"https://x","mediaType":"application/x-tar","annotations":{"k":"v"}}`, SPDX, "")), true},
		{"two subjects", string(stmt(goodSubject+","+goodSubject, SPDX, "")), true},

		{"v0.1 statement", strings.Replace(string(stmt(goodSubject, SPDX, "")), "Statement/v1", "Statement/v0.1", 1), false},
		{"seed promotion _type", `{"_type":"stella.ops/promotion@v1","subject":[` + goodSubject + `],"predicateType":"stella.ops/promotion@v1"}`, false},
		{"no subject", string(stmt("", SPDX, "")), false},
		{"subject without digest", string(stmt(`{"name":"x"}`, SPDX, "")), false},
		{"only a weak digest", string(stmt(`{"digest":{"sha1":"da39a3ee5e6b4b0d3255bfef95601890afd80709"}}`, SPDX, "")), false},
		{"uppercase hex", string(stmt(`{"digest":{"sha256":"`+strings.ToUpper(sha256Hex)+`"}}`, SPDX, "")), false},
		{"short sha256", string(stmt(`{"digest":{"sha256":"`+sha256Hex[:63]+`"}}`, SPDX, "")), false},
		{"sha256 of sha512 length", string(stmt(`{"digest":{"sha256":"`+sha512Hex+`"}}`, SPDX, "")), false},
		{"non-hex sha512", string(stmt(`{"digest":{"sha512":"`+strings.Repeat("g", 128)+`"}}`, SPDX, "")), false},
		{"empty other digest", string(stmt(`{"digest":{"sha256":"`+sha256Hex+`","md5":""}}`, SPDX, "")), false},
		{"no predicateType", string(stmt(goodSubject, "", "")), false},
		{"predicate not an object", string(stmt(goodSubject, SPDX, `[1]`)), false},
		{"unknown top-level field", strings.Replace(string(stmt(goodSubject, SPDX, "")), `"_type"`, `"materials":[],"_type"`, 1), false},
		{"duplicate key", strings.Replace(string(stmt(goodSubject, SPDX, "")), `"_type"`, `"predicateType":"x","_type"`, 1), false},
		{"duplicate nested key", string(stmt(`{"digest":{"sha256":"`+sha256Hex+`","sha256":"`+sha256Hex+`"}}`, SPDX, "")), false},
		{"trailing data", string(stmt(goodSubject, SPDX, "")) + `{}`, false},
		{"not JSON", `nope`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStatement([]byte(tc.payload))
			if tc.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidStatement) {
				t.Fatalf("got %v, want ErrInvalidStatement", err)
			}
		})
	}
}

func TestPredicateTypes(t *testing.T) {
	// The zero schema set: predicate type resolution alone (the Stella
	// types' schemas are tested in stella_test.go).
	noSchemas := &schema.Set{}
	tenant := &Policy{AllowedPredicateTypes: []string{"stella.ops/promotion@v1", SLSAProvenanceV1, "cyclonedx"}, Schemas: noSchemas}
	for _, tc := range []struct {
		name, predicateType string
		policy              *Policy
		canonical           string // "" means refused
	}{
		{"alias accepted as its URI", "stella.ops/promotion@v1", &Policy{Schemas: noSchemas}, PromotionV1},
		{"URI allowed through its alias", PromotionV1, tenant, PromotionV1},
		{"alias allowed through its alias", "stella.ops/promotion@v1", tenant, PromotionV1},
		{"SLSA v1", SLSAProvenanceV1, tenant, SLSAProvenanceV1},
		{"cosign short name", "slsaprovenance1", tenant, SLSAProvenanceV1},
		{"CycloneDX URI allowed through short name", CycloneDX, tenant, CycloneDX},
		{"seed's SBOM URI", "https://stella-ops.org/attestations/sbom/1", &Policy{Schemas: noSchemas}, SBOMV1},
		{"OpenVEX", OpenVEXV020, &Policy{Schemas: noSchemas}, OpenVEXV020},
		{"SPDX", SPDX, &Policy{Schemas: noSchemas}, SPDX},
		{"known but not allowed for the tenant", SPDX, tenant, ""},
		{"other version is another type", "https://cyclonedx.org/bom/v1.5", tenant, ""},
		{"unknown type", "https://example.com/whatever/v1", &Policy{Schemas: noSchemas}, ""},
		{"case matters", "Stella.ops/promotion@v1", &Policy{Schemas: noSchemas}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.policy.Check(Request{PayloadType: "application/vnd.in-toto+json", Payload: stmt(goodSubject, tc.predicateType, "")})
			if tc.canonical == "" {
				if !errors.Is(err, ErrPredicateNotAllowed) {
					t.Fatalf("got %v, want ErrPredicateNotAllowed", err)
				}
				if Reason(err) != "predicate_type_not_allowed" {
					t.Fatalf("Reason = %q", Reason(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if d.PredicateType != tc.canonical {
				t.Fatalf("canonical = %q, want %q", d.PredicateType, tc.canonical)
			}
		})
	}
}

func TestPIIRule(t *testing.T) {
	p := &Policy{}
	plain := stmt(goodSubject, SLSAProvenanceV1, `{"env":"prod"}`)
	for _, tc := range []struct {
		name    string
		payload []byte
		pii     bool
		ticket  string
		wantErr error // nil: accepted
		wantPII bool
	}{
		{"unmarked", plain, false, "", nil, false},
		{"request marks pii without ticket", plain, true, "", ErrRedactionRequired, false},
		{"request marks pii with ticket", plain, true, "PRIV-1234", nil, true},
		{"predicate pii true", stmt(goodSubject, SLSAProvenanceV1, `{"pii":true}`), false, "", ErrRedactionRequired, false},
		{"predicate pii \"true\"", stmt(goodSubject, SLSAProvenanceV1, `{"pii":"true"}`), false, "", ErrRedactionRequired, false},
		{"predicate pii with ticket", stmt(goodSubject, SLSAProvenanceV1, `{"pii":true}`), false, "PRIV-1234", nil, true},
		{"predicate pii false", stmt(goodSubject, SLSAProvenanceV1, `{"pii":false}`), false, "", nil, false},
		{"subject annotation pii", stmt(`{"digest":{"sha256":"`+sha256Hex+`"},"annotations":{"pii":"true"}}`, SLSAProvenanceV1, ""), false, "", ErrRedactionRequired, false},
		{"malformed marker", stmt(goodSubject, SLSAProvenanceV1, `{"pii":"yes"}`), false, "PRIV-1", ErrInvalidStatement, false},
		{"malformed ticket", plain, true, "PRIV 1234\n", ErrRedactionRequired, false},
		{"ticket too long", plain, true, strings.Repeat("a", 129), ErrRedactionRequired, false},
		{"ticket on unmarked payload is harmless", plain, false, "PRIV-1", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := p.Check(Request{PayloadType: "application/vnd.in-toto+json", Payload: tc.payload, PII: tc.pii, RedactionTicket: tc.ticket})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if d.PII != tc.wantPII || (tc.wantPII && d.RedactionTicket != tc.ticket) {
				t.Fatalf("decision %+v", d)
			}
		})
	}
}

func TestCheckPayloadType(t *testing.T) {
	_, err := (&Policy{}).Check(Request{PayloadType: "application/json", Payload: stmt(goodSubject, SPDX, "")})
	if !errors.Is(err, ErrPayloadType) || Reason(err) != "payload_type" {
		t.Fatalf("got %v (%s), want ErrPayloadType", err, Reason(err))
	}
}

func TestCatalog(t *testing.T) {
	if _, err := NewCatalog([]PredicateType{{URI: "a", Aliases: []string{"b"}}, {URI: "b"}}); err == nil {
		t.Error("a name listed twice was accepted")
	}
	uris := DefaultCatalog.URIs()
	for _, want := range []string{SLSAProvenanceV1, SPDX, CycloneDX, OpenVEXV020, PromotionV1} {
		found := false
		for _, u := range uris {
			found = found || u == want
		}
		if !found {
			t.Errorf("default catalog lacks %s", want)
		}
	}
	for _, u := range uris {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("canonical predicate type %q is not an https URI", u)
		}
	}
}
