package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"

	"github.com/stellaops/tlog/internal/notekey"
)

// VKeyOf is the signed-note vkey of a log public key: Ed25519 note key
// (type 0x01) or ECDSA (type 0x02, key ID = SHA-256(SPKI)[:4], as Rekor).
func VKeyOf(name string, pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return notekey.VKey(name, notekey.KeyID(name, notekey.Ed25519, k), notekey.Ed25519, k), nil
	case *ecdsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return notekey.VKey(name, notekey.ECDSAKeyID(der), notekey.ECDSA, der), nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}
