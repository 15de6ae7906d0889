// Package evidence reads evidence bundles and checks them offline against
// a verified kit: Rekor v1 LogEntry JSON, cosign legacy bundles, sigstore
// bundles (v0.1–v0.3, Rekor v1 and v2 entries) and DSSE envelopes with a
// c2sp.org/tlog-proof file beside them. Every format is normalised to an
// Entry; Check then applies the same checks to all (package comment of
// check.go).
package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/mirror/c2sp"
)

// Formats.
const (
	FormatRekorEntry     = "rekor-v1-logentry"
	FormatCosignBundle   = "cosign-bundle"
	FormatSigstoreBundle = "sigstore-bundle"
	FormatDSSEProof      = "dsse+tlog-proof"
)

// Entry is one piece of evidence, normalised.
type Entry struct {
	File   string
	Format string
	// Body is the log leaf: a Rekor canonical body, or the logged bytes
	// (a DSSE envelope exactly as appended) for a tlog-proof.
	Body  []byte
	Index int64
	// IntegratedTime is Unix seconds (0: the log gave none, as Rekor v2).
	IntegratedTime int64
	// LogID is SHA-256 of the log's SPKI (nil if not given).
	LogID []byte
	// SET is Rekor's signed entry timestamp (nil if none).
	SET []byte
	// Proof is the bundled inclusion proof (nil if none).
	Proof *Inclusion
	// Envelope is a DSSE envelope carried with the entry (nil if none).
	Envelope *Envelope
	// EnvelopeRaw is the envelope's bytes as submitted to the log, when
	// the evidence carries them (cosign legacy attest-blob bundles, whose
	// base64Signature is the envelope): intoto entries record their hash.
	EnvelopeRaw []byte
	// Signature and Digest are a message signature carried beside the
	// body (sigstore message signature, cosign bundle).
	Signature []byte
	Digest    []byte
	// Cert is a signing certificate or key carried beside the body (PEM).
	Cert []byte
}

// Inclusion is an inclusion proof with the checkpoint it is against.
type Inclusion struct {
	TreeSize   int64
	Root       []byte
	Hashes     [][]byte
	Checkpoint []byte
}

