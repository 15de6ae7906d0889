package schema

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fixture returns the valid example statement of a type (testdata/<name>.json).
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutate applies a change at a JSON pointer: set a value (JSON text), or
// delete the member/element when value is "".
func mutate(t *testing.T, doc []byte, ptr, value string) []byte {
	t.Helper()
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	parent := root
	for _, tok := range toks[:len(toks)-1] {
		switch p := parent.(type) {
		case map[string]any:
			parent = p[tok]
		case []any:
			i, _ := strconv.Atoi(tok)
			parent = p[i]
		}
	}
	last := toks[len(toks)-1]
	var v any
	if value != "" {
		if err := json.Unmarshal([]byte(value), &v); err != nil {
			t.Fatalf("bad mutation value %s: %v", value, err)
		}
	}
	switch p := parent.(type) {
	case map[string]any:
		if value == "" {
			delete(p, last)
		} else {
			p[last] = v
		}
	case []any:
		i, _ := strconv.Atoi(last)
		p[i] = v
	default:
		t.Fatalf("mutation %s: no parent", ptr)
	}
	out, _ := json.Marshal(root)
	return out
}

func validate(t *testing.T, uri string, doc []byte) error {
	t.Helper()
	v, err := Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	has, err := Default.Validate(uri, v)
	if !has {
		t.Fatalf("no schema for %s", uri)
	}
	return err
}

// blocks is each type's own predicate member.
var blocks = map[string]string{
	"buildProvenance": "build", "sbom": "sbom", "scanResults": "scan", "policyEvaluation": "evaluation",
	"vex": "vex", "riskProfile": "risk", "promotion": "promotion", "vexDecision": "decision",
	"graph": "graph", "replay": "replay", "evidence": "evidence",
}

type rule struct {
	name, ptr, value string // mutation
	field            string // the field the refusal must name
}

// commonRules break each rule of common.v1.json; every type must refuse
// each of them, naming the field.
var commonRules = []rule{
	{"_type required", "/_type", "", "/_type"},
	{"_type is Statement v1", "/_type", `"https://in-toto.io/Statement/v0.1"`, "/_type"},
	{"subject required", "/subject", "", "/subject"},
	{"subject not empty", "/subject", `[]`, "/subject"},
	{"subject is an array", "/subject", `{}`, "/subject"},
	{"subject digest required", "/subject/0/digest", "", "/subject/0/digest"},
	{"subject sha256 required", "/subject/0/digest", `{"sha512":"00"}`, "/subject/0/digest/sha256"},
	{"subject sha256 lowercase hex", "/subject/0/digest/sha256", `"ABCDEF"`, "/subject/0/digest/sha256"},
	{"subject name not empty", "/subject/0/name", `""`, "/subject/0/name"},
	{"predicate required", "/predicate", "", "/predicate"},
	{"predicate is an object", "/predicate", `[]`, "/predicate"},
	{"timestamp required", "/predicate/timestamp", "", "/predicate/timestamp"},
	{"timestamp is UTC", "/predicate/timestamp", `"2026-11-30T13:00:00+01:00"`, "/predicate/timestamp"},
	{"timestamp is ISO-8601", "/predicate/timestamp", `"30/11/2026 12:00Z"`, "/predicate/timestamp"},
	{"timestamp is a date", "/predicate/timestamp", `"2026-13-30T12:00:00Z"`, "/predicate/timestamp"},
	{"producer required", "/predicate/producer", "", "/predicate/producer"},
	{"producer service required", "/predicate/producer/service", "", "/predicate/producer/service"},
	{"producer service not empty", "/predicate/producer/service", `""`, "/predicate/producer/service"},
	{"producer version required", "/predicate/producer/version", "", "/predicate/producer/version"},
	{"producer image by digest", "/predicate/producer/image", `"registry.stella.local/stella/scanner:latest"`, "/predicate/producer/image"},
	{"producer has no other fields", "/predicate/producer/host", `"ci-7"`, "/predicate/producer/host"},
	{"critical required", "/predicate/critical", "", "/predicate/critical"},
	{"policy version required", "/predicate/critical/policyVersion", "", "/predicate/critical/policyVersion"},
	{"scanner definitions required", "/predicate/critical/scannerDefinitions", "", "/predicate/critical/scannerDefinitions"},
	{"scanner definitions digest", "/predicate/critical/scannerDefinitions/digest/sha256", `"x"`, "/predicate/critical/scannerDefinitions/digest/sha256"},
	{"scanner definitions version", "/predicate/critical/scannerDefinitions/version", "", "/predicate/critical/scannerDefinitions/version"},
	{"reachability required", "/predicate/critical/reachability", "", "/predicate/critical/reachability"},
	{"reachability mode known", "/predicate/critical/reachability/mode", `"maybe"`, "/predicate/critical/reachability/mode"},
	{"critical has no other fields", "/predicate/critical/debug", `true`, "/predicate/critical/debug"},
	{"materials required", "/predicate/materials", "", "/predicate/materials"},
	{"materials is an array", "/predicate/materials", `"sbom"`, "/predicate/materials"},
	{"material kind sbom or vex", "/predicate/materials/0/kind", `"binary"`, "/predicate/materials/0/kind"},
	{"material digest required", "/predicate/materials/0/digest", "", "/predicate/materials/0/digest"},
	{"material uri required", "/predicate/materials/0/uri", "", "/predicate/materials/0/uri"},
	{"auxiliary proof digest required", "/predicate/auxiliary_proofs", `[{"type":"rekor-inclusion"}]`, "/predicate/auxiliary_proofs/0/digest"},
	{"auxiliary proofs is an array", "/predicate/auxiliary_proofs", `{}`, "/predicate/auxiliary_proofs"},
	{"pii marker is a boolean", "/predicate/pii", `"yes"`, "/predicate/pii"},
	{"no unknown predicate member", "/predicate/extra", `{}`, "/predicate/extra"},
}

