package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rentries "github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/stellaops/tlog/mirror/evidence"
	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// cosignRun runs the real cosign (v2.6.5) in dir.
func cosignRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(stack.Cosign.Install(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(dir, "tuf"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cosign %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// verdictOf runs verify --json and decodes the verdict.
func verdictOf(t *testing.T, args ...string) (int, *Verdict, string) {
	t.Helper()
	code, out := runCode(append([]string{"verify", "--json"}, args...)...)
	var v Verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verdict: %v\n%s", err, out)
	}
	return code, &v, out
}

// TestBundlesRekorV1 checks evidence from our logserver against a kit of
// it: a Rekor LogEntry, a cosign legacy bundle and a sigstore bundle v0.3
// made by the real cosign, then the tampering cases, freshness, and the
// seeds' Rego policy with the real OPA.
func TestBundlesRekorV1(t *testing.T) {
	r := newRekorLog(t)
	dir := t.TempDir()
	r.add(t, "pre", 3)
	cosignRun(t, dir, "generate-key-pair")
	blob := filepath.Join(dir, "artifact.txt")
	os.WriteFile(blob, []byte("release 1.2.3\n"), 0o644)
	cosignRun(t, dir, "sign-blob", "--yes", "--key", "cosign.key", "--rekor-url", r.ls.URL, "--bundle", "legacy.bundle", blob)
	cosignRun(t, dir, "sign-blob", "--yes", "--key", "cosign.key", "--rekor-url", r.ls.URL, "--new-bundle-format", "--bundle", "new.sigstore.json", blob)
	pred := filepath.Join(dir, "predicate.json")
	os.WriteFile(pred, []byte(`{"buildType":"https://example.com/build","builder":{"id":"ci"}}`), 0o644)
	cosignRun(t, dir, "attest-blob", "--yes", "--key", "cosign.key", "--rekor-url", r.ls.URL, "--new-bundle-format",
		"--predicate", pred, "--type", "slsaprovenance", "--bundle", "att.sigstore.json", blob)
	for _, f := range []string{"new.sigstore.json", "att.sigstore.json"} {
		if _, err := bundle.LoadJSONFromPath(filepath.Join(dir, f)); err != nil {
			t.Fatalf("sigstore-go reads cosign's %s: %v", f, err)
		}
	}
	// A signer identified by a certificate (subject and e-mail SAN).
	certSigner := certEntry(t, r, "release-bot@example.com")
	logEntry := filepath.Join(dir, "entry.json")
	data, _ := json.Marshal(r.posted[0])
	os.WriteFile(logEntry, data, 0o644)

	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+r.vkey+"\nquorum none\n"), 0o600)
	mdir := t.TempDir()
	now := time.Now()
	e := newExporter(t, export.Config{Source: r.ls.URL, Kind: export.KindRekorV1, Dir: mdir, PolicyFile: policy}, &now)
	if _, err := e.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	kitFile := filepath.Join(t.TempDir(), "kit.tar")
	mustRun(t, "kit", "--dir", mdir, "--out", kitFile)

	for _, b := range []string{logEntry, filepath.Join(dir, "legacy.bundle"), filepath.Join(dir, "new.sigstore.json"), filepath.Join(dir, "att.sigstore.json")} {
		args := []string{"--kit", kitFile, "--bundle", b, "--max-age", "1h", "--scan-id", "scan-1"}
		if !strings.HasSuffix(b, "entry.json") && !strings.HasSuffix(b, "att.sigstore.json") {
			args = append(args, "--artifact", blob)
		}
		code, v, out := verdictOf(t, args...)
		if code != 0 || !v.Verified || !v.Attestations.RekorVerified || v.Attestations.RekorAgeHours == nil || v.Index == nil || v.IntegratedTime == "" {
			t.Fatalf("%s: exit %d\n%s", b, code, out)
		}
		res := v.Bundles[0]
		if !res.Checks.Signature || !res.Checks.Inclusion || !res.Checks.SET || len(res.Signer.Keys) != 1 {
			t.Fatalf("%s: checks %+v", b, res)
		}
		if strings.HasSuffix(b, ".sigstore.json") {
			sigstoreGoAccepts(t, r, b, filepath.Join(dir, "cosign.pub"))
		}
	}
	human := mustRun(t, "verify", "--kit", kitFile, "--bundle", filepath.Join(dir, "legacy.bundle"))
	if !strings.Contains(human, "VERIFIED: 1 bundle") || !strings.Contains(human, "signer SHA256:") {
		t.Fatalf("human report:\n%s", human)
	}

	// Tampering.
	var le map[string]map[string]any
	json.Unmarshal(data, &le)
	var other []byte
	for _, p := range r.posted[1:2] {
		for _, a := range p {
			other = []byte(a.Body.(string))
		}
	}
	modified := filepath.Join(dir, "modified.json")
	for k := range le {
		le[k]["body"] = string(other)
	}
	d2, _ := json.Marshal(le)
	os.WriteFile(modified, d2, 0o644)

	// A bundle from another log (same entry kinds, another key).
	o := newRekorLog(t)
	o.add(t, "elsewhere", 1)
	foreign := filepath.Join(dir, "foreign.json")
	d3, _ := json.Marshal(o.posted[0])
	os.WriteFile(foreign, d3, 0o644)

	// An entry the kit does not hold yet.
	r.add(t, "late", 1)
	late := filepath.Join(dir, "late.json")
	d4, _ := json.Marshal(r.posted[len(r.posted)-1])
	os.WriteFile(late, d4, 0o644)

	wrongArtifact := filepath.Join(dir, "wrong.txt")
	os.WriteFile(wrongArtifact, []byte("release 6.6.6\n"), 0o644)

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"modified entry", []string{"--bundle", modified}, "SET: the signed entry timestamp does not verify"},
		{"modified entry", []string{"--bundle", modified}, "is not this entry"},
		{"bundle from another log", []string{"--bundle", foreign}, "the entry is from another log"},
		{"entry beyond the kit", []string{"--bundle", late}, "beyond the kit's newest snapshot"},
		{"wrong artifact", []string{"--bundle", filepath.Join(dir, "legacy.bundle"), "--artifact", wrongArtifact}, "is not the signed digest"},
		{"stale", []string{"--bundle", logEntry, "--max-age", "1h", "--now", time.Now().Add(30 * time.Hour).Format(time.RFC3339)}, "older than --max-age 1h"},
	} {
		code, v, out := verdictOf(t, append([]string{"--kit", kitFile, "--scan-id", "scan-2"}, c.args...)...)
		if code != ExitFail || v.Verified || v.Attestations.RekorVerified || !strings.Contains(strings.Join(v.Failures, "\n"), c.want) {
			t.Errorf("%s: exit %d, want failure %q:\n%s", c.name, code, c.want, out)
		}
	}

	checkWatch(t, kitFile, filepath.Join(dir, "cosign.pub"), blob, r.signer.PubPEM, certSigner)

	// The operator guide's policy, unchanged, with the real OPA.
	opa := opaTool.Install(t)
	pass := filepath.Join(dir, "pass.json")
	_, _, out := verdictOf(t, "--kit", kitFile, "--bundle", logEntry, "--scan-id", "scan-ok")
	os.WriteFile(pass, []byte(out), 0o644)
	old := filepath.Join(dir, "old.json")
	_, _, out = verdictOf(t, "--kit", kitFile, "--bundle", logEntry, "--scan-id", "scan-old", "--now", time.Now().Add(30*time.Hour).Format(time.RFC3339))
	os.WriteFile(old, []byte(out), 0o644)
	fail := filepath.Join(dir, "fail.json")
	_, _, out = verdictOf(t, "--kit", kitFile, "--bundle", foreign, "--scan-id", "scan-bad")
	os.WriteFile(fail, []byte(out), 0o644)
	for _, c := range []struct {
		input      string
		deny, warn []string
	}{
		{pass, nil, nil},
		{old, nil, []string{"Rekor proof older than 24h for scan-old"}},
		{fail, []string{"missing Rekor proof for scan-bad"}, nil},
	} {
		deny, warn := evalPolicy(t, opa, c.input)
		if strings.Join(deny, "|") != strings.Join(c.deny, "|") || strings.Join(warn, "|") != strings.Join(c.warn, "|") {
			t.Errorf("%s: deny %q warn %q, want %q %q", filepath.Base(c.input), deny, warn, c.deny, c.warn)
		}
	}
}

