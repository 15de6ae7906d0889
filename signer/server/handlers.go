package server

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	xnote "golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/dsse"
	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/note"
	"github.com/stellaops/tlog/signer/policy"
)

var ticketRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$`)

func (s *Server) signDSSE(ctx context.Context, c *call) (any, error) {
	var req api.DSSERequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	if req.PayloadType == "" {
		req.PayloadType = dsse.InTotoPayloadType
	}
	c.rec.PayloadType = req.PayloadType
	c.rec.RedactionTicket = req.RedactionTicket
	payload := req.Payload
	switch {
	case len(req.Payload) > 0 && len(req.Statement) > 0:
		return nil, fmt.Errorf("%w: give either payload or statement, not both", ErrBadRequest)
	case len(req.Statement) > 0:
		payload = req.Statement
	case len(payload) == 0:
		return nil, fmt.Errorf("%w: no payload", ErrBadRequest)
	}
	pae := dsse.PAE(req.PayloadType, payload)
	sum := sha256.Sum256(pae)
	c.rec.PAESHA256 = sum[:]
	inToto := req.PayloadType == dsse.InTotoPayloadType
	nk, err := s.key(c, req.Key, PurposeDSSE)
	if err != nil {
		if inToto {
			auditStatement(c, payload)
		}
		return nil, err
	}
	var canonical string
	var dec *policy.Decision
	if inToto {
		d, err := c.p.tenant.policy.Check(policy.Request{PayloadType: req.PayloadType, Payload: payload,
			PII: req.PII, RedactionTicket: req.RedactionTicket})
		if err != nil {
			auditStatement(c, payload)
			return nil, err
		}
		dec, canonical = d, d.PredicateType
		c.rec.PredicateType = canonical
		c.rec.Subjects = subjects(d.Statement)
		if d.Stella != nil {
			// A Stella payload type is signed in its RFC 8785 form.
			payload = d.Payload
			sum = sha256.Sum256(dsse.PAE(req.PayloadType, payload))
			c.rec.PAESHA256 = sum[:]
		}
	} else {
		if !slices.Contains(c.p.tenant.cfg.AllowedPayloadTypes, req.PayloadType) {
			return nil, fmt.Errorf("%w: %q for this tenant", policy.ErrPayloadType, req.PayloadType)
		}
		if req.PII && req.RedactionTicket == "" {
			return nil, policy.ErrRedactionRequired
		}
		if req.PII && !ticketRE.MatchString(req.RedactionTicket) {
			return nil, fmt.Errorf("%w: malformed redaction ticket", policy.ErrRedactionRequired)
		}
	}
	if err := s.stellaGate(ctx, c, nk.cfg.Name, canonical, dec, len(payload)); err != nil {
		return nil, err
	}
	sk, err := nk.newest(s.now(), 0)
	if err != nil {
		return nil, err
	}
	c.rec.KeyVersions, c.rec.KeyIDs = strconv.Itoa(sk.version), hexID(sk.id)
	t0 := time.Now()
	env, err := dsse.Sign(ctx, req.PayloadType, payload, sk.key)
	c.signTook = time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigning, err)
	}
	c.rec.Items = 1
	s.m.signatures.WithLabelValues(nk.cfg.Name, strconv.Itoa(sk.version)).Inc()
	envJSON, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	resp := &api.DSSEResponse{Envelope: envJSON, Key: nk.cfg.Name, KeyVersion: sk.version, KeyID: hexID(sk.id),
		PredicateType: canonical, PAESHA256: hex.EncodeToString(sum[:]), RequestID: c.rec.RequestID}
	if req.Bundle {
		if resp.Bundle, err = bundleJSON(env, sk.id); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// bundleJSON wraps env in a sigstore bundle v0.3 whose verification
// material is the public key hint base64(SHA-256(SPKI)), as cosign writes,
// and whose envelope is env without keyids.
func bundleJSON(env *dsse.Envelope, id [32]byte) (json.RawMessage, error) {
	pe := &protodsse.Envelope{Payload: env.Payload, PayloadType: env.PayloadType}
	for _, sig := range env.Signatures {
		// No keyid, as cosign writes bundles: sigstore-go's verifier has
		// its own notion of key ids and skips a signature whose keyid
		// differs from it. The key is named by the hint instead.
		pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: sig.Sig})
	}
	b := &protobundle.Bundle{
		MediaType: api.BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{
				Hint: base64.StdEncoding.EncodeToString(id[:])}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe},
	}
	return protojson.Marshal(b)
}

// auditStatement records what a refused statement is about, if it parses.
func auditStatement(c *call, payload []byte) {
	if st, err := policy.ParseStatement(payload); err == nil {
		c.rec.PredicateType = st.PredicateType
		c.rec.Subjects = subjects(st)
	}
}

func subjects(st *policy.Statement) []string {
	var out []string
	for _, sub := range st.Subject {
		for alg, v := range sub.Digest {
			out = append(out, alg+":"+v)
		}
	}
	slices.Sort(out)
	return out
}

type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

func (s *Server) signDigests(ctx context.Context, c *call) (any, error) {
	var req api.DigestsRequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	c.rec.PayloadType = "sha256-digests"
	nk, err := s.key(c, req.Key, PurposeDigests)
	if err != nil {
		return nil, err
	}
	if len(req.Digests) == 0 || len(req.Digests) > s.cfg.MaxDigests {
		return nil, fmt.Errorf("%w: %d digests (want 1 to %d)", ErrBadRequest, len(req.Digests), s.cfg.MaxDigests)
	}
	h := sha256.New()
	for i, d := range req.Digests {
		if len(d) != sha256.Size {
			return nil, fmt.Errorf("%w: digest %d is %d bytes, want 32", ErrBadRequest, i, len(d))
		}
		h.Write(d)
	}
	c.rec.PAESHA256 = h.Sum(nil)
	sk, err := nk.newest(s.now(), req.Version)
	if err != nil {
		return nil, err
	}
	c.rec.KeyVersions, c.rec.KeyIDs = strconv.Itoa(sk.version), hexID(sk.id)
	if sk.key.Algorithm() != keys.ECDSAP256 {
		return nil, fmt.Errorf("%w: digest signing needs an ECDSA P-256 key, %q version %d is %s", ErrKeyPurpose, nk.cfg.Name, sk.version, sk.key.Algorithm())
	}
	t0 := time.Now()
	sigs, err := s.signAll(ctx, sk.key, req.Digests)
	c.signTook = time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigning, err)
	}
	c.rec.Items = len(sigs)
	s.m.signatures.WithLabelValues(nk.cfg.Name, strconv.Itoa(sk.version)).Add(float64(len(sigs)))
	return &api.DigestsResponse{Key: nk.cfg.Name, KeyVersion: sk.version, KeyID: hexID(sk.id), Signatures: sigs, RequestID: c.rec.RequestID}, nil
}

// signAll signs every digest, spreading the batch over as many goroutines
// as the token has sessions (so one batch keeps the whole pool busy), and
// returns the signatures in order, or the first error.
func (s *Server) signAll(ctx context.Context, k keys.Key, digests [][]byte) ([][]byte, error) {
	workers := runtime.GOMAXPROCS(0)
	if s.tok != nil {
		workers = s.tok.Sessions()
	}
	workers = max(1, min(workers, len(digests)))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sigs := make([][]byte, len(digests))
	cs, hasCtx := k.(contextSigner)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(digests); i += workers {
				if ctx.Err() != nil {
					return
				}
				var sig []byte
				var err error
				if hasCtx {
					sig, err = cs.SignContext(ctx, digests[i], crypto.SHA256)
				} else {
					sig, err = k.Sign(nil, digests[i], crypto.SHA256)
				}
				if err != nil {
					cancel(fmt.Errorf("digest %d: %w", i, err))
					return
				}
				sigs[i] = sig
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return sigs, nil
}

func (s *Server) signCheckpoint(ctx context.Context, c *call) (any, error) {
	return s.signNote(ctx, c, PurposeCheckpoint, func(name string, k keys.Key) (xnote.Signer, error) {
		return note.NewSigner(name, k)
	})
}

func (s *Server) signCosignature(ctx context.Context, c *call) (any, error) {
	return s.signNote(ctx, c, PurposeCosignature, func(name string, k keys.Key) (xnote.Signer, error) {
		return note.NewCosigner(name, k, s.now)
	})
}

func (s *Server) signNote(ctx context.Context, c *call, purpose string, mk func(string, keys.Key) (xnote.Signer, error)) (any, error) {
	var req api.NoteRequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	c.rec.PayloadType = "note/" + purpose
	sum := sha256.Sum256([]byte(req.Note))
	c.rec.PAESHA256 = sum[:]
	nk, err := s.key(c, req.Key, purpose)
	if err != nil {
		return nil, err
	}
	if err := checkCheckpoint(req.Note); err != nil {
		return nil, err
	}
	sks, err := nk.active(s.now())
	if err != nil {
		return nil, err
	}
	var signers []xnote.Signer
	var versions, ids []string
	resp := &api.NoteResponse{Key: nk.cfg.Name, RequestID: c.rec.RequestID}
	for _, sk := range sks {
		ns, err := mk(nk.cfg.NoteName, sk.key)
		if err != nil {
			return nil, fmt.Errorf("%w: %s version %d: %w", ErrKeyPurpose, nk.cfg.Name, sk.version, err)
		}
		signers = append(signers, ns)
		versions = append(versions, strconv.Itoa(sk.version))
		ids = append(ids, hexID(sk.id))
		resp.KeyVersions = append(resp.KeyVersions, sk.version)
	}
	c.rec.KeyVersions, c.rec.KeyIDs = strings.Join(versions, ","), strings.Join(ids, ",")
	t0 := time.Now()
	// x/mod's note.Sign calls the signers one after the other; the token
	// serialises them anyway.
	signed, err := xnote.Sign(&xnote.Note{Text: req.Note}, signers...)
	c.signTook = time.Since(t0)
	if err != nil {
		if strings.Contains(err.Error(), "malformed") {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrSigning, err)
	}
	lines := strings.SplitAfter(string(signed[len(req.Note)+1:]), "\n")
	for _, l := range lines {
		if l != "" {
			resp.Signatures = append(resp.Signatures, l)
		}
	}
	resp.SignedNote = string(signed)
	c.rec.Items = len(resp.Signatures)
	for _, sk := range sks {
		s.m.signatures.WithLabelValues(nk.cfg.Name, strconv.Itoa(sk.version)).Inc()
	}
	if purpose == PurposeCheckpoint {
		s.m.lastChkptSign.SetToCurrentTime()
	}
	return resp, nil
}

// checkCheckpoint checks the shape of a checkpoint body (C2SP
// tlog-checkpoint, which Rekor's follows): an origin line, a decimal tree
// size, a base64 32-byte root hash, optional non-empty extension lines,
// and a final newline.
func checkCheckpoint(text string) error {
	if !strings.HasSuffix(text, "\n") {
		return fmt.Errorf("%w: note must end with a newline", ErrBadRequest)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return fmt.Errorf("%w: a checkpoint has at least three lines (origin, size, root hash)", ErrBadRequest)
	}
	if lines[0] == "" {
		return fmt.Errorf("%w: empty origin line", ErrBadRequest)
	}
	if _, err := strconv.ParseUint(lines[1], 10, 64); err != nil || (len(lines[1]) > 1 && lines[1][0] == '0') {
		return fmt.Errorf("%w: tree size %q is not a decimal number", ErrBadRequest, lines[1])
	}
	if h, err := base64.StdEncoding.DecodeString(lines[2]); err != nil || len(h) != sha256.Size {
		return fmt.Errorf("%w: root hash is not base64 of 32 bytes", ErrBadRequest)
	}
	for _, l := range lines[3:] {
		if l == "" {
			return fmt.Errorf("%w: empty line inside the checkpoint body", ErrBadRequest)
		}
	}
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	resp := api.KeysResponse{Keys: []api.KeyInfo{}}
	for _, name := range s.ring.names {
		nk := s.ring.keys[name]
		ki := api.KeyInfo{Name: name, Purposes: nk.cfg.Purposes, NoteName: nk.cfg.NoteName}
		for _, v := range nk.versions {
			vi := api.KeyVersionInfo{Version: v.cfg.Version, State: v.state(now)}
			if !v.cfg.NotBefore.IsZero() {
				t := v.cfg.NotBefore.UTC()
				vi.NotBefore = &t
			}
			if !v.cfg.NotAfter.IsZero() {
				t := v.cfg.NotAfter.UTC()
				vi.NotAfter = &t
			}
			if k, err := v.get(); err == nil {
				pub := k.Public()
				vi.Available = true
				vi.Algorithm = string(k.Algorithm())
				vi.KeyID = hexID(v.id)
				vi.Hint = base64.StdEncoding.EncodeToString(v.id[:])
				der, _ := x509.MarshalPKIXPublicKey(pub)
				vi.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
				if nk.hasPurpose(PurposeCheckpoint) {
					vi.NoteVerifierKey, _ = note.VerifierKey(nk.cfg.NoteName, pub)
				}
				if nk.hasPurpose(PurposeCosignature) {
					vi.CosignatureVerifierKey, _ = note.CosignerVerifierKey(nk.cfg.NoteName, pub)
				}
			}
			ki.Versions = append(ki.Versions, vi)
		}
		resp.Keys = append(resp.Keys, ki)
	}
	writeJSON(w, http.StatusOK, resp)
}
