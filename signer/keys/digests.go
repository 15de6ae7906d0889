package keys

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// DigestSigner adapts an ECDSA P-256 key to callers that sign batches of
// SHA-256 digests, such as the logserver's checkpoint and SET signing
// (its logkey.Signer interface).
type DigestSigner struct{ Key }

// SignDigests returns one ASN.1 DER signature per digest, in order, or an
// error and no signatures. It signs one digest after the other (SoftHSM2
// gains little from parallel sessions) and stops when ctx ends.
func (d DigestSigner) SignDigests(ctx context.Context, digests [][sha256.Size]byte) ([][]byte, error) {
	if d.Algorithm() != ECDSAP256 {
		return nil, fmt.Errorf("%w: digest signing needs an ECDSA P-256 key, not %s", ErrUnsupported, d.Algorithm())
	}
	cs, hasCtx := d.Key.(contextSigner)
	out := make([][]byte, len(digests))
	for i := range digests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var sig []byte
		var err error
		if hasCtx {
			sig, err = cs.SignContext(ctx, digests[i][:], crypto.SHA256)
		} else {
			sig, err = d.Sign(rand.Reader, digests[i][:], crypto.SHA256)
		}
		if err != nil {
			return nil, fmt.Errorf("signing digest %d of %d: %w", i+1, len(digests), err)
		}
		out[i] = sig
	}
	return out, nil
}
