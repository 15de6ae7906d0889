package evidence

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	rverify "github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/mirror/kit"
	"github.com/stellaops/tlog/mirror/tiles"
	"github.com/stellaops/tlog/mirror/trust"
)

// Options of a check.
type Options struct {
	// Now is the time freshness is judged at.
	Now time.Time
	// MaxAge fails entries integrated longer ago (0: no limit).
	MaxAge time.Duration
	// Artifact, if set, is the artifact the entry must sign: its digest
	// (of the entry's algorithm) must be the logged one.
	Artifact []byte
	// Key verifies DSSE envelopes logged as plain entries (tlog-proof).
	Key crypto.PublicKey
}

// Result is the verdict on one piece of evidence.
type Result struct {
	File     string `json:"file"`
	Format   string `json:"format"`
	Kind     string `json:"kind,omitempty"`
	Verified bool   `json:"verified"`
	// Witnessed: the kit checkpoint the entry is proven against carries a
	// quorum of verified witness cosignatures.
	Witnessed      bool     `json:"witnessed"`
	Index          int64    `json:"index"`
	IntegratedTime string   `json:"integrated_time,omitempty"`
	AgeHours       *float64 `json:"age_hours"`
	LogID          string   `json:"log_id,omitempty"`
	// Checkpoint is the kit snapshot the inclusion was proven against.
	Checkpoint *CheckpointRef `json:"checkpoint,omitempty"`
	Signer     Identity       `json:"signer"`
	Checks     Checks         `json:"checks"`
	Failures   []string       `json:"failures"`

	// cosignedAt is the earliest verified cosignature of the bundled checkpoint.
	cosignedAt time.Time
}

// CheckpointRef names a kit checkpoint.
type CheckpointRef struct {
	Date      string   `json:"date,omitempty"`
	Origin    string   `json:"origin"`
	Size      int64    `json:"size"`
	Witnesses []string `json:"witnesses"`
}

// Checks are the individual outcomes.
type Checks struct {
	Signature bool `json:"signature"`
	Inclusion bool `json:"inclusion"`
	// SET is true when the entry has a signed entry timestamp and it
	// verifies, or has none (Rekor v2, tlog-proof).
	SET       bool `json:"set"`
	Witnessed bool `json:"witnessed"`
	Fresh     bool `json:"fresh"`
}

func (r *Result) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Check verifies one entry against a verified kit, with no network: the
// artifact signature, the log it claims (log ID, SET), its inclusion in the
// kit's newest snapshot computed from the kit's tiles, the bundled proof
// and checkpoint (if any) and their consistency with the kit, the witness
// quorum, and freshness. Every failure is listed.
func Check(ctx context.Context, k *kit.Report, e *Entry, o Options) *Result {
	r := &Result{File: e.File, Format: e.Format, Index: e.Index, Failures: []string{}, Signer: Identity{Keys: []string{}, Subjects: []string{}, Digests: []string{}}}
	if len(e.LogID) > 0 {
		r.LogID = hex.EncodeToString(e.LogID)
	}
	if k.Tree == nil || k.Trust == nil || len(k.Verified) == 0 {
		r.fail("the kit did not verify: nothing to check evidence against")
		return r
	}
	r.checkSignature(e, o)
	logKey := r.checkLog(ctx, k, e)
	r.checkInclusion(ctx, k, e, logKey)
	r.checkFresh(e, o)
	r.Verified = len(r.Failures) == 0
	return r
}

