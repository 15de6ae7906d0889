// Package trust is what the mirror believes: a c2sp.org/tlog-policy file
// (the log's verifier keys, the witnesses and the quorum, parsed by
// logserver/witnessing) and an optional pinned origin. It verifies
// checkpoints against it.
//
// A checkpoint is accepted when its origin is the pinned one (or, with no
// pin, the log key's name, or "<key name> - <tree ID>" as Rekor v1 logs
// write it), a policy log key signed it, and the verified cosignatures of
// the policy's witnesses meet the quorum. Unknown signature lines are
// ignored; a known key with a bad signature is an error.
package trust

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/logserver/witnessing"
)

// Trust is a parsed policy with the log keys' verifiers.
type Trust struct {
	Policy     *witnessing.Policy
	PolicyText []byte
	// Origin, if set, is the only accepted checkpoint origin.
	Origin string
	Logs   []LogKey
}

// LogKey is a log's verifier key from the policy.
type LogKey struct {
	VKey     string
	Name     string
	Verifier note.Verifier
	// Public is the key (ed25519.PublicKey or *ecdsa.PublicKey).
	Public crypto.PublicKey
	// SPKI is the key's PKIX DER; SHA-256 of it is the Rekor log ID.
	SPKI []byte
}

// PEM is the key as a PEM "PUBLIC KEY" block.
func (k LogKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.SPKI})
}

// Load reads a policy file.
func Load(policyFile, origin string) (*Trust, error) {
	data, err := os.ReadFile(policyFile)
	if err != nil {
		return nil, err
	}
	t, err := Parse(data, origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", policyFile, err)
	}
	return t, nil
}

// Parse parses a policy; it must name at least one log.
func Parse(policy []byte, origin string) (*Trust, error) {
	p, err := witnessing.ParsePolicy(policy)
	if err != nil {
		return nil, err
	}
	if len(p.Logs) == 0 {
		return nil, errors.New("trust policy names no log: add a `log <vkey>` line")
	}
	t := &Trust{Policy: p, PolicyText: policy, Origin: origin}
	for _, l := range p.Logs {
		k, err := parseLogKey(l.VKey)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", l.Line, err)
		}
		t.Logs = append(t.Logs, k)
	}
	return t, nil
}

func parseLogKey(vkey string) (LogKey, error) {
	v, err := notekey.LogVerifier(vkey)
	if err != nil {
		return LogKey{}, err
	}
	name, _, typ, key, err := notekey.SplitVKey(vkey)
	if err != nil {
		return LogKey{}, err
	}
	k := LogKey{VKey: vkey, Name: name, Verifier: v}
	switch typ {
	case notekey.Ed25519:
		k.Public = ed25519.PublicKey(key)
	case notekey.ECDSA:
		if k.Public, err = x509.ParsePKIXPublicKey(key); err != nil {
			return LogKey{}, err
		}
	default:
		return LogKey{}, fmt.Errorf("vkey type 0x%02x is not a log key", typ)
	}
	if k.SPKI, err = x509.MarshalPKIXPublicKey(k.Public); err != nil {
		return LogKey{}, err
	}
	return k, nil
}

// Checkpoint is a verified checkpoint.
type Checkpoint struct {
	Raw    []byte
	Origin string
	Size   int64
	Root   [32]byte
	// Log is the policy log key that signed it.
	Log LogKey
	// Witnesses are the policy names of the witnesses whose cosignatures
	// verified, sorted; CosignedAt their timestamps.
	Witnesses  []string
	CosignedAt map[string]time.Time
	// Quorum reports whether the witnesses meet the policy's quorum.
	Quorum bool
}

// Witnessed reports whether the quorum is met by at least one cosignature.
func (c *Checkpoint) Witnessed() bool { return c.Quorum && len(c.Witnesses) > 0 }

// Oldest is the earliest cosignature time (zero without cosignatures).
func (c *Checkpoint) Oldest() time.Time {
	var t time.Time
	for _, ts := range c.CosignedAt {
		if t.IsZero() || ts.Before(t) {
			t = ts
		}
	}
	return t
}

// QuorumError is a checkpoint signed by the log whose cosignatures do not
// meet the quorum.
type QuorumError struct {
	Have    []string
	Missing []string
	Quorum  string
}

