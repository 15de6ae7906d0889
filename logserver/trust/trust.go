// Package trust generates what clients need to trust the appliance's logs:
// a sigstore trusted_root.json (application/vnd.dev.sigstore.trustedroot
// +json;version=0.1: every log with its key, log ID and validity) and a
// signing_config.json (v0.2: every log with its majorApiVersion), from the
// running logs, as sigstore-go v1.3.0 and cosign v3 read them.
//
// Log IDs: a Rekor v1 log (ECDSA) is SHA-256 of its PKIX DER; a Rekor v2
// log (Ed25519, C2SP checkpoints) is the whole C2SP key hash
// SHA-256(origin || 0x0A || 0x01 || key), and its baseUrl's host name must
// be the origin (sigstore-go verifies v2 checkpoints under that name).
package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stellaops/tlog/internal/notekey"
)

// Media types written.
const (
	TrustedRootMediaType   = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
	SigningConfigMediaType = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
)

// Log is one transparency log of the appliance, under one key. A log whose
// key was rotated is several Logs with the same BaseURL and APIVersion, one
// per key version, each with its own validity: the trusted root lists each
// (old bundles verify under the old key, and a key that starts signing in
// the future is known before it does), the signing config the log once.
type Log struct {
	// BaseURL is the URL clients write to (without /api/vN).
	BaseURL string
	// APIVersion is 1 (Rekor v1, ECDSA P-256 key) or 2 (Rekor v2, Ed25519
	// key, C2SP checkpoint whose origin is BaseURL's host name).
	APIVersion uint32
	PublicKey  crypto.PublicKey
	// Start is when the key began signing (the tree's creation): clients
	// reject entries integrated before it.
	Start time.Time
	// End, if set, is when the key stopped signing (rotated out).
	End time.Time
}

// LogID returns the log's ID as trusted roots and entries carry it.
func (l Log) LogID() ([]byte, error) {
	switch l.APIVersion {
	case 1:
		der, err := x509.MarshalPKIXPublicKey(l.PublicKey)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(der)
		return sum[:], nil
	case 2:
		pub, ok := l.PublicKey.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("trust: Rekor v2 log %s: want an Ed25519 key, got %T", l.BaseURL, l.PublicKey)
		}
		u, err := url.Parse(l.BaseURL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("trust: log URL %q has no host name", l.BaseURL)
		}
		h := notekey.KeyHash(u.Hostname(), 0x01, pub)
		return h[:], nil
	}
	return nil, fmt.Errorf("trust: log %s: API version %d", l.BaseURL, l.APIVersion)
}

func keyDetails(pub crypto.PublicKey) (protocommon.PublicKeyDetails, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name == "P-256" {
			return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256, nil
		}
	case ed25519.PublicKey:
		return protocommon.PublicKeyDetails_PKIX_ED25519, nil
	}
	return 0, fmt.Errorf("trust: unsupported log key %T", pub)
}

func timeRange(start, end time.Time) *protocommon.TimeRange {
	r := &protocommon.TimeRange{Start: timestamppb.New(start.UTC().Truncate(time.Second))}
	if !end.IsZero() {
		r.End = timestamppb.New(end.UTC().Truncate(time.Second))
	}
	return r
}

var marshal = protojson.MarshalOptions{Multiline: true, Indent: "  "}

// TrustedRoot returns trusted_root.json naming logs.
func TrustedRoot(logs []Log) ([]byte, error) {
	if len(logs) == 0 {
		return nil, errors.New("trust: no logs")
	}
	tr := &prototrustroot.TrustedRoot{MediaType: TrustedRootMediaType}
	for _, l := range logs {
		id, err := l.LogID()
		if err != nil {
			return nil, err
		}
		kd, err := keyDetails(l.PublicKey)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKIXPublicKey(l.PublicKey)
		if err != nil {
			return nil, err
		}
		inst := &prototrustroot.TransparencyLogInstance{
			BaseUrl:       l.BaseURL,
			HashAlgorithm: protocommon.HashAlgorithm_SHA2_256,
			PublicKey:     &protocommon.PublicKey{RawBytes: der, KeyDetails: kd, ValidFor: timeRange(l.Start, l.End)},
			LogId:         &protocommon.LogId{KeyId: id},
		}
		if l.APIVersion == 2 {
			inst.CheckpointKeyId = &protocommon.LogId{KeyId: id}
		}
		tr.Tlogs = append(tr.Tlogs, inst)
	}
	return marshal.Marshal(tr)
}

// SigningConfig returns signing_config.json (v0.2) listing logs for
// writing (each log once, whatever its number of key versions), any one of them (clients pick the highest API version they
// speak), operated by operator.
func SigningConfig(logs []Log, operator string) ([]byte, error) {
	if len(logs) == 0 {
		return nil, errors.New("trust: no logs")
	}
	sc := &prototrustroot.SigningConfig{
		MediaType:       SigningConfigMediaType,
		RekorTlogConfig: &prototrustroot.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY},
		TsaConfig:       &prototrustroot.ServiceConfiguration{Selector: prototrustroot.ServiceSelector_ANY},
	}
	byURL := map[string]*prototrustroot.Service{}
	for _, l := range logs {
		if l.APIVersion != 1 && l.APIVersion != 2 {
			return nil, fmt.Errorf("trust: log %s: API version %d", l.BaseURL, l.APIVersion)
		}
		key := strconv.Itoa(int(l.APIVersion)) + " " + l.BaseURL
		if s := byURL[key]; s != nil {
			// Another key version of the same log: the service is valid
			// from its first key's start to its last key's end.
			if r := timeRange(l.Start, l.End); r.Start.AsTime().Before(s.ValidFor.Start.AsTime()) {
				s.ValidFor.Start = r.Start
			}
			if l.End.IsZero() {
				s.ValidFor.End = nil
			} else if s.ValidFor.End != nil && l.End.After(s.ValidFor.End.AsTime()) {
				s.ValidFor.End = timestamppb.New(l.End.UTC().Truncate(time.Second))
			}
			continue
		}
		s := &prototrustroot.Service{
			Url: l.BaseURL, MajorApiVersion: l.APIVersion, ValidFor: timeRange(l.Start, l.End), Operator: operator,
		}
		byURL[key] = s
		sc.RekorTlogUrls = append(sc.RekorTlogUrls, s)
	}
	return marshal.Marshal(sc)
}