func (r *Result) checkSignature(e *Entry, o Options) {
	if e.Format == FormatDSSEProof {
		r.Kind = "dsse-envelope"
		if o.Key == nil {
			r.fail("signature: a DSSE envelope logged as a plain entry needs the signer's key (--key)")
			return
		}
		if err := verifyEnvelope(e.Envelope, []BodySig{{Key: nil}}, o.Key, nil); err != nil {
			r.fail("signature: %v", err)
			return
		}
		r.Signer.Keys = append(r.Signer.Keys, Fingerprint(o.Key))
		d := sha256.Sum256(e.Envelope.Payload)
		r.Signer.Digests = append(r.Signer.Digests, "sha256:"+hex.EncodeToString(d[:]))
		r.Checks.Signature = true
		return
	}
	b, err := ParseBody(e.Body)
	if err != nil {
		r.fail("signature: %v", err)
		return
	}
	r.Kind = b.Kind + "/" + b.APIVersion
	r.Signer = b.Identities()
	switch b.Kind {
	case "hashedrekord":
		r.checkHashedRekord(e, b, o)
	case "dsse":
		if e.Envelope == nil {
			r.fail("signature: a dsse entry needs its envelope (a sigstore bundle carries it)")
			return
		}
		if err := verifyEnvelope(e.Envelope, b.Sigs, nil, b.Digest); err != nil {
			r.fail("signature: %v", err)
			return
		}
	case "intoto":
		r.checkIntoto(e, b)
	default:
		r.fail("signature: entry kind %s is not checked by the mirror", r.Kind)
		return
	}
	if len(r.Failures) == 0 {
		r.Checks.Signature = true
	}
}

// checkHashedRekord verifies the logged signature over the logged digest,
// as Rekor v1.5.4 does: ECDSA and RSA over the digest, Ed25519 as
// Ed25519ph (RFC 8032) over a SHA-512 digest, and that the bundle's
// signature and digest and the artifact (if given) are the logged ones.
func (r *Result) checkHashedRekord(e *Entry, b *Body, o Options) {
	if len(b.Sigs) != 1 {
		r.fail("signature: hashedrekord without a signature")
		return
	}
	s := b.Sigs[0]
	if e.Envelope != nil {
		r.fail("signature: the bundle carries a DSSE envelope, the log a hashedrekord")
	}
	if e.Signature != nil && !bytes.Equal(e.Signature, s.Sig) {
		r.fail("signature: the bundle's signature is not the logged one")
	}
	if e.Digest != nil && !bytes.Equal(e.Digest, b.Digest) {
		r.fail("signature: the bundle's digest is not the logged one")
	}
	if o.Artifact != nil {
		h := b.DigestAlg.New()
		h.Write(o.Artifact)
		if d := h.Sum(nil); !bytes.Equal(d, b.Digest) {
			r.fail("signature: the artifact's %s %x is not the signed digest %x", digestName(b.DigestAlg), d, b.Digest)
		}
	}
	pub, _, err := KeyMaterial(s.Key)
	if err != nil {
		r.fail("signature: logged key: %v", err)
		return
	}
	var v signature.Verifier
	if _, ok := pub.(ed25519.PublicKey); ok {
		if b.DigestAlg != crypto.SHA512 {
			r.fail("signature: an Ed25519 hashedrekord signs a SHA-512 digest (Ed25519ph), this one is %s", digestName(b.DigestAlg))
			return
		}
		v, err = signature.LoadVerifierWithOpts(pub, options.WithED25519ph())
	} else {
		v, err = signature.LoadVerifier(pub, b.DigestAlg)
	}
	if err == nil {
		err = v.VerifySignature(bytes.NewReader(s.Sig), nil, options.WithDigest(b.Digest), options.WithCryptoSignerOpts(b.DigestAlg))
	}
	if err != nil {
		r.fail("signature: does not verify over the logged digest: %v", err)
	}
}

// checkIntoto verifies an intoto 0.0.1 or 0.0.2 entry as Rekor v1.5.4
// accepted it: the envelope carried with the evidence must hash to the
// logged envelope digest, its payload to the logged payload digest (if
// logged), and each logged key must verify an envelope signature over PAE
// (0.0.2: the logged signature itself).
func (r *Result) checkIntoto(e *Entry, b *Body) {
	if e.Envelope == nil || e.EnvelopeRaw == nil {
		r.fail("signature: an intoto entry needs its DSSE envelope as logged (a cosign attest-blob bundle carries it)")
		return
	}
	if d := sha256.Sum256(e.EnvelopeRaw); !bytes.Equal(d[:], b.EnvelopeDigest) {
		r.fail("signature: the envelope hashes to %x, the log recorded %x (an altered envelope)", d, b.EnvelopeDigest)
		return
	}
	if err := verifyEnvelope(e.Envelope, b.Sigs, nil, b.Digest); err != nil {
		r.fail("signature: %v", err)
	}
}

