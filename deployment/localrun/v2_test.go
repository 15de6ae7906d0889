package localrun

import (
	"bytes"
	"crypto"
	"io"
	"net/http"
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

// checkV2 signs with sigstore-go through the log SIGNING_CONFIG selects
// (the Rekor v2 log, note key in the token), verifies against TRUSTED_ROOT,
// and waits for the v2 checkpoint to be cosigned by the witness.
func checkV2(t *testing.T, env map[string]string) {
	t.Helper()
	sc, err := root.NewSigningConfigFromPath(env["SIGNING_CONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromPath(env["TRUSTED_ROOT"])
	if err != nil {
		t.Fatal(err)
	}
	svc, err := root.SelectService(sc.RekorLogURLs(), sign.RekorAPIVersions, time.Now())
	if err != nil || svc.URL != env["LOG_V2_URL"] || svc.MajorAPIVersion != 2 {
		t.Fatalf("signing config selects %+v, %v; want %s v2", svc, err, env["LOG_V2_URL"])
	}
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	artifact := []byte("make run v2 contract")
	b, err := sign.Bundle(&sign.PlainData{Data: artifact}, kp, sign.BundleOptions{
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: svc.URL, Version: 2})},
	})
	if err != nil {
		t.Fatalf("sign through the v2 log: %v", err)
	}
	sv, _ := signature.LoadVerifier(kp.GetPublicKey(), crypto.SHA256)
	keys := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{string(kp.GetHint()): root.NewExpiringKey(sv, time.Time{}, time.Time{})})
	v, err := verify.NewVerifier(root.TrustedMaterialCollection{tr, keys}, verify.WithTransparencyLog(1), verify.WithNoObserverTimestamps())
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := bundle.NewBundle(b)
	if _, err := v.Verify(sb, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(artifact)), verify.WithKey())); err != nil {
		t.Fatalf("verify against TRUSTED_ROOT: %v", err)
	}
	vk, err := os.ReadFile(filepath.Join(env["TRUST_DIR"], "rekor-v2.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	logV, err := fnote.NewVerifier(strings.TrimSpace(string(vk)))
	if err != nil {
		t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(env["WITNESS_VKEY"])
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := http.Get(env["LOG_V2_URL"] + "/api/v2/checkpoint")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if n, err := note.Open(body, note.VerifierList(logV, witV)); err == nil && len(n.Sigs) == 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no witnessed v2 checkpoint within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
