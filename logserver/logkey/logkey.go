// Package logkey holds the log's signing key behind the one interface the
// rest of the logserver uses to sign checkpoints and signed entry timestamps.
//
// The log key is ECDSA P-256: cosign and sigstore-go verify SETs only with
// ECDSA keys. Today the key may be a PEM file the server creates on first
// start; the HSM signer plugs in behind the same interface.
package logkey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Signer signs SHA-256 digests with the log key.
//
// SignDigests returns one ASN.1 DER ECDSA signature per digest, in order, or
// an error and no signatures. It is safe for concurrent use. Callers batch:
// one call per sequencing pass, never one per HTTP request.
type Signer interface {
	Public() crypto.PublicKey
	SignDigests(ctx context.Context, digests [][sha256.Size]byte) ([][]byte, error)
}

// LogID is the hex SHA-256 of the key's PKIX DER encoding: Rekor's logID.
func LogID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// PublicPEM encodes pub as a PEM "PUBLIC KEY" block, as Rekor serves it.
func PublicPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// File is a software ECDSA P-256 key kept in a PEM file (development only:
// the private key is in process memory).
type File struct {
	key *ecdsa.PrivateKey
}

// OpenFile loads the PKCS#8 or SEC 1 PEM private key at path. If the file
// does not exist and create is set, a new P-256 key is generated and written
// there (mode 0600) first.
func OpenFile(path string, create bool) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		return generate(path)
	}
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("log key %s: no PEM block", path)
	}
	var k any
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("log key %s: unsupported PEM type %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("log key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("log key %s: must be ECDSA P-256 (clients verify SETs only with ECDSA)", path)
	}
	return &File{key: ek}, nil
}

func generate(path string) (*File, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: never overwrite a key another process wrote meanwhile.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &File{key: k}, nil
}

// Public returns the ECDSA public key.
func (f *File) Public() crypto.PublicKey { return &f.key.PublicKey }

// SignDigests signs each digest with ECDSA, DER-encoded.
func (f *File) SignDigests(ctx context.Context, digests [][sha256.Size]byte) ([][]byte, error) {
	out := make([][]byte, len(digests))
	for i := range digests {
		sig, err := ecdsa.SignASN1(rand.Reader, f.key, digests[i][:])
		if err != nil {
			return nil, err
		}
		out[i] = sig
	}
	return out, ctx.Err()
}