// pae is DSSE's pre-authentication encoding.
func pae(typ string, payload []byte) []byte {
	return []byte("DSSEv1 " + strconv.Itoa(len(typ)) + " " + typ + " " + strconv.Itoa(len(payload)) + " " + string(payload))
}

// verifyEnvelope checks the envelope's payload digest (if want is set) and
// that every logged signature is in the envelope and verifies with its key
// (or with key, for a plain envelope).
func verifyEnvelope(env *Envelope, logged []BodySig, key crypto.PublicKey, want []byte) error {
	if want != nil {
		if d := sha256.Sum256(env.Payload); !bytes.Equal(d[:], want) {
			return fmt.Errorf("the envelope's payload hashes to %x, the log recorded %x", d, want)
		}
	}
	if len(env.Signatures) == 0 {
		return fmt.Errorf("the envelope has no signature")
	}
	msg := pae(env.PayloadType, env.Payload)
	for _, ls := range logged {
		pub := key
		if pub == nil {
			var err error
			if pub, _, err = KeyMaterial(ls.Key); err != nil {
				return fmt.Errorf("logged verifier: %v", err)
			}
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return err
		}
		ok := false
		for _, s := range env.Signatures {
			if ls.Sig != nil && !bytes.Equal(ls.Sig, s.Sig) {
				continue
			}
			if v.VerifySignature(bytes.NewReader(s.Sig), bytes.NewReader(msg)) == nil {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("no envelope signature verifies with key %s", Fingerprint(pub))
		}
	}
	return nil
}

// checkLog matches the entry's log ID to a kit log key and verifies its SET.
func (r *Result) checkLog(ctx context.Context, k *kit.Report, e *Entry) *trust.LogKey {
	var key *trust.LogKey
	if len(e.LogID) > 0 {
		var ids []string
		for i, l := range k.Trust.Logs {
			id := sha256.Sum256(l.SPKI)
			ids = append(ids, hex.EncodeToString(id[:]))
			if bytes.Equal(id[:], e.LogID) {
				key = &k.Trust.Logs[i]
			}
		}
		if key == nil {
			r.fail("log: the entry is from another log: log ID %x is none of the kit's logs %v", e.LogID, ids)
			return nil
		}
	}
	r.Checks.SET = true
	if e.SET == nil {
		return key
	}
	if key == nil {
		r.Checks.SET = false
		r.fail("SET: a signed entry timestamp without a log ID")
		return nil
	}
	v, err := signature.LoadVerifier(key.Public, crypto.SHA256)
	if err != nil {
		r.Checks.SET = false
		r.fail("SET: log key: %v", err)
		return key
	}
	body := base64.StdEncoding.EncodeToString(e.Body)
	logID := hex.EncodeToString(e.LogID)
	a := &models.LogEntryAnon{Body: body, IntegratedTime: &e.IntegratedTime, LogIndex: &e.Index, LogID: &logID,
		Verification: &models.LogEntryAnonVerification{SignedEntryTimestamp: e.SET}}
	if err := rverify.VerifySignedEntryTimestamp(ctx, a, v); err != nil {
		r.Checks.SET = false
		r.fail("SET: the signed entry timestamp does not verify with the kit's log key (altered body, index or time): %v", err)
	}
	return key
}

// checkInclusion proves the entry against the kit: directly in the newest
// snapshot's tree, and, with a bundled proof, the proof against its own
// checkpoint and that checkpoint consistent with the kit.
func (r *Result) checkInclusion(ctx context.Context, k *kit.Report, e *Entry, logKey *trust.LogKey) {
	newest := k.Verified[len(k.Verified)-1]
	r.Checkpoint = &CheckpointRef{Origin: newest.Origin, Size: newest.Size, Witnesses: newest.Witnesses}
	for _, s := range k.Snapshots {
		if s.Size == newest.Size && s.Root == base64.StdEncoding.EncodeToString(newest.Root[:]) {
			r.Checkpoint.Date = s.Date
		}
	}
	r.Witnessed = newest.Witnessed()
	r.Checks.Witnessed = newest.Quorum
	leaf := tiles.LeafHash(e.Body)
	ok := true
	if e.Index < 0 || e.Index >= newest.Size {
		r.fail("inclusion: entry %d is beyond the kit's newest snapshot (size %d): bring a newer kit", e.Index, newest.Size)
		ok = false
	} else {
		p, err := k.Tree.InclusionProof(ctx, e.Index, newest.Size)
		if err == nil {
			err = proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(e.Index), uint64(newest.Size), leaf[:], hashesOf(p), newest.Root[:])
		}
		if err != nil {
			r.fail("inclusion: entry %d of the kit's log is not this entry (a modified entry, or a bundle from another log)", e.Index)
			ok = false
		}
	}
	if e.Proof != nil {
		ok = r.checkBundledProof(ctx, k, e, leaf[:], newest) && ok
	}
	r.Checks.Inclusion = ok
}

