package referrers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/stellaops/tlog/signer/dsse"
)

// The registry path is tested against a real registry in signer/server
// (referrers_test.go); these are the envelope rules.

func pemOf(t *testing.T, k *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestCheckEnvelope(t *testing.T) {
	release, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := Config{Repositories: []string{"reg.example/stella/scanner"}, TrustedKeys: []TrustedKey{{Name: "release", PublicKey: pemOf(t, release)}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	stmt := func(d string) []byte {
		return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + strings.TrimPrefix(d, "sha256:") + `"}}],"predicateType":"https://slsa.dev/provenance/v1"}`)
	}
	envelope := func(k *ecdsa.PrivateKey, pt string, payload []byte) []byte {
		env, err := dsse.Sign(context.Background(), pt, payload, k)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(env)
		return b
	}
	good := envelope(release, dsse.InTotoPayloadType, stmt(digest))
	var e struct {
		Payload string `json:"payload"`
	}
	json.Unmarshal(good, &e)
	bundle := []byte(`{"mediaType":"` + BundleMediaType + `","verificationMaterial":{"publicKey":{"hint":"x"}},"dsseEnvelope":` + string(good) + `}`)
	for _, tc := range []struct {
		name string
		b    []byte
		want string // "" = verified
	}{
		{"bare envelope", good, ""},
		{"sigstore bundle", bundle, ""},
		{"untrusted key", envelope(other, dsse.InTotoPayloadType, stmt(digest)), "no signature by a trusted scanner release key"},
		{"about another image", envelope(release, dsse.InTotoPayloadType, stmt("sha256:"+strings.Repeat("cd", 32))), "not about " + digest},
		{"not in-toto", envelope(release, "text/plain", stmt(digest)), "not an in-toto statement"},
		{"payload swapped", []byte(strings.Replace(string(good), e.Payload, base64.StdEncoding.EncodeToString(stmt("sha256:"+strings.Repeat("ef", 32))), 1)), "no signature by a trusted"},
		{"garbage", []byte(`{"nope":`), "not a DSSE envelope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer, pt, err := v.checkEnvelope(tc.b, digest)
			if tc.want == "" {
				if err != nil || signer != "release" || pt != "https://slsa.dev/provenance/v1" {
					t.Fatalf("%q %q %v", signer, pt, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAllowListAndDigests(t *testing.T) {
	listed := "sha256:" + strings.Repeat("01", 32)
	cfg := Config{Repositories: []string{"reg.example/s"}, TrustedDigests: []string{listed}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, _ := New(cfg, nil)
	got, err := v.Verify(context.Background(), "", listed) // no registry call
	if err != nil || got.Verdict != AllowListed || !got.Trusted {
		t.Fatalf("%+v %v", got, err)
	}
	for _, d := range []string{"sha256:" + strings.Repeat("AB", 32), "sha512:" + strings.Repeat("ab", 32), "ab"} {
		if _, err := v.Verify(context.Background(), "", d); !errors.Is(err, ErrBadDigest) {
			t.Errorf("%s: %v", d, err)
		}
	}
	if _, _, err := SplitImage("reg.example/s:latest"); !errors.Is(err, ErrBadDigest) {
		t.Errorf("image by tag: %v", err)
	}
	if r, d, err := SplitImage("reg.example/s@" + listed); err != nil || r != "reg.example/s" || d != listed {
		t.Errorf("split: %s %s %v", r, d, err)
	}
}
