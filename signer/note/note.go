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
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stellaops/tlog/signer/keys"
	"golang.org/x/mod/sumdb/note"
)

// Signature types of C2SP signed-note.
const (
	algEd25519       = 0x01
	algECDSASHA256   = 0x02
	algCosignatureV1 = 0x04
)

// ErrName reports a key name that signed notes do not allow.
var ErrName = errors.New("note: key name must be non-empty and contain no spaces or '+'")

func validName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

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
	return format(name, hash, alg, key), nil
}

// noteKey returns the key hash, signature type and encoded key of the
// note signer for pub.
func noteKey(name string, pub crypto.PublicKey) (hash uint32, alg byte, key []byte, err error) {
	if !validName(name) {
		return 0, 0, nil, ErrName
	}
	a, err := keys.AlgorithmOf(pub)
	if err != nil {
		return 0, 0, nil, err
	}
	switch a {
	case keys.Ed25519:
		ed := pub.(ed25519.PublicKey)
		return ed25519KeyHash(name, algEd25519, ed), algEd25519, ed, nil
	case keys.ECDSAP256:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return 0, 0, nil, err
		}
		sum := sha256.Sum256(der)
		return binary.BigEndian.Uint32(sum[:4]), algECDSASHA256, der, nil
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
	return format(name, hash, algCosignatureV1, ed), nil
}

// cosignerKey returns the cosignature/v1 key hash and Ed25519 key of pub.
func cosignerKey(name string, pub crypto.PublicKey) (uint32, ed25519.PublicKey, error) {
	if !validName(name) {
		return 0, nil, ErrName
	}
	ed, ok := pub.(ed25519.PublicKey)
	if !ok || len(ed) != ed25519.PublicKeySize {
		return 0, nil, fmt.Errorf("%w: cosignature/v1 needs an Ed25519 key, not %T", keys.ErrUnsupported, pub)
	}
	return ed25519KeyHash(name, algCosignatureV1, ed), ed, nil
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
		m := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", ts, msg)
		sig, err := keys.SignMessage(context.Background(), k, m)
		if err != nil {
			return nil, err
		}
		return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(sig)), ts), sig...), nil
	}}, nil
}

func ed25519KeyHash(name string, alg byte, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', alg})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

func format(name string, hash uint32, alg byte, key []byte) string {
	return fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{alg}, key...)))
}
