package policy

import (
	"fmt"
	"slices"

	"github.com/stellaops/tlog/signer/schema"
)

// PredicateType is one accepted predicate type: its canonical URI and the
// other names producers may write for it.
type PredicateType struct {
	URI     string
	Aliases []string
}

// Some of Stella's own predicate types (all of them: [schema.Types]). The
// seed documents name them "stella.ops/<kind>@v1" or "StellaOps.<Kind>@1",
// which are not absolute URIs (cosign attest rejects them), so the
// canonical form is a URI and the seed names are aliases.
const (
	PromotionV1   = schema.PromotionV1
	SBOMV1        = schema.SBOMV1
	VEXV1         = schema.VEXV1
	VEXDecisionV1 = schema.VEXDecisionV1
	GraphV1       = schema.GraphV1
)

// Well-known predicate types (in-toto attestation predicate registry).
const (
	SLSAProvenanceV1   = "https://slsa.dev/provenance/v1"
	SLSAProvenanceV02  = "https://slsa.dev/provenance/v0.2"
	SLSAVerificationV1 = "https://slsa.dev/verification_summary/v1"
	SPDX               = "https://spdx.dev/Document"
	CycloneDX          = "https://cyclonedx.org/bom"
	OpenVEX            = "https://openvex.dev/ns"
	OpenVEXV020        = "https://openvex.dev/ns/v0.2.0"
)

// BuiltinPredicateTypes is the default catalog: well-known types, then
// the Stella payload types of package schema. Aliases include cosign's
// --type short names, so that statements made with them are accepted.
// Version-specific URIs (".../Document/v2.3", ".../bom/v1.5") are distinct
// types, not aliases: a tenant allows exactly the versions it consumes.
var BuiltinPredicateTypes = append([]PredicateType{
	{URI: SLSAProvenanceV1, Aliases: []string{"slsaprovenance1"}},
	{URI: SLSAProvenanceV02, Aliases: []string{"slsaprovenance02", "slsaprovenance"}},
	{URI: SLSAVerificationV1},
	{URI: SPDX, Aliases: []string{"spdx", "spdxjson"}},
	{URI: "https://spdx.dev/Document/v2.3"},
	{URI: "https://spdx.dev/Document/v3"},
	{URI: CycloneDX, Aliases: []string{"cyclonedx"}},
	{URI: "https://cyclonedx.org/bom/v1.4"},
	{URI: "https://cyclonedx.org/bom/v1.5"},
	{URI: "https://cyclonedx.org/bom/v1.6"},
	{URI: OpenVEX, Aliases: []string{"openvex"}},
	{URI: OpenVEXV020},
}, stellaTypes()...)

func stellaTypes() []PredicateType {
	var out []PredicateType
	for _, t := range schema.Types {
		out = append(out, PredicateType{URI: t.PredicateType, Aliases: t.Aliases})
	}
	return out
}

// Catalog maps every accepted predicate type name to its canonical URI.
// Names are compared exactly (case included). A Catalog is immutable.
type Catalog struct {
	canonical map[string]string
}

// NewCatalog builds a catalog; a name listed twice is an error.
func NewCatalog(types []PredicateType) (*Catalog, error) {
	c := &Catalog{canonical: map[string]string{}}
	for _, t := range types {
		if t.URI == "" {
			return nil, fmt.Errorf("policy: predicate type without URI")
		}
		for _, name := range append([]string{t.URI}, t.Aliases...) {
			if _, dup := c.canonical[name]; dup {
				return nil, fmt.Errorf("policy: predicate type name %q listed twice", name)
			}
			c.canonical[name] = t.URI
		}
	}
	return c, nil
}

// Canonical returns the canonical URI for a predicate type name.
func (c *Catalog) Canonical(name string) (string, bool) {
	uri, ok := c.canonical[name]
	return uri, ok
}

// URIs returns the canonical URIs of the catalog, sorted.
func (c *Catalog) URIs() []string {
	var out []string
	for name, uri := range c.canonical {
		if name == uri {
			out = append(out, uri)
		}
	}
	slices.Sort(out)
	return out
}

// DefaultCatalog is [BuiltinPredicateTypes] as a Catalog.
var DefaultCatalog = must(NewCatalog(BuiltinPredicateTypes))

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
