// Package keyfile reads and creates the Ed25519 private key files of the
// development setups (the log's note key, a witness key): one PEM
// "PRIVATE KEY" (PKCS #8) block, the format `openssl genpkey -algorithm
// ed25519` writes. Production keys live in the signer's HSM instead.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/stellaops/tlog/internal/durablefile"
)

// ErrInvalid reports a file that is not an Ed25519 PEM PKCS #8 key.
var ErrInvalid = errors.New("invalid Ed25519 key file")

// LoadEd25519 reads the key at path. Read errors are returned as they are
// (errors.Is(err, os.ErrNotExist) works); content errors wrap ErrInvalid.
func LoadEd25519(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s has no PEM \"PRIVATE KEY\" block", ErrInvalid, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not an Ed25519 key (%T)", ErrInvalid, path, k)
	}
	return priv, nil
}

// CreateEd25519 generates a key and writes it to path, mode 0600, with
// durablefile.Create: a crash never leaves a half-written key and an
// existing file is never replaced (that fails with an error wrapping
// os.ErrExist).
func CreateEd25519(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := durablefile.Create(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return priv, nil
}
