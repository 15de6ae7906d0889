package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/testing/stack"
)

// TestCosign drives the real cosign v2.6.5 against the log, as a release
// pipeline would: sign a blob and an attestation with a local key, log them
// (hashedrekord and dsse entries), and verify offline from the bundles with
// only the log's public key pinned (no TUF, no network), and online through
// the retrieve endpoint. The new bundle format is verified with a trusted
// root made by cosign itself.
func TestCosign(t *testing.T) {
	e := newEnv(t)
	cosign := stack.Cosign.Install(t)
	dir := t.TempDir()
	run := func(wantOK bool, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(dir, "tuf"))
		cmd.Env = append(cmd.Env, env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("cosign %s: err=%v, want ok=%v\n%s", strings.Join(args, " "), err, wantOK, out.String())
		}
		return out.String()
	}
	pinned := []string{"SIGSTORE_REKOR_PUBLIC_KEY=" + e.ls.PublicKeyFile}

	run(true, nil, "generate-key-pair")
	blob := filepath.Join(dir, "artifact.txt")
	if err := os.WriteFile(blob, []byte("release 1.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// sign-blob logs a hashedrekord entry and writes a legacy bundle.
	run(true, nil, "sign-blob", "--yes", "--key", "cosign.key", "--rekor-url", e.ls.URL,
		"--output-signature", "artifact.sig", "--bundle", "artifact.bundle", blob)
	if out := run(true, pinned, "verify-blob", "--key", "cosign.pub", "--bundle", "artifact.bundle", blob); !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob: %s", out)
	}
	// Online: cosign finds the entry through POST /api/v1/log/entries/retrieve.
	run(true, pinned, "verify-blob", "--key", "cosign.pub", "--signature", "artifact.sig", "--rekor-url", e.ls.URL, blob)
	// Another log key: the bundle's SET does not verify.
	other := filepath.Join(dir, "other.pub")
	run(true, nil, "generate-key-pair", "--output-key-prefix", "other")
	run(false, []string{"SIGSTORE_REKOR_PUBLIC_KEY=" + other}, "verify-blob", "--key", "cosign.pub", "--bundle", "artifact.bundle", blob)

	// attest-blob logs a dsse entry.
	pred := filepath.Join(dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"buildType":"https://example.com/build","builder":{"id":"ci"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, nil, "attest-blob", "--yes", "--key", "cosign.key", "--rekor-url", e.ls.URL,
		"--predicate", pred, "--type", "slsaprovenance", "--bundle", "att.bundle", blob)
	run(true, pinned, "verify-blob-attestation", "--key", "cosign.pub", "--bundle", "att.bundle",
		"--type", "slsaprovenance", blob)

	// New bundle format, trusted root made by cosign (log key, start time).
	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	run(true, nil, "trusted-root", "create", "--rekor",
		"url="+e.ls.URL+",public-key="+e.ls.PublicKeyFile+",start-time="+start, "--out", "trusted_root.json")
	run(true, nil, "sign-blob", "--yes", "--key", "cosign.key", "--rekor-url", e.ls.URL,
		"--new-bundle-format", "--bundle", "new.bundle", blob)
	run(true, nil, "verify-blob", "--key", "cosign.pub", "--bundle", "new.bundle",
		"--trusted-root", "trusted_root.json", blob)

	if size := e.treeSize(t); size != 3 {
		t.Fatalf("tree size %d, want 3 (signature, attestation, new-format signature)", size)
	}
}
