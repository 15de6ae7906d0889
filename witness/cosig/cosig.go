// Package cosig produces the witness's cosignature/v1 signatures
// (c2sp.org/tlog-cosignature, Ed25519, signature type 0x04) and holds the
// key-file format of the witness key.
//
// The private key is reached only through crypto.Signer, so a PKCS#11 or
// remote signer can replace the key file: it must hold an Ed25519 key, return
// an ed25519.PublicKey from Public and sign the message itself (pure
// Ed25519, crypto.Hash(0) options).
package cosig

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/stellaops/tlog/internal/notekey"
)

// TypeCosignatureV1 is the signed-note type byte of Ed25519 cosignature/v1.
const TypeCosignatureV1 = notekey.CosignatureV1

// ErrBadKey reports a key that is not a usable Ed25519 signing key.
var ErrBadKey = errors.New("witness key is not an Ed25519 signer")

// A Signer makes cosignature/v1 signature lines under one key name.
// It is safe for concurrent use if the underlying crypto.Signer is.
type Signer struct {
	name  string
	key   crypto.Signer
	pub   ed25519.PublicKey
	keyID uint32
}

// NewSigner returns a Signer for the cosigner name and an Ed25519 key.
func NewSigner(name string, key crypto.Signer) (*Signer, error) {
	if !notekey.ValidName(name) {
		return nil, fmt.Errorf("invalid cosigner name %q", name)
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %T", ErrBadKey, key.Public())
	}
	return &Signer{name: name, key: key, pub: pub, keyID: KeyID(name, pub)}, nil
}

// KeyID returns SHA-256(name || 0x0A || 0x04 || pub)[:4] as a uint32.
func KeyID(name string, pub ed25519.PublicKey) uint32 {
	return notekey.KeyID(name, TypeCosignatureV1, pub)
}

// Name returns the cosigner name used in signature lines.
func (s *Signer) Name() string { return s.name }

// KeyID returns the cosignature/v1 key ID.
func (s *Signer) KeyID() uint32 { return s.keyID }

// VerifierKey returns the witness vkey: name+hex(keyID)+base64(0x04 || pub).
func (s *Signer) VerifierKey() string {
	return notekey.VKey(s.name, s.keyID, TypeCosignatureV1, s.pub)
}

// Message returns the cosignature/v1 signed message for a note text (the
// checkpoint body with its final newline and without signature lines).
func Message(text []byte, timestamp uint64) []byte {
	return notekey.CosignatureMessage(text, timestamp)
}

// Ready implements Cosigner: a key in this process is always there.
func (s *Signer) Ready(context.Context) error { return nil }

// Sign returns one signature line "— <name> <base64>\n" cosigning text at t.
// The timestamp is t in whole seconds; it must be after the epoch.
func (s *Signer) Sign(_ context.Context, text []byte, t time.Time) ([]byte, error) {
	ts := t.Unix()
	if ts <= 0 {
		return nil, fmt.Errorf("cosignature timestamp %d is not positive", ts)
	}
	sig, err := s.key.Sign(nil, Message(text, uint64(ts)), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("signing cosignature: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature has %d bytes", ErrBadKey, len(sig))
	}
	raw := make([]byte, 0, 4+8+ed25519.SignatureSize)
	raw = binary.BigEndian.AppendUint32(raw, s.keyID)
	raw = binary.BigEndian.AppendUint64(raw, uint64(ts))
	raw = append(raw, sig...)
	line := make([]byte, 0, 128)
	line = append(line, "— "...)
	line = append(line, s.name...)
	line = append(line, ' ')
	line = base64.StdEncoding.AppendEncode(line, raw)
	return append(line, '\n'), nil
}