// Envelope is a DSSE envelope.
type Envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     []byte `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   []byte `json:"sig"`
	} `json:"signatures"`
}

// maxBundle caps an evidence file.
const maxBundle = 64 << 20

// Read reads and normalises an evidence file.
func Read(file string) (*Entry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(data) > maxBundle {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxBundle)
	}
	e, err := parse(file, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	e.File = file
	return e, nil
}

func parse(file string, data []byte) (*Entry, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, errors.New("not a JSON evidence bundle")
	}
	switch {
	case probe["mediaType"] != nil:
		return parseSigstore(data)
	case probe["rekorBundle"] != nil || probe["RekorBundle"] != nil:
		return parseCosign(data)
	case probe["payloadType"] != nil && probe["signatures"] != nil:
		return parseDSSEProof(file, data)
	case probe["body"] != nil:
		return parseRekorAnon(probe)
	case len(probe) == 1:
		for _, v := range probe {
			var inner map[string]json.RawMessage
			if json.Unmarshal(v, &inner) == nil && inner["body"] != nil {
				return parseRekorAnon(inner)
			}
		}
	}
	return nil, errors.New("unknown evidence format (want a Rekor LogEntry, a cosign or sigstore bundle, or a DSSE envelope with a .tlog-proof)")
}

// rekorAnon is Rekor v1's LogEntryAnon.
type rekorAnon struct {
	Body           string `json:"body"`
	IntegratedTime int64  `json:"integratedTime"`
	LogID          string `json:"logID"`
	LogIndex       *int64 `json:"logIndex"`
	Verification   struct {
		SignedEntryTimestamp []byte `json:"signedEntryTimestamp"`
		InclusionProof       *struct {
			Checkpoint string   `json:"checkpoint"`
			Hashes     []string `json:"hashes"`
			LogIndex   int64    `json:"logIndex"`
			RootHash   string   `json:"rootHash"`
			TreeSize   int64    `json:"treeSize"`
		} `json:"inclusionProof"`
	} `json:"verification"`
}

func parseRekorAnon(m map[string]json.RawMessage) (*Entry, error) {
	raw, _ := json.Marshal(m)
	var a rekorAnon
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("Rekor LogEntry: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(a.Body)
	if err != nil || a.LogIndex == nil {
		return nil, errors.New("Rekor LogEntry: body is not base64 or logIndex is missing")
	}
	e := &Entry{Format: FormatRekorEntry, Body: body, Index: *a.LogIndex, IntegratedTime: a.IntegratedTime, SET: a.Verification.SignedEntryTimestamp}
	if e.LogID, err = hex.DecodeString(a.LogID); err != nil {
		return nil, errors.New("Rekor LogEntry: logID is not hex")
	}
	if p := a.Verification.InclusionProof; p != nil {
		if p.LogIndex != e.Index {
			return nil, fmt.Errorf("Rekor LogEntry: inclusion proof is for index %d, the entry has %d", p.LogIndex, e.Index)
		}
		inc := &Inclusion{TreeSize: p.TreeSize, Checkpoint: []byte(p.Checkpoint)}
		if inc.Root, err = hex.DecodeString(p.RootHash); err != nil {
			return nil, errors.New("Rekor LogEntry: rootHash is not hex")
		}
		for _, h := range p.Hashes {
			b, err := hex.DecodeString(h)
			if err != nil {
				return nil, errors.New("Rekor LogEntry: proof hash is not hex")
			}
			inc.Hashes = append(inc.Hashes, b)
		}
		e.Proof = inc
	}
	return e, nil
}

// cosignBundle is cosign's legacy --bundle file (LocalSignedPayload).
type cosignBundle struct {
	Base64Signature string `json:"base64Signature"`
	Cert            string `json:"cert"`
	RekorBundle     *struct {
		SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
		Payload              struct {
			Body           string `json:"body"`
			IntegratedTime int64  `json:"integratedTime"`
			LogIndex       int64  `json:"logIndex"`
			LogID          string `json:"logID"`
		} `json:"Payload"`
	} `json:"rekorBundle"`
}

func parseCosign(data []byte) (*Entry, error) {
	var b cosignBundle
	if err := json.Unmarshal(data, &b); err != nil || b.RekorBundle == nil {
		return nil, fmt.Errorf("cosign bundle: %v", err)
	}
	p := b.RekorBundle.Payload
	body, err := base64.StdEncoding.DecodeString(p.Body)
	if err != nil {
		return nil, errors.New("cosign bundle: body is not base64")
	}
	e := &Entry{Format: FormatCosignBundle, Body: body, Index: p.LogIndex, IntegratedTime: p.IntegratedTime, SET: b.RekorBundle.SignedEntryTimestamp}
	if e.LogID, err = hex.DecodeString(p.LogID); err != nil {
		return nil, errors.New("cosign bundle: logID is not hex")
	}
	if e.Signature, err = base64.StdEncoding.DecodeString(b.Base64Signature); err != nil {
		return nil, errors.New("cosign bundle: base64Signature is not base64")
	}
	// attest-blob puts the DSSE envelope, as logged, in base64Signature.
	var env Envelope
	if bytes.HasPrefix(bytes.TrimSpace(e.Signature), []byte("{")) {
		if err := json.Unmarshal(e.Signature, &env); err != nil || env.PayloadType == "" {
			return nil, errors.New("cosign bundle: base64Signature holds JSON that is not a DSSE envelope")
		}
		e.Envelope, e.EnvelopeRaw, e.Signature = &env, e.Signature, nil
	}
	if b.Cert != "" {
		if c, err := base64.StdEncoding.DecodeString(b.Cert); err == nil {
			e.Cert = c
		} else {
			e.Cert = []byte(b.Cert)
		}
	}
	return e, nil
}

func parseSigstore(data []byte) (*Entry, error) {
	var b protobundle.Bundle
	if err := protojson.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	if !strings.HasPrefix(b.MediaType, "application/vnd.dev.sigstore.bundle") {
		return nil, fmt.Errorf("sigstore bundle: media type %q", b.MediaType)
	}
	vm := b.GetVerificationMaterial()
	tl := vm.GetTlogEntries()
	if len(tl) != 1 {
		return nil, fmt.Errorf("sigstore bundle: %d transparency log entries, want 1", len(tl))
	}
	t := tl[0]
	e := &Entry{Format: FormatSigstoreBundle, Body: t.GetCanonicalizedBody(), Index: t.GetLogIndex(), IntegratedTime: t.GetIntegratedTime(),
		LogID: t.GetLogId().GetKeyId(), SET: t.GetInclusionPromise().GetSignedEntryTimestamp()}
	if len(e.Body) == 0 {
		return nil, errors.New("sigstore bundle: no canonicalized body")
	}
	if p := t.GetInclusionProof(); p != nil {
		if p.GetLogIndex() != e.Index {
			return nil, fmt.Errorf("sigstore bundle: inclusion proof is for index %d, the entry has %d", p.GetLogIndex(), e.Index)
		}
		e.Proof = &Inclusion{TreeSize: p.GetTreeSize(), Root: p.GetRootHash(), Hashes: p.GetHashes(), Checkpoint: []byte(p.GetCheckpoint().GetEnvelope())}
	}
	if c := vm.GetCertificate(); c != nil {
		e.Cert = pemOf("CERTIFICATE", c.GetRawBytes())
	} else if cs := vm.GetX509CertificateChain().GetCertificates(); len(cs) > 0 {
		e.Cert = pemOf("CERTIFICATE", cs[0].GetRawBytes())
	}
	switch c := b.Content.(type) {
	case *protobundle.Bundle_MessageSignature:
		e.Signature = c.MessageSignature.GetSignature()
		e.Digest = c.MessageSignature.GetMessageDigest().GetDigest()
	case *protobundle.Bundle_DsseEnvelope:
		env := &Envelope{PayloadType: c.DsseEnvelope.GetPayloadType(), Payload: c.DsseEnvelope.GetPayload()}
		for _, s := range c.DsseEnvelope.GetSignatures() {
			env.Signatures = append(env.Signatures, struct {
				KeyID string `json:"keyid"`
				Sig   []byte `json:"sig"`
			}{s.GetKeyid(), s.GetSig()})
		}
		e.Envelope = env
	default:
		return nil, errors.New("sigstore bundle: no message signature or DSSE envelope")
	}
	return e, nil
}

// parseDSSEProof reads a DSSE envelope whose logged bytes are the file
// itself, with its tlog-proof in <file>.tlog-proof (or the name with its
// extension replaced).
func parseDSSEProof(file string, data []byte) (*Entry, error) {
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	var raw []byte
	var err error
	for _, p := range proofNames(file) {
		if raw, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if raw == nil {
		return nil, fmt.Errorf("DSSE envelope without a tlog-proof file (looked for %s)", strings.Join(proofNames(file), ", "))
	}
	p, err := c2sp.ParseProof(raw)
	if err != nil {
		return nil, err
	}
	e := &Entry{Format: FormatDSSEProof, Body: bytes.Clone(data), Index: p.Index, Envelope: &env,
		Proof: &Inclusion{Checkpoint: p.Checkpoint, TreeSize: -1}}
	for _, h := range p.Hashes {
		e.Proof.Hashes = append(e.Proof.Hashes, bytes.Clone(h[:]))
	}
	return e, nil
}

func proofNames(file string) []string {
	names := []string{file + ".tlog-proof"}
	if i := strings.LastIndex(file, "."); i > strings.LastIndex(file, "/") {
		names = append(names, file[:i]+".tlog-proof")
	}
	return names
}
