package notekey

// Verifiers of log checkpoint keys (what a witness trusts) and the vkeys of
// log public keys.
//
// Two key types are accepted, both in the signed-note vkey form
// <name>+<hex key ID>+<base64(type || key material)>:
//
//   - Ed25519 (type 0x01): the key material is the 32-byte public key and the
//     key ID is SHA-256(name || 0x0A || 0x01 || key)[:4] (c2sp.org/signed-note).
//   - ECDSA (type 0x02), as signed by Rekor v1 and parsed by
//     github.com/transparency-dev/formats/note: the key material is the DER
//     SubjectPublicKeyInfo of a NIST P-256, P-384 or P-521 key, the key ID is
//     SHA-256(DER SPKI)[:4] (the name is not hashed) and a signature is ASN.1
//     ECDSA over SHA-256(note text). For a Rekor log the key name is the bare
//     hostname, e.g. rekor.example.com, while the checkpoint origin is
//     "rekor.example.com - <treeID>".
//
// Other types (cosignatures, RFC 6962 STHs, ML-DSA) are refused: they are
// not log checkpoint keys.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	fnote "github.com/transparency-dev/formats/note"

	"golang.org/x/mod/sumdb/note"
)

// ErrInvalidKey reports a vkey that cannot be parsed or whose key ID does not
// match its key material.
var ErrInvalidKey = errors.New("invalid verifier key")

// ErrUnsupportedType reports a well-formed vkey of a type a log may not use.
var ErrUnsupportedType = errors.New("unsupported verifier key type")

// SplitVKey splits a vkey, "<name>+<hex key ID>+<base64(type || key)>",
// checking the name, the key ID's form and the base64. Errors wrap
// ErrInvalidKey.
func SplitVKey(vkey string) (name string, id uint32, typ byte, key []byte, err error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hexID, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return "", 0, 0, nil, fmt.Errorf("%w: %q is not of the form <name>+<hex key ID>+<base64 key>", ErrInvalidKey, vkey)
	}
	if !ValidName(name) {
		return "", 0, 0, nil, fmt.Errorf("%w: invalid key name %q", ErrInvalidKey, name)
	}
	n, err := strconv.ParseUint(hexID, 16, 32)
	if err != nil || len(hexID) != 8 {
		return "", 0, 0, nil, fmt.Errorf("%w: key ID %q is not 8 hex digits", ErrInvalidKey, hexID)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) < 2 {
		return "", 0, 0, nil, fmt.Errorf("%w: key is not valid base64", ErrInvalidKey)
	}
	return name, uint32(n), raw[0], raw[1:], nil
}

// LogVerifier returns a verifier for vkey, an Ed25519 (0x01) or ECDSA
// (0x02) log key. Errors wrap ErrInvalidKey or ErrUnsupportedType.
func LogVerifier(vkey string) (note.Verifier, error) {
	name, id, typ, material, err := SplitVKey(vkey)
	if err != nil {
		return nil, err
	}
	var v note.Verifier
	switch typ {
	case Ed25519:
		v, err = note.NewVerifier(vkey) // checks the key ID itself
	case ECDSA:
		var pub any
		if pub, err = x509.ParsePKIXPublicKey(material); err == nil {
			if k, ok := pub.(*ecdsa.PublicKey); !ok {
				err = fmt.Errorf("SPKI holds a %T, not an ECDSA key", pub)
			} else if !allowedCurve(k.Curve) {
				err = fmt.Errorf("ECDSA curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
			}
		}
		if err == nil {
			v, err = fnote.NewECDSAVerifier(vkey) // checks the key ID itself
		}
	default:
		return nil, fmt.Errorf("%w: type 0x%02x in %q is not a log checkpoint key (want 0x01 Ed25519 or 0x02 ECDSA)", ErrUnsupportedType, typ, vkey)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidKey, vkey, err)
	}
	if v.Name() != name || v.KeyHash() != id {
		return nil, fmt.Errorf("%w: %q: name or key ID mismatch", ErrInvalidKey, vkey)
	}
	return v, nil
}

// MLDSA44 is the signed-note type of ML-DSA-44 cosignatures (not supported).
const MLDSA44 byte = 0x06

