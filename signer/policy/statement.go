// Package policy decides whether the signer may sign a payload: it
// validates in-toto Statement v1 payloads, checks their predicate type
// against an allow-list (with aliases), and refuses payloads marked as
// containing personal data (pii=true) unless a redaction ticket is given.
//
// Decisions are pure functions of their inputs: no I/O, no retries, safe
// for concurrent use. Refusals wrap one of the sentinel errors below, so
// that an API maps them to a status and a metric label with errors.Is
// ([Reason] gives that label).
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// StatementTypeV1 is the _type of an in-toto Statement v1.
const StatementTypeV1 = "https://in-toto.io/Statement/v1"

// Refusal reasons.
var (
	ErrPayloadType         = errors.New("policy: payload type not accepted")
	ErrInvalidStatement    = errors.New("policy: invalid in-toto Statement v1")
	ErrPredicateNotAllowed = errors.New("policy: predicate type not allowed")
	ErrRedactionRequired   = errors.New("policy: payload marked pii=true needs a redaction ticket")
	ErrSchema              = errors.New("policy: payload does not match the schema of its type")
)

// Reason returns a short stable label for a refusal ("invalid_statement",
// …), or "internal" for any other error and "" for nil.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrPayloadType):
		return "payload_type"
	case errors.Is(err, ErrInvalidStatement):
		return "invalid_statement"
	case errors.Is(err, ErrPredicateNotAllowed):
		return "predicate_type_not_allowed"
	case errors.Is(err, ErrRedactionRequired):
		return "redaction_required"
	case errors.Is(err, ErrSchema):
		return "schema_violation"
	}
	return "internal"
}

// Statement is an in-toto Statement v1 (in-toto/attestation spec v1).
type Statement struct {
	Type          string               `json:"_type"`
	Subject       []ResourceDescriptor `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     json.RawMessage      `json:"predicate,omitempty"`
}

// ResourceDescriptor is a Statement subject.
type ResourceDescriptor struct {
	Name             string                     `json:"name,omitempty"`
	URI              string                     `json:"uri,omitempty"`
	Digest           map[string]string          `json:"digest"`
	Content          []byte                     `json:"content,omitempty"`
	DownloadLocation string                     `json:"downloadLocation,omitempty"`
	MediaType        string                     `json:"mediaType,omitempty"`
	Annotations      map[string]json.RawMessage `json:"annotations,omitempty"`
}

// digestHexLen are the digest algorithms a subject must carry one of, with
// the length of their lowercase hex value.
var digestHexLen = map[string]int{"sha256": 64, "sha512": 128}

// ParseStatement decodes and validates an in-toto Statement v1:
//   - one JSON object, no duplicate keys, no fields outside the spec;
//   - _type is [StatementTypeV1];
//   - at least one subject; every subject has a sha256 and/or sha512
//     digest, lowercase hex of the right length (other algorithms may be
//     present and must be non-empty);
//   - predicateType is non-empty; predicate, if present, is an object.
//
// Errors wrap [ErrInvalidStatement].
func ParseStatement(payload []byte) (*Statement, error) {
	if err := checkDuplicateKeys(payload); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidStatement, err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var st Statement
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidStatement, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the statement", ErrInvalidStatement)
	}
	if st.Type != StatementTypeV1 {
		return nil, fmt.Errorf("%w: _type %q, want %q", ErrInvalidStatement, st.Type, StatementTypeV1)
	}
	if len(st.Subject) == 0 {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidStatement)
	}
	for i, s := range st.Subject {
		if err := checkDigests(s.Digest); err != nil {
			return nil, fmt.Errorf("%w: subject %d: %v", ErrInvalidStatement, i, err)
		}
	}
	if st.PredicateType == "" {
		return nil, fmt.Errorf("%w: no predicateType", ErrInvalidStatement)
	}
	if p := bytes.TrimSpace(st.Predicate); len(p) > 0 && p[0] != '{' {
		return nil, fmt.Errorf("%w: predicate is not a JSON object", ErrInvalidStatement)
	}
	return &st, nil
}

func checkDigests(d map[string]string) error {
	strong := 0
	for alg, v := range d {
		n, known := digestHexLen[alg]
		switch {
		case !known && v == "":
			return fmt.Errorf("empty %s digest", alg)
		case !known:
			continue
		case len(v) != n || !isLowerHex(v):
			return fmt.Errorf("%s digest must be %d lowercase hex digits", alg, n)
		}
		strong++
	}
	if strong == 0 {
		return errors.New("no sha256 or sha512 digest")
	}
	return nil
}

func isLowerHex(s string) bool {
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkDuplicateKeys rejects JSON with an object holding the same key
// twice: parsers disagree on which value wins, so a verifier could read
// another statement than the one the policy checked.
func checkDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("duplicate key %q", key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	return walk()
}