func (r *Result) checkBundledProof(ctx context.Context, k *kit.Report, e *Entry, leaf []byte, newest *trust.Checkpoint) bool {
	p := e.Proof
	size, root := p.TreeSize, p.Root
	if len(p.Checkpoint) > 0 {
		cp, err := k.Trust.VerifyLog(p.Checkpoint)
		if err != nil {
			r.fail("bundled checkpoint: %v", err)
			return false
		}
		// Its origin may differ from the kit's (a Rekor checkpoint of a tree
		// the kit holds as a C2SP checkpoint): signed by a kit log key and
		// consistent with the kit's tree (below), it is the same log.
		if size >= 0 && (cp.Size != size || !bytes.Equal(cp.Root[:], root)) {
			r.fail("bundled checkpoint: size %d root %x disagree with the proof's tree size %d root %x", cp.Size, cp.Root, size, root)
			return false
		}
		size, root = cp.Size, cp.Root[:]
		r.cosignedAt = cp.Oldest()
		if cp.Witnessed() {
			r.Witnessed = true
		}
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(e.Index), uint64(size), leaf, p.Hashes, root); err != nil {
		r.fail("bundled inclusion proof does not verify against its root: %v", err)
		return false
	}
	if size > newest.Size {
		r.fail("bundled proof is against a tree of size %d, newer than the kit's newest snapshot (%d): bring a newer kit", size, newest.Size)
		return false
	}
	cons, err := k.Tree.ConsistencyProof(ctx, size, newest.Size)
	if err == nil {
		err = proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(size), uint64(newest.Size), hashesOf(cons), root, newest.Root[:])
	}
	if err != nil {
		r.fail("bundled proof's tree (size %d) is not consistent with the kit's snapshot (size %d): a split view", size, newest.Size)
		return false
	}
	return true
}

func (r *Result) checkFresh(e *Entry, o Options) {
	var ts time.Time
	switch {
	case e.IntegratedTime > 0:
		ts = time.Unix(e.IntegratedTime, 0).UTC()
		r.IntegratedTime = ts.Format(time.RFC3339)
	case !r.cosignedAt.IsZero():
		// Rekor v2 and tlog-proof entries carry no integration time: the
		// earliest witness cosignature of their checkpoint bounds it.
		ts = r.cosignedAt
	}
	if ts.IsZero() {
		if o.MaxAge > 0 {
			r.fail("freshness: no integration time or cosignature time to judge the entry's age")
		}
		r.Checks.Fresh = o.MaxAge == 0
		return
	}
	age := o.Now.Sub(ts)
	h := age.Hours()
	r.AgeHours = &h
	r.Checks.Fresh = true
	if age < -5*time.Minute {
		r.fail("freshness: integrated at %s, in the future", ts.Format(time.RFC3339))
		r.Checks.Fresh = false
	}
	if o.MaxAge > 0 && age > o.MaxAge {
		r.fail("freshness: integrated %.1f h ago, older than --max-age %s", h, o.MaxAge)
		r.Checks.Fresh = false
	}
}

func hashesOf[H ~[32]byte](hs []H) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		h := hs[i]
		out[i] = h[:]
	}
	return out
}
