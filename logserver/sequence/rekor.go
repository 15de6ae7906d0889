package sequence

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/stellaops/tlog/logserver/logkey"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// ErrKeyChanged is returned by Open when the configured log key is not the
// key that signed the tree's stored checkpoints: clients pin the log key,
// so a tree keeps its key for life.
var ErrKeyChanged = errors.New("sequence: the log key changed")

// Rekor is the Rekor v1 personality: a SET per entry and a Rekor v1
// checkpoint (origin "<hostname> - <treeID>", one signature line), both
// by the log's ECDSA P-256 key in one batched signer call.
type Rekor struct {
	signer   logkey.Signer
	pub      *ecdsa.PublicKey
	hostname string
	logID    string
	keyID    [32]byte
	hint     [4]byte
}

// NewRekor returns the Rekor v1 personality of hostname, signing with s.
func NewRekor(s logkey.Signer, hostname string) (*Rekor, error) {
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("sequence: the log key is %T, want ECDSA", s.Public())
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	logID, err := logkey.LogID(pub)
	if err != nil {
		return nil, err
	}
	r := &Rekor{signer: s, pub: pub, hostname: hostname, logID: logID, keyID: sha256.Sum256(der)}
	// Rekor's note key hint: the first bytes of SHA-256 of the PKIX DER.
	copy(r.hint[:], r.keyID[:4])
	return r, nil
}

// Name implements Notary.
func (r *Rekor) Name() string { return r.hostname }

// KeyID implements Notary: SHA-256 of the PKIX DER (Rekor's log ID).
func (r *Rekor) KeyID() [32]byte { return r.keyID }

// Format implements Notary.
func (r *Rekor) Format() string { return "rekor" }

// Sign implements Notary: every SET and the checkpoint in one signer call,
// each signature verified under the log key before it is returned (the
// signer may be remote: a wrong key or garbage fails here, not in clients).
func (r *Rekor) Sign(ctx context.Context, treeID int64, entries []store.Entry, size int64, root tree.Hash) ([][]byte, []byte, error) {
	digests := make([][sha256.Size]byte, len(entries)+1)
	for i, e := range entries {
		digests[i] = sha256.Sum256(setPayload(e.Body, e.IntegratedTime, r.logID, e.Index))
	}
	text := rekorCheckpointText(r.hostname, treeID, size, root)
	digests[len(entries)] = sha256.Sum256([]byte(text))
	sigs, err := r.signer.SignDigests(ctx, digests)
	if err != nil {
		return nil, nil, fmt.Errorf("sign pass up to %d: %w", size, err)
	}
	if len(sigs) != len(digests) || !r.verifyAll(digests, sigs) {
		return nil, nil, fmt.Errorf("sign pass up to %d: the signer's signatures do not verify under the log key", size)
	}
	return sigs[:len(entries)], rekorNote(text, r.hostname, r.hint, sigs[len(entries)]), nil
}

// verifyAll checks every signature, on all cores for large passes.
func (r *Rekor) verifyAll(digests [][sha256.Size]byte, sigs [][]byte) bool {
	workers := min(runtime.GOMAXPROCS(0), 1+len(digests)/64)
	var bad sync.Once
	ok := true
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(digests); i += workers {
				if !ecdsa.VerifyASN1(r.pub, digests[i][:], sigs[i]) {
					bad.Do(func() { ok = false })
					return
				}
			}
		}()
	}
	wg.Wait()
	return ok
}

// CheckNote implements Notary.
func (r *Rekor) CheckNote(note []byte) error {
	if hint, ok := noteKeyHint(note); !ok || hint != r.hint {
		return fmt.Errorf("%w: the tree's checkpoints and SETs were signed by key %x, the configured log key is %x; a new key needs a new tree",
			ErrKeyChanged, hint, r.hint)
	}
	return nil
}

// setPayload is the RFC 8785 (JCS) form of the object Rekor signs as an
// entry's SET: {"body","integratedTime","logID","logIndex"}, keys sorted.
// Every value here is a base64/hex string or an integer, for which JCS equals
// this literal encoding (no escapes can occur).
func setPayload(body []byte, integratedTime int64, logID string, logIndex int64) []byte {
	var b strings.Builder
	b.Grow(len(body)*4/3 + 160)
	b.WriteString(`{"body":"`)
	b.WriteString(base64.StdEncoding.EncodeToString(body))
	b.WriteString(`","integratedTime":`)
	b.WriteString(strconv.FormatInt(integratedTime, 10))
	b.WriteString(`,"logID":"`)
	b.WriteString(logID)
	b.WriteString(`","logIndex":`)
	b.WriteString(strconv.FormatInt(logIndex, 10))
	b.WriteString(`}`)
	return []byte(b.String())
}

// rekorCheckpointText is the body of a Rekor v1 checkpoint: origin
// "<hostname> - <treeID>", size, base64 root hash, and no extension lines.
func rekorCheckpointText(hostname string, treeID, size int64, root tree.Hash) string {
	return fmt.Sprintf("%s - %d\n%d\n%s\n", hostname, treeID, size, base64.StdEncoding.EncodeToString(root[:]))
}

// rekorNote appends the one signature line Rekor clients accept.
func rekorNote(text, hostname string, hint [4]byte, sig []byte) []byte {
	line := make([]byte, 0, 4+len(sig))
	line = append(line, hint[:]...)
	line = append(line, sig...)
	return []byte(text + "\n\u2014 " + hostname + " " + base64.StdEncoding.EncodeToString(line) + "\n")
}

// noteKeyHint returns the key hint of a Rekor note's (only) signature line.
func noteKeyHint(note []byte) ([4]byte, bool) {
	var hint [4]byte
	_, sigs, ok := strings.Cut(string(note), "\n\n")
	if !ok {
		return hint, false
	}
	fields := strings.Fields(strings.TrimSpace(sigs))
	if len(fields) < 3 {
		return hint, false
	}
	raw, err := base64.StdEncoding.DecodeString(fields[2])
	if err != nil || len(raw) < 4 {
		return hint, false
	}
	copy(hint[:], raw)
	return hint, true
}
