package api

// Paths of the Stella payload type schemas (no authentication).
const (
	// PathSchemas lists the Stella payload types; PathSchemas + "/" + file
	// serves one JSON Schema (e.g. ".../schemas/promotion.v1.json", and
	// the shared ".../schemas/common.v1.json" the others refer to).
	PathSchemas = "/api/v1/signer/schemas"
)

// SchemasResponse is the answer of GET /api/v1/signer/schemas.
type SchemasResponse struct {
	Schemas []SchemaInfo `json:"schemas"`
}

// SchemaInfo is one Stella payload type.
type SchemaInfo struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	// PredicateType is the canonical predicate type URI; Aliases are the
	// other names a statement may use.
	PredicateType string   `json:"predicateType"`
	Aliases       []string `json:"aliases"`
	// ID is the schema's $id; Path is where this service serves it.
	ID   string `json:"id"`
	Path string `json:"path"`
}
