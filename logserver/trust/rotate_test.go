package trust_test

import (
	"bytes"
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/signerstack"
)

// Key rotation of the v2 log, with its key in a real signer over SoftHSM2:
// version 2 is configured with a future not_before and is in the trusted
// root (with that start) before it signs, beside version 1. The rotation
// is then brought forward (both versions active: the signer signs every
// checkpoint twice) and the logserver restarted: it signs with version 2.
// sigstore-go v1.3.0 verifies the bundle made before the rotation and the
// one made after against the new trusted root, and the one made after
// against the trusted root published before the rotation; the old bundle
// fails without version 1's entry.
func TestV2KeyRotation(t *testing.T) {
	ctx := context.Background()
	hsm := signerstack.NewHSM(t, "rotate", nil, signerstack.Key{Label: "v2-ed-1", Type: pkcs11.Ed25519},
		signerstack.Key{Label: "v2-ed-2", Type: pkcs11.Ed25519})
	const token = "logserver-rotate-token"
	startSigner := func(v1, v2 server.KeyVersionConfig) string {
		t.Helper()
		return signerstack.Serve(t, hsm.Config(2, []server.KeyConfig{{Name: "rekor-v2", Purposes: []string{"checkpoint"}, NoteName: "127.0.0.1",
			Versions: []server.KeyVersionConfig{v1, v2}}},
			signerstack.Tenant("logserver", token, []string{"rekor-v2"}, "sign:checkpoint")))
	}
	now := time.Now().UTC().Truncate(time.Second)
	future := now.Add(time.Hour)
	signerURL := startSigner(server.KeyVersionConfig{Version: 1, Label: "v2-ed-1", NotAfter: future.Add(time.Hour)},
		server.KeyVersionConfig{Version: 2, Label: "v2-ed-2", NotBefore: future})

	tokFile := signerstack.TokenFile(t, t.TempDir(), token)
	e := newEnv(t, func(c *config.Config) {
		c.RekorV2.KeyFile, c.RekorV2.CreateKey = "", false
		c.RekorV2.Signer = &client.Config{URL: signerURL, TokenFile: tokFile, Key: "rekor-v2"}
	})

	// Before the rotation: both versions in the trusted root, version 2
	// from its future not_before, version 1 until its not_after.
	tr1JSON := get(t, e.url+"/trust/trusted_root.json")
	v2 := v2Entries(t, tr1JSON, e.url)
	if len(v2) != 2 {
		t.Fatalf("%d v2 entries in the trusted root, want 2:\n%s", len(v2), tr1JSON)
	}
	created := v2[0].GetPublicKey().GetValidFor().GetStart().AsTime()
	if created.Before(now.Add(-time.Minute)) || created.After(time.Now()) || !v2[0].GetPublicKey().GetValidFor().GetEnd().AsTime().Equal(future.Add(time.Hour)) {
		t.Fatalf("version 1 valid for %v", v2[0].GetPublicKey().GetValidFor())
	}
	if vf := v2[1].GetPublicKey().GetValidFor(); !vf.GetStart().AsTime().Equal(future) || vf.GetEnd() != nil {
		t.Fatalf("version 2 valid for %v", vf)
	}
	if bytes.Equal(v2[0].GetLogId().GetKeyId(), v2[1].GetLogId().GetKeyId()) {
		t.Fatal("both versions have the same log ID")
	}
	scJSON := get(t, e.url+"/trust/signing_config.json")
	sc, err := root.NewSigningConfigFromJSON(scJSON)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range sc.RekorLogURLs() {
		if s.MajorAPIVersion == 2 {
			n++
			if !s.ValidityPeriodStart.Equal(created) || !s.ValidityPeriodEnd.IsZero() {
				t.Fatalf("the v2 log in the signing config: %+v", s)
			}
		}
	}
	if n != 1 {
		t.Fatalf("the v2 log is %d times in the signing config:\n%s", n, scJSON)
	}

	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	sv, _ := signature.LoadVerifier(kp.GetPublicKey(), crypto.SHA256)
	keys := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{string(kp.GetHint()): root.NewExpiringKey(sv, time.Time{}, time.Time{})})
	bundle := func(artifact string) *sgbundle.Bundle {
		t.Helper()
		b, err := sign.Bundle(&sign.PlainData{Data: []byte(artifact)}, kp, sign.BundleOptions{
			TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: e.url, Version: 2})},
		})
		if err != nil {
			t.Fatal(err)
		}
		sb, err := sgbundle.NewBundle(b)
		if err != nil {
			t.Fatal(err)
		}
		return sb
	}
	check := func(trJSON []byte, sb *sgbundle.Bundle, artifact string, wantOK bool) {
		t.Helper()
		tr, err := root.NewTrustedRootFromJSON(trJSON)
		if err != nil {
			t.Fatal(err)
		}
		v, err := verify.NewVerifier(root.TrustedMaterialCollection{tr, keys}, verify.WithTransparencyLog(1), verify.WithNoObserverTimestamps())
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(sb, verify.NewPolicy(verify.WithArtifact(strings.NewReader(artifact)), verify.WithKey()))
		if (err == nil) != wantOK {
			t.Fatalf("verify %q: %v (want ok=%v)", artifact, err, wantOK)
		}
	}
	before := bundle("before the rotation")
	if id := before.GetVerificationMaterial().GetTlogEntries()[0].GetLogId().GetKeyId(); !bytes.Equal(id, v2[0].GetLogId().GetKeyId()) {
		t.Fatalf("bundle before the rotation names log %x, want version 1's %x", id, v2[0].GetLogId().GetKeyId())
	}
	check(tr1JSON, before, "before the rotation", true)

	// The rotation, brought forward: version 2 active now, version 1 still
	// active (the overlap). The signer signs checkpoints with both.
	signerURL = startSigner(server.KeyVersionConfig{Version: 1, Label: "v2-ed-1", NotAfter: future.Add(time.Hour)},
		server.KeyVersionConfig{Version: 2, Label: "v2-ed-2", NotBefore: now.Add(-time.Second)})
	overlap, err := client.New(signerURL, token, nil).SignCheckpoint(ctx, "rekor-v2", "127.0.0.1\n1\n"+strings.Repeat("A", 43)+"=\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(overlap.Signatures) != 2 {
		t.Fatalf("signer during the overlap: %d signature lines %v", len(overlap.Signatures), overlap.Signatures)
	}
	t.Logf("signer's checkpoint during the overlap:\n%s", overlap.SignedNote)
	e.ls.Config.RekorV2.Signer.URL = signerURL
	e.ls.Restart()

	tr2JSON := get(t, e.url+"/trust/trusted_root.json")
	v2after := v2Entries(t, tr2JSON, e.url)
	if len(v2after) != 2 || !bytes.Equal(v2after[0].GetLogId().GetKeyId(), v2[0].GetLogId().GetKeyId()) ||
		!bytes.Equal(v2after[1].GetLogId().GetKeyId(), v2[1].GetLogId().GetKeyId()) {
		t.Fatalf("trusted root after the rotation:\n%s", tr2JSON)
	}
	if s := v2after[0].GetPublicKey().GetValidFor().GetStart().AsTime(); !s.Equal(created) {
		t.Fatalf("version 1's start moved from %v to %v", created, s)
	}
	after := bundle("after the rotation")
	tle := after.GetVerificationMaterial().GetTlogEntries()[0]
	if id := tle.GetLogId().GetKeyId(); !bytes.Equal(id, v2[1].GetLogId().GetKeyId()) {
		t.Fatalf("bundle after the rotation names log %x, want version 2's %x", id, v2[1].GetLogId().GetKeyId())
	}
	t.Logf("published checkpoint after the rotation:\n%s", tle.GetInclusionProof().GetCheckpoint().GetEnvelope())
	check(tr2JSON, before, "before the rotation", true)
	check(tr2JSON, after, "after the rotation", true)
	check(tr1JSON, after, "after the rotation", true)
	check(tr2JSON, after, "another artifact", false)

	// Without version 1's entry, the old bundle does not verify.
	var tr prototrustroot.TrustedRoot
	if err := protojson.Unmarshal(tr2JSON, &tr); err != nil {
		t.Fatal(err)
	}
	var kept []*prototrustroot.TransparencyLogInstance
	for _, l := range tr.Tlogs {
		if !bytes.Equal(l.GetLogId().GetKeyId(), v2[0].GetLogId().GetKeyId()) {
			kept = append(kept, l)
		}
	}
	tr.Tlogs = kept
	without, err := protojson.Marshal(&tr)
	if err != nil {
		t.Fatal(err)
	}
	check(without, before, "before the rotation", false)
	check(without, after, "after the rotation", true)
}

// v2Entries returns the trusted root's tlogs whose baseUrl is u, in order.
func v2Entries(t *testing.T, trJSON []byte, u string) []*prototrustroot.TransparencyLogInstance {
	t.Helper()
	var tr prototrustroot.TrustedRoot
	if err := protojson.Unmarshal(trJSON, &tr); err != nil {
		t.Fatal(err)
	}
	var out []*prototrustroot.TransparencyLogInstance
	for _, l := range tr.Tlogs {
		if l.GetBaseUrl() == u && l.GetCheckpointKeyId() != nil {
			out = append(out, l)
		}
	}
	return out
}
