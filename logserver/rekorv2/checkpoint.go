package rekorv2

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/logserver/witnessing"
)

// Personality is the Rekor v2 log's sequence.Notary: no SETs, and a
// C2SP checkpoint (origin = the log's host name, as rekor-tiles and
// sigstore-go want it) signed by the log's Ed25519 note key. Its
// checkpoints are stored as format "c2sp".
type Personality struct {
	signer   *witnessing.CheckpointSigner
	verifier note.Verifier
	logID    []byte
	keyID    [32]byte
}

var _ sequence.Notary = (*Personality)(nil)

// NewPersonality returns the personality of the log named origin, whose
// Ed25519 note key is key (a file key or an HSM key behind crypto.Signer).
func NewPersonality(origin string, key crypto.Signer) (*Personality, error) {
	s, err := witnessing.NewCheckpointSigner(origin, key)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		return nil, err
	}
	id := notekey.KeyHash(origin, 0x01, key.Public().(ed25519.PublicKey))
	return &Personality{signer: s, verifier: v, logID: id[:], keyID: sha256.Sum256([]byte(s.VerifierKey()))}, nil
}

// Signer is the checkpoint signer (the witnessing feeder signs with it too).
func (p *Personality) Signer() *witnessing.CheckpointSigner { return p.signer }

// LogID is the log's ID in entries and trusted roots: the whole C2SP key
// hash SHA-256(origin || 0x0A || 0x01 || public key).
func (p *Personality) LogID() []byte { return p.logID }

// Name implements sequence.Notary: the origin.
func (p *Personality) Name() string { return p.signer.Origin() }

// KeyID implements sequence.Notary: SHA-256 of the vkey.
func (p *Personality) KeyID() [32]byte { return p.keyID }

// Format implements sequence.Notary.
func (p *Personality) Format() string { return "c2sp" }

// Sign implements sequence.Notary; the checkpoint signer verifies the
// Ed25519 signature before returning it.
func (p *Personality) Sign(_ context.Context, _ int64, _ []store.Entry, size int64, root tree.Hash) ([][]byte, []byte, error) {
	n, err := p.signer.SignCheckpoint(size, root)
	return nil, n, err
}

// CheckNote implements sequence.Notary.
func (p *Personality) CheckNote(n []byte) error {
	if _, err := note.Open(n, note.VerifierList(p.verifier)); err != nil {
		return fmt.Errorf("%w: the tree's checkpoints do not verify under %s: %v", sequence.ErrKeyChanged, p.signer.VerifierKey(), err)
	}
	return nil
}
