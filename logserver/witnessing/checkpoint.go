package witnessing

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/internal/keyfile"
	"github.com/stellaops/tlog/internal/notekey"
)

// CheckpointText returns the body of a c2sp.org/tlog-checkpoint: origin,
// decimal size and base64 root hash, one per line, with no extension lines
// (some witnesses cosign only the first three lines, so we never emit any).
func CheckpointText(origin string, size int64, root [32]byte) string {
	return c2sp.FormatCheckpoint(origin, uint64(size), root)
}

// parseCheckpointText parses the three lines of a checkpoint body; it
// refuses extension lines, which this log never emits.
func parseCheckpointText(text string) (origin string, size int64, root [32]byte, err error) {
	c, err := c2sp.ParseCheckpoint(text)
	switch {
	case err != nil:
		return "", 0, root, fmt.Errorf("checkpoint: %w", err)
	case len(c.Extensions) > 0:
		return "", 0, root, errors.New("checkpoint: want exactly origin, size and root lines")
	case c.Size > math.MaxInt64:
		return "", 0, root, fmt.Errorf("checkpoint: size %d out of range", c.Size)
	}
	return c.Origin, int64(c.Size), c.Hash, nil
}

// CheckpointSigner signs C2SP checkpoints with the log's Ed25519 note key
// (signature type 0x01): the key name is the origin, the key ID is
// SHA-256(origin || 0x0A || 0x01 || pub)[:4] and the signature is pure
// Ed25519 over the checkpoint text. The key is used only through
// crypto.Signer, so an HSM (PKCS#11 CKM_EDDSA) key plugs in: it must return
// an ed25519.PublicKey from Public and sign the message itself when given
// crypto.Hash(0).
type CheckpointSigner struct {
	origin string
	key    crypto.Signer
	pub    ed25519.PublicKey
	id     uint32
}

// NewCheckpointSigner returns a signer for checkpoints of origin. The origin
// is also the key name, so it must be a valid note key name: non-empty
// UTF-8 with no spaces and no '+' (tlog-checkpoint recommends a schema-less
// URL such as "log.example.com/stella").
func NewCheckpointSigner(origin string, key crypto.Signer) (*CheckpointSigner, error) {
	if !notekey.ValidName(origin) {
		return nil, fmt.Errorf("checkpoint origin %q: must be non-empty with no spaces or '+' (it is also the note key name)", origin)
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("checkpoint key: want an Ed25519 key, got %T", key.Public())
	}
	return &CheckpointSigner{origin: origin, key: key, pub: pub, id: notekey.KeyID(origin, notekey.Ed25519, pub)}, nil
}

// Origin returns the checkpoint origin (= key name).
func (s *CheckpointSigner) Origin() string { return s.origin }

// VerifierKey returns the log's vkey, "<origin>+<hex key ID>+base64(0x01 ||
// pub)": what witnesses and the tlog-policy "log" line are configured with.
func (s *CheckpointSigner) VerifierKey() string {
	return notekey.VKey(s.origin, s.id, notekey.Ed25519, s.pub)
}

// Name, KeyHash and Sign implement note.Signer.
func (s *CheckpointSigner) Name() string    { return s.origin }
func (s *CheckpointSigner) KeyHash() uint32 { return s.id }
func (s *CheckpointSigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.key.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(s.pub, msg, sig) { // catches a misbehaving HSM before anyone else does
		return nil, errors.New("checkpoint key produced an invalid Ed25519 signature")
	}
	return sig, nil
}

// SignCheckpoint returns the signed note of the checkpoint (size, root):
// the text, a blank line and one signature line by the log key.
func (s *CheckpointSigner) SignCheckpoint(size int64, root [32]byte) ([]byte, error) {
	if size < 0 {
		return nil, errors.New("checkpoint: negative size")
	}
	return note.Sign(&note.Note{Text: CheckpointText(s.origin, size, root)}, s)
}

// LoadOrCreateKey reads an Ed25519 private key from a PEM PKCS #8 file
// (what `openssl genpkey -algorithm ed25519` writes). With create, a missing
// file is generated first (mode 0600, written to a temporary file and
// renamed, so a crash never leaves a half-written key).
func LoadOrCreateKey(path string, create bool) (ed25519.PrivateKey, error) {
	k, err := keyfile.LoadEd25519(path)
	if !errors.Is(err, os.ErrNotExist) || !create {
		return k, err
	}
	if k, err = keyfile.CreateEd25519(path); errors.Is(err, os.ErrExist) {
		return keyfile.LoadEd25519(path) // another process created it meanwhile
	}
	return k, err
}
