package trust_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/trust"
	"github.com/stellaops/tlog/testing/stack"
)

type env struct {
	ls  *stack.Logserver
	dir string // trust dir
	url string
}

// newEnv starts a logserver with both logs on 127.0.0.1:PORT and the trust
// files generated; mutate, if given, changes the configuration further.
func newEnv(t *testing.T, mutate ...func(*config.Config)) *env {
	t.Helper()
	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "trust")
	dir := t.TempDir()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	u := "http://127.0.0.1:" + strconv.Itoa(port)
	e := &env{dir: filepath.Join(dir, "trust"), url: u}
	e.ls = stack.StartLogserver(t, dsn, dir, func(c *config.Config) {
		c.Listen = "127.0.0.1:" + strconv.Itoa(port)
		c.Witnessing = config.Witnessing{Origin: "v1.stella.test/log", KeyFile: filepath.Join(dir, "v1note.pem"), CreateKey: true}
		c.RekorV2 = &config.RekorV2{URL: u, KeyFile: filepath.Join(dir, "v2.pem"), CreateKey: true}
		c.Trust = &config.Trust{URL: u, Dir: e.dir}
		for _, m := range mutate {
			m(c)
		}
	})
	return e
}

func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", u, resp.StatusCode, b)
	}
	return b
}

// The generated files, read by sigstore-go v1.3.0: the signing config
// selects our v2 log, sigstore-go signs through it and verifies the bundle
// against the trusted root; the served and written files are the same.
func TestTrustFilesWithSigstoreGo(t *testing.T) {
	e := newEnv(t)
	trJSON := get(t, e.url+"/trust/trusted_root.json")
	scJSON := get(t, e.url+"/trust/signing_config.json")
	if onDisk, err := os.ReadFile(filepath.Join(e.dir, "trusted_root.json")); err != nil || !bytes.Equal(onDisk, trJSON) {
		t.Fatalf("trusted_root.json on disk differs: %v", err)
	}
	tr, err := root.NewTrustedRootFromJSON(trJSON)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := root.NewSigningConfigFromJSON(scJSON)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tr.RekorLogs()); n != 2 {
		t.Fatalf("%d logs in the trusted root", n)
	}
	svc, err := root.SelectService(sc.RekorLogURLs(), sign.RekorAPIVersions, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if svc.URL != e.url || svc.MajorAPIVersion != 2 {
		t.Fatalf("signing config selects %+v", svc)
	}
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	artifact := []byte("artifact")
	b, err := sign.Bundle(&sign.PlainData{Data: artifact}, kp, sign.BundleOptions{
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: svc.URL, Version: svc.MajorAPIVersion})},
	})
	if err != nil {
		t.Fatal(err)
	}
	sv, _ := signature.LoadVerifier(kp.GetPublicKey(), crypto.SHA256)
	keys := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{string(kp.GetHint()): root.NewExpiringKey(sv, time.Time{}, time.Time{})})
	v, err := verify.NewVerifier(root.TrustedMaterialCollection{tr, keys}, verify.WithTransparencyLog(1), verify.WithNoObserverTimestamps())
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := sgbundle.NewBundle(b)
	if _, err := v.Verify(sb, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(artifact)), verify.WithKey())); err != nil {
		t.Fatalf("verify against the generated trusted root: %v", err)
	}
	get(t, e.url+"/trust/rekor-v1.pub.pem")
	get(t, e.url+"/trust/rekor-v2.pub.pem")
}

// cosign v3.1.3, the real client: sign-blob and attest-blob through our
// v2 log with --signing-config, verify offline with --trusted-root; another
// artifact, another key and a tampered bundle fail.
func TestCosignV3(t *testing.T) {
	e := newEnv(t)
	cosign := stack.Cosign3.Install(t)
	work := t.TempDir()
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = work
		// No TUF, no network: HOME is empty, the files are given.
		cmd.Env = append(os.Environ(), "HOME="+work, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(work, "tuf"))
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("cosign %s: %v (want ok=%v)\n%s", strings.Join(args, " "), err, wantOK, out)
		}
		return string(out)
	}
	tr, sc := filepath.Join(e.dir, "trusted_root.json"), filepath.Join(e.dir, "signing_config.json")
	run(true, "generate-key-pair", "--output-key-prefix", "k")
	run(true, "generate-key-pair", "--output-key-prefix", "other")
	if err := os.WriteFile(filepath.Join(work, "f"), []byte("release 1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "g"), []byte("never logged\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, "sign-blob", "--yes", "--key", "k.key", "--signing-config", sc, "--trusted-root", tr, "--bundle", "f.bundle", "f")
	if out := run(true, "verify-blob", "--key", "k.pub", "--trusted-root", tr, "--bundle", "f.bundle", "f"); !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob: %s", out)
	}
	var bundle map[string]any
	data, _ := os.ReadFile(filepath.Join(work, "f.bundle"))
	if err := json.Unmarshal(data, &bundle); err != nil || !strings.Contains(string(data), `"version":"0.0.2"`) {
		t.Fatalf("bundle not from the v2 log: %s", data)
	}
	run(false, "verify-blob", "--key", "k.pub", "--trusted-root", tr, "--bundle", "f.bundle", "g")
	run(false, "verify-blob", "--key", "other.pub", "--trusted-root", tr, "--bundle", "f.bundle", "f")
	// The checkpoint in the bundle now claims size 2 (JSON-escaped newlines).
	tampered := strings.Replace(string(data), `127.0.0.1\n1\n`, `127.0.0.1\n2\n`, 1)
	if tampered == string(data) {
		t.Fatalf("could not tamper: %s", data)
	}
	if err := os.WriteFile(filepath.Join(work, "t.bundle"), []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	run(false, "verify-blob", "--key", "k.pub", "--trusted-root", tr, "--bundle", "t.bundle", "f")

	pred := `{"buildType":"https://stella.test/build","builder":{"id":"https://stella.test/ci"}}`
	if err := os.WriteFile(filepath.Join(work, "pred.json"), []byte(pred), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, "attest-blob", "--yes", "--key", "k.key", "--predicate", "pred.json", "--type", "https://stella.test/predicate/v1",
		"--signing-config", sc, "--trusted-root", tr, "--bundle", "a.bundle", "f")
	out := run(true, "verify-blob-attestation", "--key", "k.pub", "--type", "https://stella.test/predicate/v1", "--trusted-root", tr, "--bundle", "a.bundle", "f")
	if !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob-attestation: %s", out)
	}
	run(false, "verify-blob-attestation", "--key", "other.pub", "--type", "https://stella.test/predicate/v1", "--trusted-root", tr, "--bundle", "a.bundle", "f")
}

