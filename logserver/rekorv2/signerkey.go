package rekorv2

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stellaops/tlog/internal/notekey"
	signerclient "github.com/stellaops/tlog/signer/client"
)

// SignerKey is the v2 log's Ed25519 note key held by the signer service (in
// its PKCS#11 token): a crypto.Signer whose Sign has the signer sign the
// message (a checkpoint text) as a note, and returns the Ed25519 signature
// of the key version it was opened with. The key must have purpose
// checkpoint and note name = the log's origin.
type SignerKey struct {
	c       *signerclient.Client
	key     string
	origin  string
	pub     ed25519.PublicKey
	id      uint32
	timeout time.Duration
}

// OpenSignerKey finds key's newest active Ed25519 version in the signer and
// checks its note name is origin.
func OpenSignerKey(ctx context.Context, c *signerclient.Client, key, origin string, timeout time.Duration) (*SignerKey, error) {
	ks, err := c.Keys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range ks.Keys {
		if k.Name != key {
			continue
		}
		if k.NoteName != origin {
			return nil, fmt.Errorf("signer key %q signs notes as %q, the v2 log's origin is %q", key, k.NoteName, origin)
		}
		var pub ed25519.PublicKey
		best := -1
		for _, v := range k.Versions {
			if v.State != "active" || !v.Available || v.Algorithm != "ed25519" || v.Version < best {
				continue
			}
			block, _ := pem.Decode([]byte(v.PublicKey))
			if block == nil {
				continue
			}
			p, err := x509.ParsePKIXPublicKey(block.Bytes)
			if ep, ok := p.(ed25519.PublicKey); err == nil && ok {
				pub, best = ep, v.Version
			}
		}
		if pub == nil {
			return nil, fmt.Errorf("signer key %q has no active Ed25519 version", key)
		}
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		return &SignerKey{c: c, key: key, origin: origin, pub: pub, id: notekey.KeyID(origin, 0x01, pub), timeout: timeout}, nil
	}
	return nil, fmt.Errorf("signer: no key %q", key)
}

// Public implements crypto.Signer.
func (k *SignerKey) Public() crypto.PublicKey { return k.pub }

// Sign implements crypto.Signer for Ed25519 (opts crypto.Hash(0)): msg is
// the note text the signer signs.
func (k *SignerKey) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != 0 {
		return nil, errors.New("signer key: Ed25519 signs the message itself")
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	resp, err := k.c.SignCheckpoint(ctx, k.key, string(msg))
	if err != nil {
		return nil, fmt.Errorf("signer: sign checkpoint: %w", err)
	}
	// One line per active version: take ours.
	for _, line := range resp.Signatures {
		name, b64, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(line, "\u2014 "), "\n"), " ")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if !ok || name != k.origin || err != nil || len(raw) != 4+ed25519.SignatureSize || binary.BigEndian.Uint32(raw) != k.id {
			continue
		}
		return raw[4:], nil
	}
	return nil, fmt.Errorf("signer: no signature of key %q by %s in the answer", k.key, notekey.VKey(k.origin, k.id, 0x01, k.pub))
}
