package cosig

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/stellaops/tlog/internal/keyfile"
)

// The key file holds one Ed25519 private key as a PEM "PRIVATE KEY" block
// (PKCS #8), the format of `openssl genpkey -algorithm ed25519`. It carries no
// name: the cosigner name comes from the configuration.

// LoadKeyFile reads an Ed25519 private key written by GenerateKeyFile or
// openssl.
func LoadKeyFile(path string) (ed25519.PrivateKey, error) {
	k, err := keyfile.LoadEd25519(path)
	switch {
	case errors.Is(err, keyfile.ErrInvalid):
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	case err != nil:
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	return k, nil
}

// GenerateKeyFile creates a new Ed25519 key and writes it to path with mode
// 0600, fsynced. It refuses to overwrite an existing file.
func GenerateKeyFile(path string) (ed25519.PrivateKey, error) {
	k, err := keyfile.CreateEd25519(path)
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	return k, nil
}
