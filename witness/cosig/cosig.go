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
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	signernote "github.com/stellaops/tlog/signer/note"
)

// ErrBadKey reports a key that is not a usable Ed25519 signing key.
var ErrBadKey = errors.New("witness key is not an Ed25519 signer")

// A Signer makes cosignature/v1 signature lines under one key name, with
// signer/note's cosignature/v1 signer (the same code the signer service
// cosigns with). It is safe for concurrent use if the crypto.Signer is.
type Signer struct {
	name string
	key  crypto.Signer
	vkey string
}

// NewSigner returns a Signer for the cosigner name and an Ed25519 key.
func NewSigner(name string, key crypto.Signer) (*Signer, error) {
	vkey, err := signernote.CosignerVerifierKey(name, key.Public())
	switch {
	case errors.Is(err, signernote.ErrName):
		return nil, fmt.Errorf("invalid cosigner name %q", name)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return &Signer{name: name, key: key, vkey: vkey}, nil
}

// Name returns the cosigner name used in signature lines.
func (s *Signer) Name() string { return s.name }

// VerifierKey returns the witness vkey: name+hex(keyID)+base64(0x04 || pub).
func (s *Signer) VerifierKey() string { return s.vkey }

// Ready implements Cosigner: a key in this process is always there.
func (s *Signer) Ready(context.Context) error { return nil }

// Sign returns one signature line "— <name> <base64>\n" cosigning text (a
// checkpoint text, ending in a newline) at t. The timestamp is t in whole
// seconds; it must be after the epoch.
func (s *Signer) Sign(_ context.Context, text []byte, t time.Time) ([]byte, error) {
	if t.Unix() <= 0 {
		return nil, fmt.Errorf("cosignature timestamp %d is not positive", t.Unix())
	}
	cs, err := signernote.NewCosigner(s.name, s.key, func() time.Time { return t })
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: string(text)}, cs)
	if err != nil {
		return nil, fmt.Errorf("signing cosignature: %w", err)
	}
	return signed[len(text)+1:], nil
}
