package api

import "time"

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

// Paths of release verification.
const (
	// PathVerifyReferrers is GET ?digest=sha256:…[&repository=host/path]
	// (scope sign:dsse or approve:release): the release verdict of a
	// scanner image.
	PathVerifyReferrers = "/api/v1/signer/verify/referrers"
	// PathReleaseApprovals is POST (scope approve:release): a manual
	// approval of a scanner image whose verification fails.
	PathReleaseApprovals = "/api/v1/signer/verify/approvals"
)

// ReleaseVerdict is the answer of GET /api/v1/signer/verify/referrers.
type ReleaseVerdict struct {
	Digest     string `json:"digest"`
	Repository string `json:"repository,omitempty"`
	// Verdict is "trusted", "allow-listed", "untrusted" or "missing".
	Verdict string `json:"verdict"`
	Trusted bool   `json:"trusted"`
	// Signers are the trusted release keys whose referrers verified.
	Signers   []string          `json:"signers,omitempty"`
	Referrers []ReleaseReferrer `json:"referrers,omitempty"`
	CheckedAt time.Time         `json:"checkedAt"`
	// Approval is the active manual approval of the digest for the
	// caller's tenant, if any (it lets sign/dsse proceed despite the
	// verdict).
	Approval *ReleaseApproval `json:"approval,omitempty"`
}

// ReleaseReferrer is one referrer examined.
type ReleaseReferrer struct {
	Digest       string `json:"digest"`
	ArtifactType string `json:"artifactType"`
	// Result is "verified", "rejected" or "skipped" (not an artifact type
	// the signer examines).
	Result        string `json:"result"`
	Signer        string `json:"signer,omitempty"`
	PredicateType string `json:"predicateType,omitempty"`
	Problem       string `json:"problem,omitempty"`
}

// ApprovalRequest is the body of POST /api/v1/signer/verify/approvals.
type ApprovalRequest struct {
	// Digest of the scanner image, sha256:<hex>.
	Digest string `json:"digest"`
	// Tenant the approval is for; "" approves for every tenant.
	Tenant string `json:"tenant,omitempty"`
	// Ticket (change or incident) and Reason are required.
	Ticket string `json:"ticket"`
	Reason string `json:"reason"`
	// ExpiresAt bounds the approval (at most releases.max_approval away).
	ExpiresAt time.Time `json:"expiresAt"`
}

// ReleaseApproval is a recorded approval.
type ReleaseApproval struct {
	ID         int64     `json:"id"`
	Digest     string    `json:"digest"`
	Tenant     string    `json:"tenant,omitempty"`
	ApprovedBy string    `json:"approvedBy"`
	Ticket     string    `json:"ticket"`
	Reason     string    `json:"reason"`
	CreatedAt  time.Time `json:"createdAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
	RequestID  string    `json:"requestId"`
}
