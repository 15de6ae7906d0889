package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/stellaops/tlog/signer/canonical"
	"github.com/stellaops/tlog/signer/schema"
)

// Policy is what one tenant (or one key) may sign.
type Policy struct {
	// Catalog resolves predicate type aliases. Nil means [DefaultCatalog].
	Catalog *Catalog
	// AllowedPredicateTypes lists the predicate types this tenant may sign,
	// by canonical URI or alias. Empty means every type in the catalog.
	// Types outside the catalog are never allowed.
	AllowedPredicateTypes []string
	// Schemas are the payload types with a JSON Schema (the Stella
	// types). Nil means [schema.Default].
	Schemas *schema.Set
}

// Request is a payload someone asks the signer to sign.
type Request struct {
	PayloadType string // only in-toto Statements ("application/vnd.in-toto+json") are accepted
	Payload     []byte
	// PII is the caller's own marking of the payload as containing
	// personal data (the API's pii=true).
	PII bool
	// RedactionTicket names the approved redaction review that allows a
	// PII-marked payload to be signed (e.g. "PRIV-1234"). The signer checks
	// its presence and shape, not its existence: it is recorded in the
	// audit trail for a reviewer to follow.
	RedactionTicket string
}

// Decision is an accepted request.
type Decision struct {
	Statement *Statement
	// PredicateType is the canonical URI of the statement's predicate type
	// (the payload itself is signed unchanged, alias included).
	PredicateType string
	// PII reports whether the payload was marked as containing personal
	// data, by the request or inside the statement.
	PII bool
	// RedactionTicket is the ticket that allowed a PII payload.
	RedactionTicket string
	// Payload is what to sign: the RFC 8785 form of the request's payload
	// for a Stella payload type, the request's payload byte for byte
	// otherwise.
	Payload []byte
	// Stella is set for a Stella payload type.
	Stella *Stella
}

// Stella is what the signer needs to know about a Stella payload beyond
// the statement.
type Stella struct {
	Type     schema.Type
	Producer Producer
}

// Producer is the predicate's producer block.
type Producer struct {
	Service string `json:"service"`
	Version string `json:"version"`
	// Image is the producer's (scanner's) image by digest,
	// "repo@sha256:<hex>", when it names one.
	Image string `json:"image,omitempty"`
}

const inTotoPayloadType = "application/vnd.in-toto+json"

var ticketRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$`)

// Check validates req against the policy (a nil Policy is the default one) and returns the decision, or an
// error wrapping one of the package's refusal sentinels. The checks, in
// order: payload type; Statement v1 validity ([ParseStatement]); predicate
// type known and allowed; for a Stella payload type, its JSON Schema
// (refusals wrap [ErrSchema] and name the failing field) and RFC 8785
// canonicalisation (package canonical: the decision's Payload); the PII
// rule.
//
// PII rule: a payload is marked pii=true when the request says so, when
// the predicate has a top-level "pii" member, or when a subject has a
// "pii" annotation, whose value is true or "true" (false or "false" mark
// nothing; any other value is an invalid statement). A marked payload is
// refused with [ErrRedactionRequired] unless the request carries a
// redaction ticket: 1–128 characters of letters, digits and ._:/#-,
// starting with a letter or digit.
func (p *Policy) Check(req Request) (*Decision, error) {
	if p == nil {
		p = &Policy{}
	}
	if req.PayloadType != inTotoPayloadType {
		return nil, fmt.Errorf("%w: %q (want %q)", ErrPayloadType, req.PayloadType, inTotoPayloadType)
	}
	st, err := ParseStatement(req.Payload)
	if err != nil {
		return nil, err
	}
	cat := p.Catalog
	if cat == nil {
		cat = DefaultCatalog
	}
	uri, ok := cat.Canonical(st.PredicateType)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a known predicate type", ErrPredicateNotAllowed, st.PredicateType)
	}
	if len(p.AllowedPredicateTypes) > 0 && !slices.ContainsFunc(p.AllowedPredicateTypes, func(a string) bool {
		c, ok := cat.Canonical(a)
		return ok && c == uri
	}) {
		return nil, fmt.Errorf("%w: %q for this tenant", ErrPredicateNotAllowed, st.PredicateType)
	}
	d := &Decision{Statement: st, PredicateType: uri, Payload: req.Payload}
	if err := p.stella(d, req.Payload); err != nil {
		return nil, err
	}
	pii, err := markedPII(st)
	if err != nil {
		return nil, err
	}
	pii = pii || req.PII
	d.PII = pii
	if pii {
		if req.RedactionTicket == "" {
			return nil, ErrRedactionRequired
		}
		if !ticketRE.MatchString(req.RedactionTicket) {
			return nil, fmt.Errorf("%w: malformed redaction ticket", ErrRedactionRequired)
		}
		d.RedactionTicket = req.RedactionTicket
	}
	return d, nil
}

// markedPII looks for pii markers inside the statement.
func markedPII(st *Statement) (bool, error) {
	var marks []json.RawMessage
	if len(st.Predicate) > 0 {
		var pred map[string]json.RawMessage
		if err := json.Unmarshal(st.Predicate, &pred); err != nil {
			return false, fmt.Errorf("%w: predicate: %v", ErrInvalidStatement, err)
		}
		if v, ok := pred["pii"]; ok {
			marks = append(marks, v)
		}
	}
	for _, s := range st.Subject {
		if v, ok := s.Annotations["pii"]; ok {
			marks = append(marks, v)
		}
	}
	pii := false
	for _, m := range marks {
		switch strings.TrimSpace(string(m)) {
		case "true", `"true"`:
			pii = true
		case "false", `"false"`:
		default:
			return false, fmt.Errorf("%w: pii marker %s is not true or false", ErrInvalidStatement, m)
		}
	}
	return pii, nil
}

// stella validates a Stella payload against its schema and canonicalises
// it; other payloads are left alone. The payload was checked by
// ParseStatement (one object, no duplicate keys), so its decoded form is
// the statement itself.
func (p *Policy) stella(d *Decision, payload []byte) error {
	set := p.Schemas
	if set == nil {
		set = schema.Default
	}
	t, ok := set.Lookup(d.PredicateType)
	if !ok {
		return nil
	}
	if !utf8.Valid(payload) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalidStatement)
	}
	doc, err := schema.Decode(payload)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidStatement, err)
	}
	if _, err := set.Validate(d.PredicateType, doc); err != nil {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	c, err := canonical.Encode(doc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidStatement, err)
	}
	// The schema guarantees the shape: predicate.producer with string
	// service and version, optional string image.
	prod := doc.(map[string]any)["predicate"].(map[string]any)["producer"].(map[string]any)
	pr := Producer{Service: prod["service"].(string), Version: prod["version"].(string)}
	pr.Image, _ = prod["image"].(string)
	d.Payload, d.Stella = c, &Stella{Type: t, Producer: pr}
	return nil
}
