// Package schema holds the Stella payload types: their predicate type
// URIs and names, and a versioned JSON Schema (draft 2020-12) for each,
// embedded from schemas/ and served by the signer under
// /api/v1/signer/schemas/.
//
// A Stella payload is an in-toto Statement v1 whose subjects carry a
// sha256 digest and PURL (uri) or NEVRA (annotations.nevra) coordinates,
// and whose predicate carries timestamp (UTC ISO-8601), producer (service,
// version, optional scanner image by digest), critical (policy version,
// scanner definitions, reachability context), materials (SBOM/VEX
// references), optional auxiliary_proofs, and one block of its own type.
// The common parts are in schemas/common.v1.json.
//
// [Set.Validate] checks a payload against its type's schema and names the
// first failing field as a JSON pointer. Everything here is pure and safe
// for concurrent use.
package schema

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// Canonical predicate type URIs of the Stella payload types. The seed
// documents write "stella.ops/<kind>@v1" and "StellaOps.<Kind>@1"; those are
// aliases (not absolute URIs, which cosign attest wants).
const (
	PromotionV1        = "https://stella-ops.org/attestations/promotion/v1"
	SBOMV1             = "https://stella-ops.org/attestations/sbom/v1"
	VEXV1              = "https://stella-ops.org/attestations/vex/v1"
	VEXDecisionV1      = "https://stella-ops.org/attestations/vexDecision/v1"
	GraphV1            = "https://stella-ops.org/attestations/graph/v1"
	BuildProvenanceV1  = "https://stella-ops.org/attestations/buildProvenance/v1"
	ScanResultsV1      = "https://stella-ops.org/attestations/scanResults/v1"
	PolicyEvaluationV1 = "https://stella-ops.org/attestations/policyEvaluation/v1"
	RiskProfileV1      = "https://stella-ops.org/attestations/riskProfile/v1"
	ReplayV1           = "https://stella-ops.org/attestations/replay/v1"
	EvidenceV1         = "https://stella-ops.org/attestations/evidence/v1"
)

// Type is one Stella payload type.
type Type struct {
	// Name is the type's short name, also the stem of its schema file
	// (schemas/<Name>.v<Version>.json).
	Name    string
	Version int
	// PredicateType is the canonical predicate type URI.
	PredicateType string
	// Aliases are the other predicate type names producers may write.
	Aliases []string
}

// File is the schema's file name, e.g. "promotion.v1.json".
func (t Type) File() string { return fmt.Sprintf("%s.v%d.json", t.Name, t.Version) }

// ID is the schema's $id.
func (t Type) ID() string { return BaseURL + t.File() }

// BaseURL is the prefix of every schema $id; schemas refer to each other
// relative to it.
const BaseURL = "https://stella-ops.org/schemas/signer/"

// CommonFile is the schema file of the parts every type shares.
const CommonFile = "common.v1.json"

// Types are the Stella payload types, in the provenance reference's order
// followed by the Signer module's additions.
var Types = []Type{
	{"buildProvenance", 1, BuildProvenanceV1, []string{"StellaOps.BuildProvenance@1", "stella.ops/buildProvenance@v1"}},
	{"sbom", 1, SBOMV1, []string{"StellaOps.SBOMAttestation@1", "stella.ops/sbom@v1", "https://stella-ops.org/attestations/sbom/1"}},
	{"scanResults", 1, ScanResultsV1, []string{"StellaOps.ScanResults@1", "stella.ops/scanResults@v1"}},
	{"policyEvaluation", 1, PolicyEvaluationV1, []string{"StellaOps.PolicyEvaluation@1", "stella.ops/policyEvaluation@v1", "stella.ops/policy@v1"}},
	{"vex", 1, VEXV1, []string{"StellaOps.VEXAttestation@1", "stella.ops/vex@v1"}},
	{"riskProfile", 1, RiskProfileV1, []string{"StellaOps.RiskProfileEvidence@1", "stella.ops/riskProfile@v1"}},
	{"promotion", 1, PromotionV1, []string{"StellaOps.PromotionAttestation@1", "stella.ops/promotion@v1"}},
	{"vexDecision", 1, VEXDecisionV1, []string{"stella.ops/vexDecision@v1"}},
	{"graph", 1, GraphV1, []string{"stella.ops/graph@v1"}},
	{"replay", 1, ReplayV1, []string{"stella.ops/replay@v1"}},
	{"evidence", 1, EvidenceV1, []string{"stella.ops/evidence@v1"}},
}

//go:embed schemas/*.json
var files embed.FS

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("payload does not match its schema")