var opaTool = stack.Tool{Name: "opa", Package: "github.com/open-policy-agent/opa", Version: "v1.22.4"}

// evalPolicy evaluates testdata/attestation.rego (the operator guide's
// §4.3 snippet, verbatim: Rego v0 syntax, hence --v0-compatible) on input.
func evalPolicy(t *testing.T, opa, input string) (deny, warn []string) {
	t.Helper()
	out, err := exec.Command(opa, "eval", "--v0-compatible", "--format", "json", "-d", "testdata/attestation.rego", "-i", input,
		"data.stella.policies.attestation").CombinedOutput()
	if err != nil {
		t.Fatalf("opa eval: %v\n%s", err, out)
	}
	var res struct {
		Result []struct {
			Expressions []struct {
				Value struct {
					Deny []string `json:"deny"`
					Warn []string `json:"warn"`
				} `json:"value"`
			} `json:"expressions"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Result) != 1 {
		t.Fatalf("opa output: %v\n%s", err, out)
	}
	v := res.Result[0].Expressions[0].Value
	return v.Deny, v.Warn
}

// checkWatch watches the kit for cosign's key (two entries), the artifact
// digest (two), the test signer's key by fingerprint (three), then resumes
// from its state (nothing new).
func checkWatch(t *testing.T, kitFile, cosignPub, artifact string, signerPEM []byte, subject string) {
	t.Helper()
	dir := t.TempDir()
	data, _ := os.ReadFile(artifact)
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	pub, _, err := evidence.KeyMaterial(signerPEM)
	if err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "watch.txt")
	os.WriteFile(list, []byte("# watched\nfingerprint "+evidence.Fingerprint(pub)+"\n"), 0o644)
	metrics := filepath.Join(dir, "watch.prom")
	state := filepath.Join(dir, "state.json")
	code, out := runCode("watch", "--dir", kitFile, "--key", cosignPub, "--digest", digest, "--identities", list, "--state", state, "--metrics-file", metrics)
	// cosign's key: sign-blob twice and attest-blob; the artifact digest:
	// the two signatures; the test signer: three entries.
	if code != ExitMatches || strings.Count(out, "MATCH ") != 6 || !strings.Contains(out, "6 match(es)") {
		t.Fatalf("watch: exit %d\n%s", code, out)
	}
	m, _ := os.ReadFile(metrics)
	if !strings.Contains(string(m), `mirror_watch_matches{identity="digest `+digest+`"} 2`) || !strings.Contains(string(m), "mirror_watch_entries_scanned 7") {
		t.Fatalf("metrics:\n%s", m)
	}
	if code, out := runCode("watch", "--dir", kitFile, "--key", cosignPub, "--state", state); code != 0 || !strings.Contains(out, "0 entries") {
		t.Fatalf("watch from state: exit %d\n%s", code, out)
	}
	if code, out := runCode("watch", "--dir", kitFile, "--subject", subject); code != ExitMatches || !strings.Contains(out, "subject "+subject) || !strings.Contains(out, "1 match(es)") {
		t.Fatalf("watch by certificate subject: exit %d\n%s", code, out)
	}
	if code, out := runCode("watch", "--dir", kitFile, "--digest", "sha256:"+strings.Repeat("0", 64)); code != 0 || !strings.Contains(out, "0 match(es)") {
		t.Fatalf("watch without match: exit %d\n%s", code, out)
	}
}

// certEntry logs a hashedrekord whose verifier is a self-signed certificate
// for the e-mail address, and returns the address.
func certEntry(t *testing.T, r *rekorLog, email string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "release bot"}, EmailAddresses: []string{email},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := &entries.Signer{Key: key, PubPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	pe, err := s.HashedRekord([]byte("certified artifact"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Entries.CreateLogEntry(rentries.NewCreateLogEntryParams().WithProposedEntry(pe)); err != nil {
		t.Fatal(err)
	}
	return email
}