// typeRules break each rule of one type's own block.
var typeRules = map[string][]rule{
	"buildProvenance": {
		{"builderId required", "/predicate/build/builderId", "", "/predicate/build/builderId"},
		{"builderId is a URI", "/predicate/build/builderId", `"ci builder"`, "/predicate/build/builderId"},
		{"buildType required", "/predicate/build/buildType", "", "/predicate/build/buildType"},
		{"invocationId required", "/predicate/build/invocationId", "", "/predicate/build/invocationId"},
		{"startedOn is a date-time", "/predicate/build/startedOn", `"noon"`, "/predicate/build/startedOn"},
	},
	"sbom": {
		{"format known", "/predicate/sbom/format", `"xml"`, "/predicate/sbom/format"},
		{"specVersion dotted", "/predicate/sbom/specVersion", `"two"`, "/predicate/sbom/specVersion"},
		{"digest required", "/predicate/sbom/digest", "", "/predicate/sbom/digest"},
	},
	"scanResults": {
		{"scanner name required", "/predicate/scan/scanner/name", "", "/predicate/scan/scanner/name"},
		{"findings counts are integers", "/predicate/scan/findings/high", `2.5`, "/predicate/scan/findings/high"},
		{"findings counts not negative", "/predicate/scan/findings/low", `-1`, "/predicate/scan/findings/low"},
		{"findings critical required", "/predicate/scan/findings/critical", "", "/predicate/scan/findings/critical"},
		{"completedAt is UTC", "/predicate/scan/completedAt", `"2026-11-30T11:59:30-05:00"`, "/predicate/scan/completedAt"},
	},
	"policyEvaluation": {
		{"verdict known", "/predicate/evaluation/verdict", `"maybe"`, "/predicate/evaluation/verdict"},
		{"policyId required", "/predicate/evaluation/policyId", "", "/predicate/evaluation/policyId"},
		{"rules not empty", "/predicate/evaluation/rules", `[]`, "/predicate/evaluation/rules"},
		{"rule result known", "/predicate/evaluation/rules/0/result", `"ok"`, "/predicate/evaluation/rules/0/result"},
	},
	"vex": {
		{"format known", "/predicate/vex/format", `"txt"`, "/predicate/vex/format"},
		{"statements not empty", "/predicate/vex/statements", `[]`, "/predicate/vex/statements"},
		{"vulnerability id form", "/predicate/vex/statements/0/vulnerability", `"bug 12"`, "/predicate/vex/statements/0/vulnerability"},
		{"status known", "/predicate/vex/statements/1/status", `"wontfix"`, "/predicate/vex/statements/1/status"},
		{"not_affected needs a justification", "/predicate/vex/statements/0/justification", "", "/predicate/vex/statements/0/justification"},
	},
	"riskProfile": {
		{"score at most 10", "/predicate/risk/score", `11`, "/predicate/risk/score"},
		{"score not negative", "/predicate/risk/score", `-0.5`, "/predicate/risk/score"},
		{"level known", "/predicate/risk/level", `"severe"`, "/predicate/risk/level"},
		{"factors are strings", "/predicate/risk/factors", `[1]`, "/predicate/risk/factors/0"},
	},
	"promotion": {
		{"from required", "/predicate/promotion/from", "", "/predicate/promotion/from"},
		{"to required", "/predicate/promotion/to", "", "/predicate/promotion/to"},
		{"approvers not empty", "/predicate/promotion/approvedBy", `[]`, "/predicate/promotion/approvedBy"},
	},
	"vexDecision": {
		{"vulnerability required", "/predicate/decision/vulnerability", "", "/predicate/decision/vulnerability"},
		{"not_affected needs a justification", "/predicate/decision/justification", "", "/predicate/decision/justification"},
		{"justification known", "/predicate/decision/justification", `"trust me"`, "/predicate/decision/justification"},
		{"reachable is a boolean", "/predicate/decision/reachable", `"no"`, "/predicate/decision/reachable"},
	},
	"graph": {
		{"digest required", "/predicate/graph/digest", "", "/predicate/graph/digest"},
		{"nodes not negative", "/predicate/graph/nodes", `-3`, "/predicate/graph/nodes"},
		{"edges is an integer", "/predicate/graph/edges", `"many"`, "/predicate/graph/edges"},
	},
	"replay": {
		{"manifest digest required", "/predicate/replay/manifestDigest", "", "/predicate/replay/manifestDigest"},
		{"inputs not empty", "/predicate/replay/inputs", `[]`, "/predicate/replay/inputs"},
		{"input digest sha256", "/predicate/replay/inputs/0", `{"md5":"00"}`, "/predicate/replay/inputs/0/sha256"},
		{"toolchain required", "/predicate/replay/toolchain", "", "/predicate/replay/toolchain"},
	},
	"evidence": {
		{"kind known", "/predicate/evidence/kind", `"hearsay"`, "/predicate/evidence/kind"},
		{"items not empty", "/predicate/evidence/items", `[]`, "/predicate/evidence/items"},
		{"item type required", "/predicate/evidence/items/0/type", "", "/predicate/evidence/items/0/type"},
	},
}

