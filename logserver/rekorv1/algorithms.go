package rekorv1

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strings"

	v1 "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/rekor/pkg/types"
	hashedrekord "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"
	"github.com/sigstore/sigstore/pkg/signature"
)

// DefaultSigningAlgorithms are the client key/hash combinations Rekor v1.5.4
// accepts by default (its --client-signing-algorithms).
var DefaultSigningAlgorithms = []v1.PublicKeyDetails{
	v1.PublicKeyDetails_PKIX_RSA_PKCS1V15_2048_SHA256,
	v1.PublicKeyDetails_PKIX_RSA_PKCS1V15_3072_SHA256,
	v1.PublicKeyDetails_PKIX_RSA_PKCS1V15_4096_SHA256,
	v1.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256,
	v1.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384,
	v1.PublicKeyDetails_PKIX_ECDSA_P521_SHA_512,
	v1.PublicKeyDetails_PKIX_ED25519,
	v1.PublicKeyDetails_PKIX_ED25519_PH,
}

// NewAlgorithmRegistry parses algorithm names in Rekor's flag form (e.g.
// "ecdsa-sha2-256-nistp256"); none means DefaultSigningAlgorithms.
func NewAlgorithmRegistry(names []string) (*signature.AlgorithmRegistryConfig, error) {
	algs := DefaultSigningAlgorithms
	if len(names) > 0 {
		algs = nil
		for _, n := range names {
			a, err := signature.ParseSignatureAlgorithmFlag(n)
			if err != nil {
				return nil, err
			}
			algs = append(algs, a)
		}
	}
	return signature.NewAlgorithmRegistryConfig(algs)
}

// checkAlgorithms rejects hashedrekord entries whose key and artifact hash
// are not an allowed combination, with Rekor's message.
func checkAlgorithms(entry types.EntryImpl, reg *signature.AlgorithmRegistryConfig) error {
	if _, ok := entry.(*hashedrekord.V001Entry); !ok {
		return nil
	}
	verifiers, err := entry.Verifiers()
	if err != nil {
		return badRequest(err, fmt.Sprintf(msgValidation, err))
	}
	hash := crypto.SHA256
	if ah, err := entry.ArtifactHash(); err == nil {
		switch alg, _, _ := strings.Cut(ah, ":"); alg {
		case "sha384":
			hash = crypto.SHA384
		case "sha512":
			hash = crypto.SHA512
		}
	}
	for _, v := range verifiers {
		ids, err := v.Identities()
		if err != nil {
			return badRequest(err, fmt.Sprintf(msgValidation, err))
		}
		for _, id := range ids {
			var pub crypto.PublicKey
			switch k := id.Crypto.(type) {
			case *x509.Certificate:
				pub = k.PublicKey
			case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
				pub = k
			default:
				err := fmt.Errorf("unsupported public key type: %T", k)
				return badRequest(err, fmt.Sprintf(msgValidation, err))
			}
			ok, err := reg.IsAlgorithmPermitted(pub, hash)
			if err != nil {
				err = fmt.Errorf("checking if algorithm is permitted: %w", err)
				return badRequest(err, fmt.Sprintf(msgValidation, err))
			}
			if !ok {
				err := fmt.Errorf("entry algorithm %s/%v not allowed", keyInfo(pub), hash)
				return badRequest(err, fmt.Sprintf(msgValidation, "entry algorithms are not allowed"))
			}
		}
	}
	return nil
}

func keyInfo(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa public key: P256"
		case elliptic.P384():
			return "ecdsa public key: P384"
		case elliptic.P521():
			return "ecdsa public key: P521"
		}
		return "ecdsa public key"
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa public key: %T/%v", k, k.Size())
	case ed25519.PublicKey:
		return fmt.Sprintf("ed25519 public key: %T", k)
	}
	return fmt.Sprintf("public key: %T", pub)
}