// CosignatureVerifier parses a witness's cosignature/v1 vkey (type 0x04,
// Ed25519, key ID checked) and returns its verifier and public key. Errors
// wrap ErrInvalidKey or ErrUnsupportedType.
func CosignatureVerifier(vkey string) (note.Verifier, ed25519.PublicKey, error) {
	name, id, typ, key, err := SplitVKey(vkey)
	if err != nil {
		return nil, nil, err
	}
	switch typ {
	case CosignatureV1:
	case Ed25519:
		return nil, nil, fmt.Errorf("%w: type 0x01 is an Ed25519 log key; a witness needs its cosignature/v1 vkey (type 0x04)", ErrUnsupportedType)
	case MLDSA44:
		return nil, nil, fmt.Errorf("%w: ML-DSA-44 (type 0x06) witness keys are not supported; use an Ed25519 cosignature/v1 vkey (type 0x04)", ErrUnsupportedType)
	default:
		return nil, nil, fmt.Errorf("%w: signature type 0x%02x is not a cosignature/v1 key (want 0x04)", ErrUnsupportedType, typ)
	}
	if len(key) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("%w: Ed25519 key is %d bytes, want 32", ErrInvalidKey, len(key))
	}
	if want := KeyID(name, typ, key); id != want {
		return nil, nil, fmt.Errorf("%w: key ID %08x does not match the key (want %08x)", ErrInvalidKey, id, want)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return v, ed25519.PublicKey(key), nil
}

func utfOK(s string) bool {
	return strings.ToValidUTF8(s, "\uFFFD") == s
}

// Ed25519VerifierKey returns the type 0x01 vkey of an Ed25519 log key.
func Ed25519VerifierKey(name string, pub ed25519.PublicKey) (string, error) {
	if !ValidName(name) {
		return "", fmt.Errorf("%w: bad key name %q", ErrInvalidKey, name)
	}
	return note.NewEd25519VerifierKey(name, pub)
}

// ECDSAVerifierKey returns the type 0x02 vkey of a Rekor-style ECDSA log key:
// name+hex(SHA-256(DER SPKI)[:4])+base64(0x02 || DER SPKI).
func ECDSAVerifierKey(name string, pub *ecdsa.PublicKey) (string, error) {
	if !ValidName(name) {
		return "", fmt.Errorf("%w: bad key name %q", ErrInvalidKey, name)
	}
	if !allowedCurve(pub.Curve) {
		return "", fmt.Errorf("%w: ECDSA curve must be P-256, P-384 or P-521", ErrInvalidKey)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return VKey(name, ECDSAKeyID(der), ECDSA, der), nil
}

// allowedCurve reports whether c is a curve signed-note allows for ECDSA.
func allowedCurve(c elliptic.Curve) bool {
	return c == elliptic.P256() || c == elliptic.P384() || c == elliptic.P521()
}

// VerifierKeyFromPublicKey returns the vkey for a log public key parsed from
// PEM/DER SPKI: Ed25519 keys get a 0x01 vkey, ECDSA keys a 0x02 vkey.
func VerifierKeyFromPublicKey(name string, pub any) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519VerifierKey(name, k)
	case *ecdsa.PublicKey:
		return ECDSAVerifierKey(name, k)
	default:
		return "", fmt.Errorf("%w: public key type %T", ErrUnsupportedType, pub)
	}
}

// MaxOriginLen is the longest origin accepted, in bytes. ML-DSA cosignatures
// encode the origin with a one-byte length, so longer origins cannot be
// cosigned by every witness.
const MaxOriginLen = 255

// ErrInvalidOrigin reports an origin line a checkpoint cannot carry.
var ErrInvalidOrigin = errors.New("invalid origin")

// CheckOrigin reports whether origin can be a checkpoint's first line:
// non-empty, at most MaxOriginLen bytes, valid UTF-8 without control characters.
// Spaces are allowed (Rekor origins are "<host> - <treeID>").
func CheckOrigin(origin string) error {
	if origin == "" || len(origin) > MaxOriginLen || !utfOK(origin) {
		return fmt.Errorf("%w: %q (must be 1..%d bytes of UTF-8)", ErrInvalidOrigin, origin, MaxOriginLen)
	}
	for _, r := range origin {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalidOrigin, origin)
		}
	}
	return nil
}

// LogVerifiers checks a log definition, an origin and one or more vkeys, and
// returns the verifiers. Two vkeys with the same name and key ID are refused
// (signed-note verifiers could not tell them apart).
func LogVerifiers(origin string, vkeys []string) ([]note.Verifier, error) {
	if err := CheckOrigin(origin); err != nil {
		return nil, err
	}
	if len(vkeys) == 0 {
		return nil, fmt.Errorf("%w: log %q has no verifier key", ErrInvalidKey, origin)
	}
	type nameID struct {
		name string
		id   uint32
	}
	seen := make(map[nameID]bool, len(vkeys))
	vs := make([]note.Verifier, 0, len(vkeys))
	for _, k := range vkeys {
		v, err := LogVerifier(k)
		if err != nil {
			return nil, err
		}
		ni := nameID{v.Name(), v.KeyHash()}
		if seen[ni] {
			return nil, fmt.Errorf("%w: log %q lists key %s+%08x twice", ErrInvalidKey, origin, ni.name, ni.id)
		}
		seen[ni] = true
		vs = append(vs, v)
	}
	return vs, nil
}
