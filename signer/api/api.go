// Package api holds the wire types of the signer's HTTP API, shared by the
// service (package server) and its Go client (package client). It has no
// dependencies beyond the standard library, so that callers such as the
// logserver and the witness import it without cgo or PKCS#11.
//
// All bodies are JSON. []byte fields are standard base64. Every error
// answer is an [Error] with a stable Code.
package api

import (
	"encoding/json"
	"time"
)

// Paths of the API.
const (
	PathDSSE        = "/api/v1/signer/sign/dsse"
	PathDigests     = "/api/v1/signer/sign/digests"
	PathCheckpoint  = "/api/v1/signer/sign/checkpoint"
	PathCosignature = "/api/v1/signer/sign/cosignature"
	PathKeys        = "/api/v1/signer/keys"
)

// BundleMediaType is the media type of the sigstore bundles the DSSE
// endpoint returns.
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// DSSERequest is the body of POST /api/v1/signer/sign/dsse.
type DSSERequest struct {
	// Key is the key name; optional when the tenant has one DSSE key.
	Key string `json:"key,omitempty"`
	// PayloadType defaults to application/vnd.in-toto+json.
	PayloadType string `json:"payloadType,omitempty"`
	// Payload is the payload, base64. Alternatively Statement holds the
	// in-toto statement as a JSON object, signed byte for byte as sent.
	Payload   []byte          `json:"payload,omitempty"`
	Statement json.RawMessage `json:"statement,omitempty"`
	// PII marks the payload as containing personal data; it is then
	// signed only with a RedactionTicket (so is a statement marked inside).
	PII             bool   `json:"pii,omitempty"`
	RedactionTicket string `json:"redactionTicket,omitempty"`
	// Bundle asks for a sigstore bundle v0.3 next to the envelope.
	Bundle bool `json:"bundle,omitempty"`
}

// DSSEResponse is the answer of POST /api/v1/signer/sign/dsse.
type DSSEResponse struct {
	// Envelope is the DSSE envelope {"payloadType","payload","signatures":[{"keyid","sig"}]}.
	Envelope json.RawMessage `json:"envelope"`
	// Bundle is the sigstore bundle v0.3, when asked for.
	Bundle     json.RawMessage `json:"bundle,omitempty"`
	Key        string          `json:"key"`
	KeyVersion int             `json:"keyVersion"`
	// KeyID is hex SHA-256 of the key's DER SPKI (the envelope's keyid).
	KeyID string `json:"keyId"`
	// PredicateType is the canonical predicate type URI of a statement.
	PredicateType string `json:"predicateType,omitempty"`
	PAESHA256     string `json:"paeSha256"`
	RequestID     string `json:"requestId"`
}

// DigestsRequest is the body of POST /api/v1/signer/sign/digests.
type DigestsRequest struct {
	Key string `json:"key"`
	// Version pins a key version (it must be active); 0 means the newest
	// active version.
	Version int `json:"version,omitempty"`
	// Digests are SHA-256 digests, base64 (32 bytes each).
	Digests [][]byte `json:"digests"`
}

// DigestsResponse carries one ASN.1 DER ECDSA signature per digest, in
// order, base64.
type DigestsResponse struct {
	Key        string   `json:"key"`
	KeyVersion int      `json:"keyVersion"`
	KeyID      string   `json:"keyId"`
	Signatures [][]byte `json:"signatures"`
	RequestID  string   `json:"requestId"`
}

// NoteRequest is the body of POST /api/v1/signer/sign/checkpoint and
// /sign/cosignature.
type NoteRequest struct {
	Key string `json:"key"`
	// Note is the checkpoint text (origin, size, base64 root hash, optional
	// extension lines), ending in a newline, without signature lines.
	Note string `json:"note"`
}

// NoteResponse carries the signature lines ("— <name> <base64>\n"), one per
// active key version, oldest version first, and the whole signed note
// (text, blank line, lines).
type NoteResponse struct {
	Key         string   `json:"key"`
	Signatures  []string `json:"signatures"`
	KeyVersions []int    `json:"keyVersions"`
	SignedNote  string   `json:"signedNote"`
	RequestID   string   `json:"requestId"`
}

// KeysResponse is the answer of GET /api/v1/signer/keys.
type KeysResponse struct {
	Keys []KeyInfo `json:"keys"`
}

// KeyInfo is one key and its versions.
type KeyInfo struct {
	Name     string           `json:"name"`
	Purposes []string         `json:"purposes"`
	NoteName string           `json:"noteName,omitempty"`
	Versions []KeyVersionInfo `json:"versions"`
}

// KeyVersionInfo is one key version's public data.
type KeyVersionInfo struct {
	Version   int        `json:"version"`
	State     string     `json:"state"` // pending, active, expired
	NotBefore *time.Time `json:"notBefore,omitempty"`
	NotAfter  *time.Time `json:"notAfter,omitempty"`
	// Available is false while the key pair cannot be opened.
	Available bool   `json:"available"`
	Algorithm string `json:"algorithm,omitempty"` // ecdsa-p256, ed25519
	KeyID     string `json:"keyId,omitempty"`     // hex SHA-256 of the SPKI
	Hint      string `json:"hint,omitempty"`      // base64 of the same: the sigstore bundle hint
	PublicKey string `json:"publicKeyPem,omitempty"`
	// NoteVerifierKey is the signed-note vkey of checkpoint keys;
	// CosignatureVerifierKey the cosignature/v1 vkey of cosignature keys.
	NoteVerifierKey        string `json:"noteVerifierKey,omitempty"`
	CosignatureVerifierKey string `json:"cosignatureVerifierKey,omitempty"`
}

// Error is the body of every error answer.
type Error struct {
	Code      string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"requestId,omitempty"`
}
