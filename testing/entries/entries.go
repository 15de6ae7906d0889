// Package entries makes real, signed Rekor entries for tests and load
// generation: hashedrekord, dsse and intoto proposals built with Rekor's own
// pkg/types from an ECDSA P-256 key, as cosign and rekor-cli would send them.
package entries

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"

	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.1"
	_ "github.com/sigstore/rekor/pkg/types/intoto/v0.0.2"
)

// Signer is a producer's ECDSA P-256 key.
type Signer struct {
	Key    *ecdsa.PrivateKey
	PubPEM []byte
}

// NewSigner generates a key.
func NewSigner() (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Signer{Key: k, PubPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, nil
}

// SignBlob returns the ASN.1 ECDSA signature of SHA-256(data).
func (s *Signer) SignBlob(data []byte) ([]byte, error) {
	d := sha256.Sum256(data)
	return ecdsa.SignASN1(rand.Reader, s.Key, d[:])
}

// HashedRekord proposes a hashedrekord 0.0.1 entry for artifact.
func (s *Signer) HashedRekord(artifact []byte) (models.ProposedEntry, error) {
	sig, err := s.SignBlob(artifact)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(artifact)
	return types.NewProposedEntry(context.Background(), "hashedrekord", "0.0.1", types.ArtifactProperties{
		ArtifactHash:   "sha256:" + hex.EncodeToString(d[:]),
		SignatureBytes: sig,
		PublicKeyBytes: [][]byte{s.PubPEM},
		PKIFormat:      "x509",
	})
}

// Statement returns an in-toto Statement v1 about artifact.
func Statement(artifact []byte, predicateType string) []byte {
	d := sha256.Sum256(artifact)
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "artifact", "digest": map[string]string{"sha256": hex.EncodeToString(d[:])}}},
		"predicateType": predicateType,
		"predicate":     map[string]any{"note": fmt.Sprintf("about %d bytes", len(artifact))},
	}
	b, _ := json.Marshal(st)
	return b
}

// Envelope signs payload as a DSSE envelope.
func (s *Signer) Envelope(payloadType string, payload []byte) ([]byte, error) {
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
	sig, err := s.SignBlob([]byte(pae))
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
}

// DSSE proposes a dsse 0.0.1 entry of an in-toto statement about artifact.
func (s *Signer) DSSE(artifact []byte) (models.ProposedEntry, error) {
	env, err := s.Envelope("application/vnd.in-toto+json", Statement(artifact, "https://slsa.dev/provenance/v1"))
	if err != nil {
		return nil, err
	}
	return types.NewProposedEntry(context.Background(), "dsse", "0.0.1", types.ArtifactProperties{
		ArtifactBytes:  env,
		PublicKeyBytes: [][]byte{s.PubPEM},
	})
}

// Intoto proposes an intoto entry (version 0.0.1 or 0.0.2) about artifact.
func (s *Signer) Intoto(version string, artifact []byte) (models.ProposedEntry, error) {
	env, err := s.Envelope("application/vnd.in-toto+json", Statement(artifact, "https://spdx.dev/Document"))
	if err != nil {
		return nil, err
	}
	return types.NewProposedEntry(context.Background(), "intoto", version, types.ArtifactProperties{
		ArtifactBytes:  env,
		PublicKeyBytes: [][]byte{s.PubPEM},
	})
}
