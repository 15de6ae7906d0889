package cosig

import (
	"context"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/client"
)

// A Cosigner makes the witness's cosignature lines. *Signer (a key in this
// process) and *Remote (a key held by the signer service) implement it.
type Cosigner interface {
	// Name is the cosigner name of the signature lines.
	Name() string
	// VerifierKey is the witness vkey that verifies the lines.
	VerifierKey() string
	// Sign returns one or more signature lines cosigning text. A local key
	// uses timestamp t; the signer service uses its own clock.
	Sign(text []byte, t time.Time) ([]byte, error)
}

// Remote cosigns through the signer service (POST /api/v1/signer/sign/
// cosignature), so the witness holds no private key. Every line the
// service returns is verified against the vkeys of the key's active
// versions, read at start-up, before it is used.
type Remote struct {
	c       *client.Client
	key     string
	name    string
	vkey    string // newest active version: what the witness advertises
	verify  note.Verifiers
	timeout time.Duration
}

// NewRemote looks key up in the signer's published keys: it must have the
// cosignature purpose, note name name and at least one active version.
func NewRemote(ctx context.Context, c *client.Client, key, name string, timeout time.Duration) (*Remote, error) {
	ks, err := c.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("signer keys: %w", err)
	}
	r := &Remote{c: c, key: key, name: name, timeout: timeout}
	var vs []note.Verifier
	for _, k := range ks.Keys {
		if k.Name != key {
			continue
		}
		if k.NoteName != name {
			return nil, fmt.Errorf("%w: signer key %q signs as %q, the witness is %q", ErrBadKey, key, k.NoteName, name)
		}
		for _, v := range k.Versions {
			if v.State != "active" || v.CosignatureVerifierKey == "" {
				continue
			}
			ver, err := fnote.NewVerifierForCosignatureV1(v.CosignatureVerifierKey)
			if err != nil {
				return nil, fmt.Errorf("%w: signer key %q version %d: %v", ErrBadKey, key, v.Version, err)
			}
			vs = append(vs, ver)
			r.vkey = v.CosignatureVerifierKey
		}
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: the signer has no active cosignature key %q", ErrBadKey, key)
	}
	r.verify = note.VerifierList(vs...)
	return r, nil
}

// Name implements Cosigner.
func (r *Remote) Name() string { return r.name }

// VerifierKey implements Cosigner.
func (r *Remote) VerifierKey() string { return r.vkey }

// Sign implements Cosigner with one call to the signer service.
func (r *Remote) Sign(text []byte, _ time.Time) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	resp, err := r.c.Cosign(ctx, r.key, string(text))
	if err != nil {
		return nil, fmt.Errorf("signer cosignature: %w", err)
	}
	var out strings.Builder
	for _, line := range resp.Signatures {
		if !strings.HasSuffix(line, "\n") {
			line += "\n"
		}
		if _, err := note.Open([]byte(string(text)+"\n"+line), r.verify); err != nil {
			return nil, fmt.Errorf("signer returned a cosignature that does not verify: %w", err)
		}
		out.WriteString(line)
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("signer returned no cosignature")
	}
	return []byte(out.String()), nil
}