func (e *QuorumError) Error() string {
	return fmt.Sprintf("witness quorum %q not met: verified cosignatures from [%s], none from [%s]",
		e.Quorum, strings.Join(e.Have, " "), strings.Join(e.Missing, " "))
}

// Verify checks a checkpoint's log signature and witness quorum. A
// checkpoint that is signed but misses the quorum is returned with a
// *QuorumError.
func (t *Trust) Verify(raw []byte) (*Checkpoint, error) {
	c, err := t.VerifyLog(raw)
	if err != nil {
		return nil, err
	}
	if !c.Quorum {
		q := &QuorumError{Have: c.Witnesses, Quorum: t.Policy.QuorumName}
		for _, w := range t.Policy.Witnesses {
			if _, ok := c.CosignedAt[w.Name]; !ok {
				q.Missing = append(q.Missing, w.Name)
			}
		}
		return c, q
	}
	return c, nil
}

// VerifyLog checks the log signature and records which witnesses cosigned,
// without requiring the quorum (Quorum tells).
func (t *Trust) VerifyLog(raw []byte) (*Checkpoint, error) {
	vs := make([]note.Verifier, 0, len(t.Logs)+len(t.Policy.Witnesses))
	for _, l := range t.Logs {
		vs = append(vs, l.Verifier)
	}
	for _, w := range t.Policy.Witnesses {
		vs = append(vs, w.Verifier())
	}
	n, err := c2sp.Open(raw, note.VerifierList(vs...))
	switch {
	case errors.Is(err, c2sp.ErrBadSignature):
		return nil, fmt.Errorf("checkpoint: invalid signature by a trusted key (%v): altered checkpoint or cosignature", err)
	case errors.Is(err, c2sp.ErrUntrusted):
		return nil, errors.New("checkpoint: not signed by a log key of the trust policy (another log?)")
	case err != nil:
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c := &Checkpoint{Raw: raw, CosignedAt: map[string]time.Time{}}
	signed := false
	for _, s := range n.Sigs {
		for _, l := range t.Logs {
			if s.Name == l.Verifier.Name() && s.Hash == l.Verifier.KeyHash() && !signed {
				c.Log, signed = l, true
			}
		}
		for _, w := range t.Policy.Witnesses {
			if s.Name == w.KeyName && s.Hash == w.KeyID {
				// The base64 of a signature line is key ID (4 bytes) || signature.
				sig, err := base64.StdEncoding.DecodeString(s.Base64)
				var ts time.Time
				if err == nil && len(sig) > 4 {
					ts, err = c2sp.CosignatureTime(sig[4:])
				}
				if err != nil {
					return nil, fmt.Errorf("checkpoint: cosignature of %s: %w", w.Name, err)
				}
				c.CosignedAt[w.Name] = ts
				c.Witnesses = append(c.Witnesses, w.Name)
			}
		}
	}
	if !signed {
		return nil, errors.New("checkpoint: only witness signatures verified, no log signature")
	}
	sort.Strings(c.Witnesses)
	cp, err := c2sp.ParseCheckpoint(n.Text)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := t.checkOrigin(cp.Origin, c.Log); err != nil {
		return nil, err
	}
	if cp.Size > 1<<62 {
		return nil, errors.New("checkpoint: size out of range")
	}
	c.Origin, c.Size = cp.Origin, int64(cp.Size)
	c.Root = cp.Hash
	c.Quorum = t.Policy.Satisfied(c.Witnesses)
	return c, nil
}

func (t *Trust) checkOrigin(origin string, k LogKey) error {
	if t.Origin != "" {
		if origin != t.Origin {
			return fmt.Errorf("checkpoint: origin %q, the trust policy pins %q (another log?)", origin, t.Origin)
		}
		return nil
	}
	if origin == k.Name {
		return nil
	}
	if id, ok := strings.CutPrefix(origin, k.Name+" - "); ok {
		if _, err := strconv.ParseUint(id, 10, 63); err == nil {
			return nil
		}
	}
	return fmt.Errorf("checkpoint: origin %q is neither the key name %q nor %q (pin it with an origin)", origin, k.Name, k.Name+" - <tree ID>")
}
