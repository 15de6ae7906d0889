package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/stack"
)

// cosign returns a cosign v2.6.5 binary, installed into <repo>/.cache/bin
// on first use.
func cosign(t *testing.T) string {
	t.Helper()
	return stack.Cosign.Install(t)
}

// TestCosignVerifyBlobAttestation checks a bundle from the service with
// `cosign verify-blob-attestation --key`, as a producer's verifier would.
func TestCosignVerifyBlobAttestation(t *testing.T) {
	bin := cosign(t)
	e := newEnv(t, baseConfig(time.Now()), server.Options{})
	dir := t.TempDir()
	artifact := []byte("release artifact " + time.Now().String())
	sum := sha256.Sum256(artifact)
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"app.tar","digest":{"sha256":%q}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://example.com/ci"}}}`,
		hex.EncodeToString(sum[:]))
	c := e.client(tokAcme)
	resp, err := c.SignDSSE(context.Background(), api.DSSERequest{Key: "acme-attest", Statement: json.RawMessage(st), Bundle: true})
	if err != nil {
		t.Fatal(err)
	}
	kv := keyInfo(t, c, "acme-attest", 1)
	files := map[string][]byte{"artifact": artifact, "other": []byte("not the artifact"), "bundle.json": resp.Bundle, "key.pub": []byte(kv.PublicKey),
		// An air-gapped verifier has no TUF: an empty trusted root (no
		// logs, no CAs, no TSAs) is all a key-based check needs.
		"trusted_root.json": []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(blob string) (string, error) {
		cmd := exec.Command(bin, "verify-blob-attestation", "--key", filepath.Join(dir, "key.pub"),
			"--bundle", filepath.Join(dir, "bundle.json"), "--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", filepath.Join(dir, "trusted_root.json"),
			"--type", "https://slsa.dev/provenance/v1", filepath.Join(dir, blob))
		cmd.Env = append(os.Environ(), "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("artifact"); err != nil {
		t.Fatalf("cosign rejected the service's bundle: %v\n%s", err, out)
	}
	if out, err := run("other"); err == nil {
		t.Fatalf("cosign accepted the bundle for another blob:\n%s", out)
	} else if !strings.Contains(out, "digest") && !strings.Contains(out, "subject") {
		t.Errorf("cosign refused another blob for an unexpected reason:\n%s", out)
	}
}
