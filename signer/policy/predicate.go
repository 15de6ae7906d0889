package policy

import (
	"fmt"
	"slices"
)

// PredicateType is one accepted predicate type: its canonical URI and the
// other names producers may write for it.
type PredicateType struct {
	URI     string
	Aliases []string
}

// Stella's own predicate types. The seed documents name them
// "stella.ops/<kind>@v1", which is not an absolute URI (cosign attest
// rejects it), so the canonical form is a URI and the seed name an alias.
const (
	PromotionV1   = "https://stella-ops.org/attestations/promotion/v1"
	SBOMV1        = "https://stella-ops.org/attestations/sbom/v1"
	VEXV1         = "https://stella-ops.org/attestations/vex/v1"
	VEXDecisionV1 = "https://stella-ops.org/attestations/vexDecision/v1"
	GraphV1       = "https://stella-ops.org/attestations/graph/v1"
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

// BuiltinPredicateTypes is the default catalog. Aliases include cosign's
// --type short names, so that statements made with them are accepted.
// Version-specific URIs (".../Document/v2.3", ".../bom/v1.5") are distinct
// types, not aliases: a tenant allows exactly the versions it consumes.
var BuiltinPredicateTypes = []PredicateType{
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
	{URI: PromotionV1, Aliases: []string{"stella.ops/promotion@v1"}},
	{URI: SBOMV1, Aliases: []string{"stella.ops/sbom@v1", "https://stella-ops.org/attestations/sbom/1"}},
	{URI: VEXV1, Aliases: []string{"stella.ops/vex@v1"}},
	{URI: VEXDecisionV1, Aliases: []string{"stella.ops/vexDecision@v1"}},
	{URI: GraphV1, Aliases: []string{"stella.ops/graph@v1"}},
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
