package pkcs11

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"
)

// Signer is a [crypto.Signer] over a private key in a [Token].
// It is safe for concurrent use; each signature borrows a pooled session.
//
// ECDSA P-256: Sign takes a SHA-256 digest (opts.HashFunc() == crypto.SHA256)
// and returns an ASN.1 DER signature. The token computes raw CKM_ECDSA, which
// SoftHSM2 supports where CKM_ECDSA_SHA256 is missing.
// Ed25519: Sign takes the whole message (opts.HashFunc() == 0, no context
// string) and returns the 64-byte signature (CKM_EDDSA, pure Ed25519).
type Signer struct {
	tok   *Token
	label string
	kt    KeyType
	pub   crypto.PublicKey

	mu  sync.Mutex
	obj pkcs11.ObjectHandle
	gen uint64 // Token generation obj was found in; valid while equal
	ok  bool
}

// Public returns the public key read from the token.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Label is the CKA_LABEL of the key pair.
func (s *Signer) Label() string { return s.label }

// KeyType is the key's algorithm.
func (s *Signer) KeyType() KeyType { return s.kt }

// Sign implements [crypto.Signer]. rand is ignored: the token has its own.
// It waits for a session for at most the Token's PoolWait.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.tok.poolWait)
	defer cancel()
	return s.SignContext(ctx, digest, opts)
}

// SignContext is Sign, waiting for a session only as long as ctx allows.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var mech uint
	switch s.kt {
	case ECDSAP256:
		if opts == nil || opts.HashFunc() != crypto.SHA256 {
			return nil, fmt.Errorf("%w: ECDSA P-256 signs SHA-256 digests only", ErrUnsupported)
		}
		if len(digest) != crypto.SHA256.Size() {
			return nil, fmt.Errorf("%w: digest is %d bytes, want 32", ErrUnsupported, len(digest))
		}
		mech = pkcs11.CKM_ECDSA
	case Ed25519:
		if opts != nil && opts.HashFunc() != 0 {
			return nil, fmt.Errorf("%w: Ed25519 signs the whole message (opts.HashFunc() must be 0)", ErrUnsupported)
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return nil, fmt.Errorf("%w: Ed25519ctx is not supported", ErrUnsupported)
		}
		mech = ckmEdDSA
	default:
		return nil, fmt.Errorf("%w: key type %q", ErrUnsupported, s.kt)
	}
	var sig []byte
	c := s.tok.mod.ctx
	err := s.tok.do(ctx, func(h pkcs11.SessionHandle, gen uint64) error {
		o, err := s.handle(h, gen)
		if err != nil {
			return err
		}
		if err := c.SignInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, o); err != nil {
			return wrap("C_SignInit", err)
		}
		sig, err = c.Sign(h, digest)
		return wrap("C_Sign", err)
	})
	if err != nil {
		return nil, err
	}
	if s.kt == ECDSAP256 {
		return rawToDER(sig)
	}
	return sig, nil
}

// handle returns the private key's object handle, finding it again by label
// when the cached one predates the Token's current generation.
func (s *Signer) handle(h pkcs11.SessionHandle, gen uint64) (pkcs11.ObjectHandle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok && s.gen == gen {
		return s.obj, nil
	}
	o, err := findOne(s.tok.mod.ctx, h, pkcs11.CKO_PRIVATE_KEY, s.label)
	if err != nil {
		return 0, err
	}
	s.obj, s.gen, s.ok = o, gen, true
	return o, nil
}

// rawToDER converts the PKCS#11 ECDSA signature r‖s to ASN.1
// SEQUENCE { r INTEGER, s INTEGER }, the form x509, cosign and Rekor expect.
func rawToDER(rs []byte) ([]byte, error) {
	if len(rs) == 0 || len(rs)%2 != 0 {
		return nil, fmt.Errorf("pkcs11: ECDSA signature of odd length %d", len(rs))
	}
	n := len(rs) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:n]), new(big.Int).SetBytes(rs[n:])})
}