func TestEveryTypeValidAndEachRule(t *testing.T) {
	if len(Types) != len(blocks) || len(typeRules) != len(Types) {
		t.Fatalf("%d types, %d blocks, %d rule sets", len(Types), len(blocks), len(typeRules))
	}
	for _, ty := range Types {
		t.Run(ty.Name, func(t *testing.T) {
			doc := fixture(t, ty.Name)
			if err := validate(t, ty.PredicateType, doc); err != nil {
				t.Fatalf("valid fixture refused: %v", err)
			}
			var st struct {
				Subject []struct {
					URI string `json:"uri"`
				} `json:"subject"`
			}
			json.Unmarshal(doc, &st)
			rules := append([]rule{}, commonRules...)
			rules = append(rules, rule{"own block required", "/predicate/" + blocks[ty.Name], "", "/predicate/" + blocks[ty.Name]})
			if st.Subject[0].URI != "" {
				rules = append(rules,
					rule{"subject uri is a PURL", "/subject/0/uri", `"https://example.com/web"`, "/subject/0/uri"},
					rule{"subject needs coordinates", "/subject/0/uri", "", "/subject/0"})
			} else {
				rules = append(rules,
					rule{"subject nevra form", "/subject/0/annotations/nevra", `"openssl"`, "/subject/0/annotations/nevra"},
					rule{"subject needs coordinates", "/subject/0/annotations", "", "/subject/0"})
			}
			rules = append(rules, typeRules[ty.Name]...)
			for _, r := range rules {
				t.Run(r.name, func(t *testing.T) {
					err := validate(t, ty.PredicateType, mutate(t, doc, r.ptr, r.value))
					var fe *FieldError
					if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
						t.Fatalf("accepted or wrong error: %v", err)
					}
					if fe.Field != r.field || fe.Schema != ty.File() {
						t.Fatalf("error names %s in %s, want %s: %v", fe.Field, fe.Schema, r.field, err)
					}
					if !strings.Contains(err.Error(), "field "+r.field+":") {
						t.Fatalf("message %q does not name the field", err)
					}
				})
			}
		})
	}
}

func TestSchemaFiles(t *testing.T) {
	for _, ty := range Types {
		b, ok := File(ty.File())
		if !ok {
			t.Fatalf("no file %s", ty.File())
		}
		var s struct {
			ID    string `json:"$id"`
			Title string `json:"title"`
		}
		if err := json.Unmarshal(b, &s); err != nil || s.ID != ty.ID() {
			t.Errorf("%s: $id %q, want %q (%v)", ty.File(), s.ID, ty.ID(), err)
		}
		if !strings.HasPrefix(ty.PredicateType, "https://stella-ops.org/attestations/"+ty.Name+"/v") {
			t.Errorf("%s: predicate type %s", ty.Name, ty.PredicateType)
		}
	}
	if _, ok := File(CommonFile); !ok {
		t.Error("no common schema")
	}
	if _, ok := File("../schema.go"); ok {
		t.Error("File escapes the schema directory")
	}
	if has, err := Default.Validate("https://slsa.dev/provenance/v1", map[string]any{}); has || err != nil {
		t.Errorf("a type without schema: %v %v", has, err)
	}
}
