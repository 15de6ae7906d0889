package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// LoadFile reads a PEM private key file; see [ParsePEM].
func LoadFile(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	k, err := ParsePEM(b)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	return k, nil
}

// ParsePEM parses the first PEM block: "PRIVATE KEY" (PKCS#8) holding an
// ECDSA P-256 or Ed25519 key, or "EC PRIVATE KEY" (SEC 1) on P-256.
func ParsePEM(b []byte) (Key, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrUnsupported)
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q", ErrUnsupported, block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupported, p.Curve.Params().Name)
		}
		return &softKey{p, ECDSAP256}, nil
	case ed25519.PrivateKey:
		return &softKey{p, Ed25519}, nil
	}
	return nil, fmt.Errorf("%w: private key %T", ErrUnsupported, priv)
}

// GeneratePEM returns a new private key of algorithm alg as PKCS#8 PEM.
func GeneratePEM(alg Algorithm) ([]byte, error) {
	var priv any
	var err error
	switch alg {
	case ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("%w: algorithm %q", ErrUnsupported, alg)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// softKey is an in-memory key, held to the same contract as token keys.
type softKey struct {
	priv crypto.Signer
	alg  Algorithm
}

func (k *softKey) Public() crypto.PublicKey { return k.priv.Public() }
func (k *softKey) Algorithm() Algorithm     { return k.alg }

func (k *softKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	switch k.alg {
	case ECDSAP256:
		if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != crypto.SHA256.Size() {
			return nil, fmt.Errorf("%w: ECDSA P-256 signs 32-byte SHA-256 digests only", ErrUnsupported)
		}
		return ecdsa.SignASN1(r, k.priv.(*ecdsa.PrivateKey), digest)
	case Ed25519:
		if opts != nil && opts.HashFunc() != 0 {
			return nil, fmt.Errorf("%w: Ed25519 signs the whole message (opts.HashFunc() must be 0)", ErrUnsupported)
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return nil, fmt.Errorf("%w: Ed25519ctx is not supported", ErrUnsupported)
		}
		return ed25519.Sign(k.priv.(ed25519.PrivateKey), digest), nil
	}
	return nil, fmt.Errorf("%w: algorithm %q", ErrUnsupported, k.alg)
}
