package composetest

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// trustFiles are what the trust volume holds for clients: the bootstrap's
// keys and policies, and the logserver's sigstore trust files.
var trustFiles = []string{"log-key.pub.pem", "log-note.vkey", "witness.vkey", "witness-policy",
	"rekor-v2.vkey", "witness-policy-v2", "trusted_root.json", "signing_config.json", "rekor-v1.pub.pem", "rekor-v2.pub.pem"}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// v2Client signs with sigstore-go through the log trust/signing_config.json
// selects (the Rekor v2 log, its note key in the signer's token), verifies
// the bundle against trust/trusted_root.json only, and waits for the v2
// checkpoint to carry the witness's cosignature, verified with trust/.
func v2Client(t *testing.T, p *project) {
	t.Helper()
	sc, err := root.NewSigningConfigFromPath(filepath.Join(p.trust, "signing_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromPath(filepath.Join(p.trust, "trusted_root.json"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := root.SelectService(sc.RekorLogURLs(), sign.RekorAPIVersions, time.Now())
	if err != nil || svc.URL != p.logURL || svc.MajorAPIVersion != 2 {
		t.Fatalf("signing config selects %+v, %v; want %s v2", svc, err, p.logURL)
	}
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	artifact := fmt.Appendf(nil, "compose v2 %d %d", os.Getpid(), time.Now().UnixNano())
	t0 := time.Now()
	b, err := sign.Bundle(&sign.PlainData{Data: artifact}, kp, sign.BundleOptions{
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: svc.URL, Version: 2})},
	})
	if err != nil {
		t.Fatalf("sign through the v2 log: %v", err)
	}
	t.Logf("figure: one sigstore-go v2 write through compose: %v", time.Since(t0).Round(time.Millisecond))
	sv, err := signature.LoadVerifier(kp.GetPublicKey(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	keys := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{string(kp.GetHint()): root.NewExpiringKey(sv, time.Time{}, time.Time{})})
	v, err := verify.NewVerifier(root.TrustedMaterialCollection{tr, keys}, verify.WithTransparencyLog(1), verify.WithNoObserverTimestamps())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := bundle.NewBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(sb, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(artifact)), verify.WithKey())); err != nil {
		t.Fatalf("verify against trust/trusted_root.json: %v", err)
	}
	if tl := b.GetVerificationMaterial().GetTlogEntries(); len(tl) != 1 || tl[0].GetKindVersion().GetVersion() != "0.0.2" {
		t.Fatalf("tlog entries %v: want one hashedrekord 0.0.2 (Rekor v2)", tl)
	}

	read := func(f string) string {
		data, err := os.ReadFile(filepath.Join(p.trust, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	logV, err := fnote.NewVerifier(read("rekor-v2.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(read("witness.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		body, err := get(p.logURL + "/api/v2/checkpoint")
		if err != nil {
			last = err.Error()
			continue
		}
		n, err := note.Open(body, note.VerifierList(logV, witV))
		if err == nil && len(n.Sigs) == 2 {
			return
		}
		last = fmt.Sprintf("%v: %s", err, body)
	}
	t.Fatalf("no witnessed v2 checkpoint within a minute: %s", last)
}
