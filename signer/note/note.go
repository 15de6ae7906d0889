// Package note turns a signing key into a signer of C2SP signed notes
// (golang.org/x/mod/sumdb/note.Signer) and formats the matching verifier
// keys ("vkeys"):
//
//   - [NewSigner] with an Ed25519 key signs as a C2SP Ed25519 note key
//     (type 0x01): key hash SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pub)[:4],
//     signature over the note text. Verifiable with x/mod's note package.
//   - [NewSigner] with an ECDSA P-256 key signs the way Rekor and
//     transparency-dev/witness do (type 0x02): key hash SHA-256(SPKI DER)[:4]
//     with no name, DER signature over SHA-256(text). Verifiable with
//     github.com/transparency-dev/formats/note.
//   - [NewCosigner] with an Ed25519 key produces C2SP tlog-cosignature
//     cosignature/v1 signatures (type 0x04): 8-byte big-endian timestamp
//     followed by Ed25519 over "cosignature/v1\ntime <t>\n" ‖ text.
//
// The signers are safe for concurrent use when the key is. note.Signer has
// no context: token keys wait for a session at most their PoolWait.
package note

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/signer/keys"
	"golang.org/x/mod/sumdb/note"
)

// ErrName reports a key name that signed notes do not allow.
var ErrName = errors.New("note: key name must be non-empty and contain no spaces or '+'")

type signer struct {
	name string
	hash uint32
	sign func([]byte) ([]byte, error)
}

func (s *signer) Name() string                    { return s.name }
func (s *signer) KeyHash() uint32                 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) { return s.sign(msg) }

// NewSigner returns a note signer named name for k (Ed25519: type 0x01,
// ECDSA P-256: type 0x02; see the package documentation).
func NewSigner(name string, k crypto.Signer) (note.Signer, error) {
	hash, _, _, err := noteKey(name, k.Public())
	if err != nil {
		return nil, err
	}
	return &signer{name: name, hash: hash, sign: func(msg []byte) ([]byte, error) {
		return keys.SignMessage(context.Background(), k, msg)
	}}, nil
}

// VerifierKey returns the vkey "<name>+<hex key hash>+<base64(type ‖ key)>"
// for the signer [NewSigner] makes from a key with public key pub.
func VerifierKey(name string, pub crypto.PublicKey) (string, error) {
	hash, alg, key, err := noteKey(name, pub)
	if err != nil {
		return "", err
	}
	return notekey.VKey(name, hash, alg, key), nil
}

// noteKey returns the key hash, signature type and encoded key of the
// note signer for pub.
func noteKey(name string, pub crypto.PublicKey) (hash uint32, alg byte, key []byte, err error) {
	if !notekey.ValidName(name) {
		return 0, 0, nil, ErrName
	}
	a, err := keys.AlgorithmOf(pub)
	if err != nil {
		return 0, 0, nil, err
	}
	switch a {
	case keys.Ed25519:
		ed := pub.(ed25519.PublicKey)
		return notekey.KeyID(name, notekey.Ed25519, ed), notekey.Ed25519, ed, nil
	case keys.ECDSAP256:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return 0, 0, nil, err
		}
		return notekey.ECDSAKeyID(der), notekey.ECDSA, der, nil
	}
	return 0, 0, nil, fmt.Errorf("%w: %s", keys.ErrUnsupported, a)
}

// CosignerVerifierKey returns the cosignature/v1 vkey (type 0x04) for the
// signer [NewCosigner] makes from an Ed25519 key with public key pub.
func CosignerVerifierKey(name string, pub crypto.PublicKey) (string, error) {
	hash, ed, err := cosignerKey(name, pub)
	if err != nil {
		return "", err
	}
	return notekey.VKey(name, hash, notekey.CosignatureV1, ed), nil
}

// cosignerKey returns the cosignature/v1 key hash and Ed25519 key of pub.
func cosignerKey(name string, pub crypto.PublicKey) (uint32, ed25519.PublicKey, error) {
	if !notekey.ValidName(name) {
		return 0, nil, ErrName
	}
	ed, ok := pub.(ed25519.PublicKey)
	if !ok || len(ed) != ed25519.PublicKeySize {
		return 0, nil, fmt.Errorf("%w: cosignature/v1 needs an Ed25519 key, not %T", keys.ErrUnsupported, pub)
	}
	return notekey.KeyID(name, notekey.CosignatureV1, ed), ed, nil
}

// NewCosigner returns a cosignature/v1 signer named name for the Ed25519
// key k. now gives the signature time (nil: time.Now); it is truncated to
// seconds.
func NewCosigner(name string, k crypto.Signer, now func() time.Time) (note.Signer, error) {
	hash, _, err := cosignerKey(name, k.Public())
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &signer{name: name, hash: hash, sign: func(msg []byte) ([]byte, error) {
		if bytes.Count(msg, []byte("\n")) < 3 {
			return nil, errors.New("note: cosigned text must have at least three lines")
		}
		ts := uint64(now().Unix())
		m := notekey.CosignatureMessage(msg, ts)
		sig, err := keys.SignMessage(context.Background(), k, m)
		if err != nil {
			return nil, err
		}
		return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(sig)), ts), sig...), nil
	}}, nil
}