// cosign v2.6.5 logs attestations to a Rekor v2 log as dsse 0.0.2, which
// rekor-tiles v2.3.0 refuses (400) and this log takes: attest-blob through
// our v2 log, verify-blob-attestation offline.
func TestCosignV2DSSE(t *testing.T) {
	e := newEnv(t)
	cosign := stack.Cosign.Install(t)
	work := t.TempDir()
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "HOME="+work, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(work, "tuf"))
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("cosign %s: %v (want ok=%v)\n%s", strings.Join(args, " "), err, wantOK, out)
		}
		return string(out)
	}
	tr, sc := filepath.Join(e.dir, "trusted_root.json"), filepath.Join(e.dir, "signing_config.json")
	run(true, "generate-key-pair", "--output-key-prefix", "k")
	if err := os.WriteFile(filepath.Join(work, "f"), []byte("release 2.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "pred.json"), []byte(`{"builder":{"id":"https://stella.test/ci"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, "attest-blob", "--yes", "--key", "k.key", "--predicate", "pred.json", "--type", "https://stella.test/predicate/v1",
		"--new-bundle-format", "--signing-config", sc, "--trusted-root", tr, "--bundle", "a.bundle", "f")
	data, _ := os.ReadFile(filepath.Join(work, "a.bundle"))
	if !strings.Contains(string(data), `"kind":"dsse"`) {
		t.Fatalf("cosign v2 did not log a dsse entry: %s", data)
	}
	out := run(true, "verify-blob-attestation", "--key", "k.pub", "--type", "https://stella.test/predicate/v1", "--new-bundle-format",
		"--trusted-root", tr, "--bundle", "a.bundle", "f")
	if !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob-attestation: %s", out)
	}
}

// Two key versions of one log: two tlog entries with their own log IDs and
// windows in the trusted root, one service spanning both in the signing
// config.
func TestKeyVersionsOfOneLog(t *testing.T) {
	created := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	rotate := created.Add(30 * 24 * time.Hour)
	k1, _, _ := ed25519.GenerateKey(nil)
	k2, _, _ := ed25519.GenerateKey(nil)
	logs := []trust.Log{
		{BaseURL: "https://log.example", APIVersion: 2, PublicKey: k1, Start: created, End: rotate.Add(time.Hour)},
		{BaseURL: "https://log.example", APIVersion: 2, PublicKey: k2, Start: rotate},
	}
	trJSON, err := trust.TrustedRoot(logs)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromJSON(trJSON)
	if err != nil {
		t.Fatal(err)
	}
	rl := tr.RekorLogs()
	if len(rl) != 2 {
		t.Fatalf("%d logs in the trusted root", len(rl))
	}
	for i, l := range logs {
		id, _ := l.LogID()
		got := rl[hex.EncodeToString(id)]
		if got == nil || got.BaseURL != l.BaseURL || !got.ValidityPeriodStart.Equal(l.Start) || !got.ValidityPeriodEnd.Equal(l.End) {
			t.Fatalf("version %d: %+v", i+1, got)
		}
	}
	scJSON, err := trust.SigningConfig(logs, "op")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := root.NewSigningConfigFromJSON(scJSON)
	if err != nil {
		t.Fatal(err)
	}
	if s := sc.RekorLogURLs(); len(s) != 1 || !s[0].ValidityPeriodStart.Equal(created) || !s[0].ValidityPeriodEnd.IsZero() {
		t.Fatalf("signing config: %+v", s)
	}
	logs[1].End = rotate.Add(90 * 24 * time.Hour)
	scJSON, _ = trust.SigningConfig(logs, "op")
	sc, _ = root.NewSigningConfigFromJSON(scJSON)
	if s := sc.RekorLogURLs(); len(s) != 1 || !s[0].ValidityPeriodEnd.Equal(logs[1].End) {
		t.Fatalf("signing config, both versions ending: %+v", s)
	}
}
