package rekorv2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	v1 "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/verifier"
	"github.com/sigstore/rekor-tiles/v2/pkg/verifier/certificate"
	"github.com/sigstore/rekor-tiles/v2/pkg/verifier/publickey"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
)

// dsseEntry validates a dsse 0.0.2 request (which rekor-tiles accepted up
// to v2.2 and dropped in v2.3.0, while cosign v2 still sends it) and
// returns its log entry as rekor-tiles v2.2 logged it: the SHA-256 of the
// payload and every envelope signature with the verifier that verified it,
// sorted by the raw signature bytes. Every signature of the envelope must
// verify under one of the request's verifiers, with an algorithm the log
// permits.
func dsseEntry(ds *pb.DSSERequestV002, algs *signature.AlgorithmRegistryConfig) (*pb.Entry, error) {
	env := ds.GetEnvelope()
	switch {
	case env == nil:
		return nil, errors.New("missing envelope")
	case len(ds.GetVerifiers()) == 0:
		return nil, errors.New("missing verifiers")
	case len(env.GetSignatures()) == 0:
		return nil, errors.New("envelope missing signatures")
	}
	for _, v := range ds.GetVerifiers() {
		if err := verifier.Validate(v); err != nil {
			return nil, fmt.Errorf("invalid verifier: %v", err)
		}
	}
	e := &ssldsse.Envelope{PayloadType: env.GetPayloadType(), Payload: base64.StdEncoding.EncodeToString(env.GetPayload())}
	unverified := map[string]bool{}
	for _, s := range env.GetSignatures() {
		if len(s.GetSig()) == 0 {
			return nil, errors.New("envelope signature empty")
		}
		e.Signatures = append(e.Signatures, ssldsse.Signature{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())})
		unverified[string(s.GetSig())] = true
	}
	byRaw := map[string]*pb.Verifier{}
	for _, v := range ds.GetVerifiers() {
		if len(unverified) == 0 {
			break
		}
		var pub any
		switch {
		case v.GetPublicKey() != nil:
			k, err := publickey.NewVerifier(bytes.NewReader(v.GetPublicKey().GetRawBytes()))
			if err != nil {
				return nil, fmt.Errorf("parsing public key: %v", err)
			}
			pub = k.PublicKey()
		case v.GetX509Certificate() != nil:
			c, err := certificate.NewVerifier(bytes.NewReader(v.GetX509Certificate().GetRawBytes()))
			if err != nil {
				return nil, fmt.Errorf("parsing certificate: %v", err)
			}
			pub = c.PublicKey()
		default:
			return nil, errors.New("must contain either a public key or X.509 certificate")
		}
		details, err := signature.GetAlgorithmDetails(v.GetKeyDetails())
		if err != nil {
			return nil, fmt.Errorf("getting key algorithm details: %w", err)
		}
		if ok, err := algs.IsAlgorithmPermitted(pub, details.GetHashType()); err != nil || !ok {
			return nil, fmt.Errorf("algorithm %v not permitted: %v", v.GetKeyDetails(), err)
		}
		sv, err := signature.LoadVerifier(pub, details.GetHashType())
		if err != nil {
			return nil, fmt.Errorf("loading verifier: %w", err)
		}
		ev, err := ssldsse.NewEnvelopeVerifier(&sigdsse.VerifierAdapter{SignatureVerifier: sv})
		if err != nil {
			return nil, err
		}
		accepted, err := ev.Verify(context.Background(), e)
		if err != nil {
			return nil, fmt.Errorf("could not verify envelope: %w", err)
		}
		for _, a := range accepted {
			raw, err := base64.StdEncoding.DecodeString(a.Sig.Sig)
			if err != nil {
				return nil, err
			}
			delete(unverified, string(raw))
			byRaw[string(raw)] = v
		}
	}
	if len(unverified) > 0 {
		return nil, errors.New("all signatures must have a key that verifies it")
	}
	sigs := make([]string, 0, len(byRaw))
	for s := range byRaw {
		sigs = append(sigs, s)
	}
	slices.Sort(sigs)
	var out []*pb.Signature
	for _, s := range sigs {
		out = append(out, &pb.Signature{Content: []byte(s), Verifier: byRaw[s]})
	}
	h := sha256.Sum256(env.GetPayload())
	return &pb.Entry{Kind: "dsse", ApiVersion: "0.0.2", Spec: &pb.Spec{Spec: &pb.Spec_DsseV002{DsseV002: &pb.DSSELogEntryV002{
		PayloadHash: &v1.HashOutput{Algorithm: v1.HashAlgorithm_SHA2_256, Digest: h[:]},
		Signatures:  out,
	}}}}, nil
}
