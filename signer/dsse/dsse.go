// Package dsse signs payloads as DSSE envelopes (Dead Simple Signing
// Envelope, github.com/secure-systems-lab/dsse, protocol v1).
//
// The signature is over PAE(payloadType, payload), never over the base64
// text. ECDSA P-256 keys sign SHA-256(PAE) and give ASN.1 DER (what cosign,
// sigstore-go and Rekor expect); Ed25519 keys sign PAE itself. Each
// signature's keyid is [KeyID] of the signing key: lowercase hex of
// SHA-256 of its DER SubjectPublicKeyInfo. The keyid is an unauthenticated
// hint; verifiers pick keys by it but must not trust it. The base64 form of
// the same 32 bytes is the "hint" of a sigstore bundle.
//
// Functions here are pure apart from the keys they call; they are safe for
// concurrent use when the keys are. Nothing is retried here.
package dsse

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/stellaops/tlog/signer/keys"
)

// InTotoPayloadType is the payloadType of in-toto Statements.
const InTotoPayloadType = "application/vnd.in-toto+json"

// ErrVerify reports that no signature in an envelope verifies with a key.
var ErrVerify = errors.New("dsse: no valid signature for the key")

// Envelope is a DSSE envelope. In JSON, Payload and each Sig are standard
// base64; when decoding, URL-safe base64 is accepted too, as the
// specification requires.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     []byte      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// PAE is the DSSE v1 pre-authentication encoding:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
func PAE(payloadType string, payload []byte) []byte {
	b := make([]byte, 0, 32+len(payloadType)+len(payload))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	b = append(b, ' ')
	return append(b, payload...)
}

// KeyID is the keyid this package writes for a key: lowercase hex of
// SHA-256 of its DER SubjectPublicKeyInfo.
func KeyID(pub crypto.PublicKey) (string, error) {
	id, err := keys.ID(pub)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(id[:]), nil
}

// Sign returns an envelope of payload signed by every signer, in order
// (during a key rotation, sign with the old and the new key). Each signer
// must be an ECDSA P-256 or Ed25519 key honouring the package keys contract.
func Sign(ctx context.Context, payloadType string, payload []byte, signers ...crypto.Signer) (*Envelope, error) {
	if len(signers) == 0 {
		return nil, errors.New("dsse: no signer")
	}
	pae := PAE(payloadType, payload)
	env := &Envelope{PayloadType: payloadType, Payload: payload}
	for _, s := range signers {
		id, err := KeyID(s.Public())
		if err != nil {
			return nil, err
		}
		sig, err := keys.SignMessage(ctx, s, pae)
		if err != nil {
			return nil, fmt.Errorf("dsse: signing with key %s: %w", id, err)
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: id, Sig: sig})
	}
	return env, nil
}

// Verify checks that at least one signature of env verifies with pub, and
// returns its index. Signatures whose keyid is set and differs from
// [KeyID] of pub are skipped.
func Verify(env *Envelope, pub crypto.PublicKey) (int, error) {
	id, err := KeyID(pub)
	if err != nil {
		return -1, err
	}
	pae := PAE(env.PayloadType, env.Payload)
	for i, s := range env.Signatures {
		if s.KeyID != "" && s.KeyID != id {
			continue
		}
		switch pub := pub.(type) {
		case *ecdsa.PublicKey:
			d := sha256.Sum256(pae)
			if ecdsa.VerifyASN1(pub, d[:], s.Sig) {
				return i, nil
			}
		case ed25519.PublicKey:
			if ed25519.Verify(pub, pae, s.Sig) {
				return i, nil
			}
		}
	}
	return -1, ErrVerify
}

// UnmarshalJSON decodes an envelope, accepting standard and URL-safe
// base64, padded or not.
func (e *Envelope) UnmarshalJSON(b []byte) error {
	var raw struct {
		PayloadType *string `json:"payloadType"`
		Payload     *string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw.PayloadType == nil || raw.Payload == nil {
		return errors.New("dsse: envelope lacks payloadType or payload")
	}
	payload, err := decodeBase64(*raw.Payload)
	if err != nil {
		return fmt.Errorf("dsse: payload: %w", err)
	}
	out := Envelope{PayloadType: *raw.PayloadType, Payload: payload}
	for i, s := range raw.Signatures {
		sig, err := decodeBase64(s.Sig)
		if err != nil {
			return fmt.Errorf("dsse: signature %d: %w", i, err)
		}
		out.Signatures = append(out.Signatures, Signature{KeyID: s.KeyID, Sig: sig})
	}
	*e = out
	return nil
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}
