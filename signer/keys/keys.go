// Package keys is the one interface the signer's users program against: a
// [Key] is a private signing key (ECDSA P-256 or Ed25519) that stays in its
// store, either a PKCS#11 token (production) or a PEM file (development).
//
// Every Key is a [crypto.Signer] with one contract whatever its store:
// ECDSA P-256 keys sign a SHA-256 digest (opts.HashFunc() == crypto.SHA256,
// 32 bytes) and return ASN.1 DER; Ed25519 keys sign the whole message
// (opts.HashFunc() == 0) and return 64 bytes. Anything else fails with
// [ErrUnsupported]. [SignMessage]
// applies the right one of these for a whole message. Keys are safe for
// concurrent use. Retries after token failures happen inside package
// pkcs11 (once, after re-login); errors reaching callers are final.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/stellaops/tlog/signer/pkcs11"
)

// Algorithm names a key's signature algorithm; the values match
// pkcs11.KeyType and the CLI's --type flag.
type Algorithm string

// Supported algorithms.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	Ed25519   Algorithm = "ed25519"
)

// ErrUnsupported reports a key type or signing option outside the
// contract. It is the same error for token and file keys.
var ErrUnsupported = pkcs11.ErrUnsupported

// Key is a private signing key; see the package documentation.
type Key interface {
	crypto.Signer
	Algorithm() Algorithm
}

// contextSigner is implemented by keys whose Sign may wait (token keys).
type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// SignMessage signs msg whole: ECDSA P-256 keys sign SHA-256(msg) and return
// DER, Ed25519 keys sign msg. ctx bounds the wait for a token session when
// the key supports it.
func SignMessage(ctx context.Context, k crypto.Signer, msg []byte) ([]byte, error) {
	alg, err := AlgorithmOf(k.Public())
	if err != nil {
		return nil, err
	}
	in, opts := msg, crypto.SignerOpts(crypto.Hash(0))
	if alg == ECDSAP256 {
		d := sha256.Sum256(msg)
		in, opts = d[:], crypto.SHA256
	}
	if cs, ok := k.(contextSigner); ok {
		return cs.SignContext(ctx, in, opts)
	}
	return k.Sign(rand.Reader, in, opts)
}

// AlgorithmOf returns the algorithm of a public key.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve == elliptic.P256() {
			return ECDSAP256, nil
		}
		return "", fmt.Errorf("%w: ECDSA curve %s", ErrUnsupported, p.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(p) == ed25519.PublicKeySize {
			return Ed25519, nil
		}
	}
	return "", fmt.Errorf("%w: public key %T", ErrUnsupported, pub)
}

// ID is the key identifier used across the signer: SHA-256 of the DER
// SubjectPublicKeyInfo. Its first 4 bytes are the ECDSA note key hash; its
// base64 form is cosign's and sigstore's public key "hint".
func ID(pub crypto.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(der), nil
}

// Config says where a key lives. Exactly one of PKCS11 and File is set.
type Config struct {
	// PKCS11 selects a key pair in a PKCS#11 token by label. Production.
	PKCS11 *PKCS11Config `yaml:"pkcs11"`
	// File is a PEM private key (PKCS#8, or SEC 1 "EC PRIVATE KEY"), ECDSA
	// P-256 or Ed25519. For development only: the key is in memory.
	File string `yaml:"file"`
}

// PKCS11Config is a token and the label of a key pair in it.
type PKCS11Config struct {
	pkcs11.Config `yaml:",inline"`
	// Label is the CKA_LABEL shared by the private and public key objects.
	Label string `yaml:"label"`
}

// Open opens the key cfg describes. The returned close function releases
// the token (for PKCS#11 keys); call it when the key is no longer used.
// Each call opens its own session pool; open a token once and use
// [FromToken] to hold several keys of one token.
func Open(ctx context.Context, cfg Config) (Key, func() error, error) {
	switch {
	case cfg.PKCS11 != nil && cfg.File != "":
		return nil, nil, errors.New("keys: both a PKCS#11 key and a key file are configured")
	case cfg.File != "":
		k, err := LoadFile(cfg.File)
		return k, func() error { return nil }, err
	case cfg.PKCS11 != nil:
		tok, err := pkcs11.Open(ctx, cfg.PKCS11.Config)
		if err != nil {
			return nil, nil, err
		}
		k, err := FromToken(ctx, tok, cfg.PKCS11.Label)
		if err != nil {
			return nil, nil, errors.Join(err, tok.Close())
		}
		return k, tok.Close, nil
	}
	return nil, nil, errors.New("keys: no key configured")
}

// FromToken returns the key pair labelled label in an open token.
func FromToken(ctx context.Context, tok *pkcs11.Token, label string) (Key, error) {
	s, err := tok.Signer(ctx, label)
	if err != nil {
		return nil, err
	}
	return tokenKey{s}, nil
}

// tokenKey is a PKCS#11 key; it keeps SignContext from *pkcs11.Signer.
type tokenKey struct{ *pkcs11.Signer }

func (k tokenKey) Algorithm() Algorithm { return Algorithm(k.KeyType()) }