// FieldError is a validation failure: the JSON pointer of the failing
// field inside the statement (e.g. "/predicate/producer/version") and what
// is wrong with it.
type FieldError struct {
	Schema  string // schema file, e.g. "promotion.v1.json"
	Field   string
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: field %s: %s", e.Schema, e.Field, e.Problem)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// Set is the compiled schemas, by canonical predicate type. The zero Set
// has none.
type Set struct {
	byURI map[string]*compiled
}

type compiled struct {
	t   Type
	sch *jsonschema.Schema
}

// Default is the set of [Types], compiled once.
var Default = must(Compile())

// Compile compiles the schema of every type in [Types]. Formats
// (date-time, uri) are asserted, not just annotated.
func Compile() (*Set, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.DefaultDraft(jsonschema.Draft2020)
	names, err := fs.Glob(files, "schemas/*.json")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		b, _ := files.ReadFile(n)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema: %s: %w", n, err)
		}
		if err := c.AddResource(BaseURL+path.Base(n), doc); err != nil {
			return nil, fmt.Errorf("schema: %s: %w", n, err)
		}
	}
	s := &Set{byURI: map[string]*compiled{}}
	for _, t := range Types {
		sch, err := c.Compile(t.ID())
		if err != nil {
			return nil, fmt.Errorf("schema: %s: %w", t.File(), err)
		}
		s.byURI[t.PredicateType] = &compiled{t: t, sch: sch}
	}
	return s, nil
}

// Lookup returns the type whose canonical predicate type is uri.
func (s *Set) Lookup(uri string) (Type, bool) {
	c, ok := s.byURI[uri]
	if !ok {
		return Type{}, false
	}
	return c.t, true
}

// Validate checks doc, a statement decoded with [jsonschema.UnmarshalJSON]
// (numbers as json.Number), against the schema of the type whose canonical
// predicate type is uri. It returns (false, nil) when uri has no schema,
// and a *[FieldError] when doc does not match.
func (s *Set) Validate(uri string, doc any) (bool, error) {
	c, ok := s.byURI[uri]
	if !ok {
		return false, nil
	}
	err := c.sch.Validate(doc)
	if err == nil {
		return true, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return true, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	field, problem := describe(ve)
	return true, &FieldError{Schema: c.t.File(), Field: field, Problem: problem}
}

// Decode decodes a JSON document the way [Set.Validate] wants it.
func Decode(b []byte) (any, error) { return jsonschema.UnmarshalJSON(bytes.NewReader(b)) }

// describe picks the most specific failure of a validation error tree and
// names its field. Among the leaves it prefers the deepest instance
// location (the field itself over the object holding it), then the first
// in the order the schema lists them. A missing property is named by its
// own pointer.
func describe(ve *jsonschema.ValidationError) (field, problem string) {
	var best *jsonschema.ValidationError
	bestDepth := -1
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 || isAnyOf(e) {
			if d := depth(e); d > bestDepth {
				best, bestDepth = e, d
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	loc := slices.Clone(best.InstanceLocation)
	switch k := best.ErrorKind.(type) {
	case *kind.Required:
		if len(k.Missing) > 0 {
			loc = append(loc, k.Missing[0])
			return pointer(loc), "required but missing"
		}
	case *kind.AdditionalProperties:
		if len(k.Properties) > 0 {
			loc = append(loc, k.Properties[0])
			return pointer(loc), "not allowed here"
		}
	case *kind.AnyOf:
		return pointer(loc), anyOfProblem(best)
	}
	return pointer(loc), best.ErrorKind.LocalizedString(printer)
}

func isAnyOf(e *jsonschema.ValidationError) bool {
	_, ok := e.ErrorKind.(*kind.AnyOf)
	return ok
}

// depth is how deep the failing field is; a missing or extra property is
// one level below the object reporting it.
func depth(e *jsonschema.ValidationError) int {
	d := len(e.InstanceLocation)
	switch e.ErrorKind.(type) {
	case *kind.Required, *kind.AdditionalProperties:
		d++
	}
	return d
}

// anyOfProblem explains the only anyOf in the schemas: subject coordinates.
func anyOfProblem(e *jsonschema.ValidationError) string {
	if strings.HasSuffix(e.SchemaURL, "/subjects/items") || strings.Contains(e.SchemaURL, "subjects") {
		return "needs PURL coordinates in uri or NEVRA coordinates in annotations.nevra"
	}
	return "matches none of the allowed forms"
}

func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}

// File returns a schema file by name (e.g. "promotion.v1.json" or
// [CommonFile]).
func File(name string) ([]byte, bool) {
	if strings.ContainsAny(name, "/\\") {
		return nil, false
	}
	b, err := files.ReadFile("schemas/" + name)
	return b, err == nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
