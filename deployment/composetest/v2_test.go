package composetest

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	tl := b.GetVerificationMaterial().GetTlogEntries()
	if len(tl) != 1 || tl[0].GetKindVersion().GetVersion() != "0.0.2" {
		t.Fatalf("tlog entries %v: want one hashedrekord 0.0.2 (Rekor v2)", tl)
	}
	want := tl[0].GetLogIndex() + 1

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
			if lines := strings.SplitN(n.Text, "\n", 3); len(lines) == 3 {
				if size, err := strconv.ParseInt(lines[1], 10, 64); err == nil && size >= want {
					return
				}
			}
		}
		last = fmt.Sprintf("%v: %s", err, body)
	}
	t.Fatalf("no witnessed v2 checkpoint of size >= %d within a minute: %s", want, last)
}

// mirrorKit: the mirror job exports the v2 log at its start (restarted here,
// now that the log holds a witnessed entry) into its volume, as its metrics
// show; a kit packed in the container verifies offline: a container of the
// mirror image with no network, the auditor's own policy from trust/ and the
// manifest digest `mirror kit` printed.
func mirrorKit(t *testing.T, p *project) {
	t.Helper()
	size := v2Size(t, p)
	t0 := time.Now()
	p.must("restart", "mirror")
	var last string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		body, err := get(p.mirrorMetricsURL)
		last = fmt.Sprint(err, string(body))
		if err == nil && metricValue(string(body), "mirror_export_snapshot_size") >= float64(size) &&
			metricValue(string(body), "mirror_export_last_success_timestamp_seconds") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mirror exported no snapshot of size >= %d within 2 minutes:\n%s", size, last)
		}
	}
	t.Logf("figure: mirror restart to a verified v2 snapshot of size %d: %v", size, time.Since(t0).Round(100*time.Millisecond))
	out := p.must("exec", "-T", "mirror", "mirror", "kit", "--dir", "/var/lib/stella/mirror/v2", "--out", "/var/lib/stella/mirror/kit.tar")
	m := regexp.MustCompile(`MANIFEST\.sha256 SHA-256 ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("mirror kit:\n%s", out)
	}
	img, err := docker("inspect", "-f", "{{.Config.Image}}", p.container("mirror"))
	if err != nil {
		t.Fatal(img, err)
	}
	out, err = docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
		"-v", p.name+"_mirror-data:/var/lib/stella/mirror:ro", "-v", p.name+"_trust:/var/lib/stella/trust:ro", img,
		"verify", "--kit", "/var/lib/stella/mirror/kit.tar", "--manifest-sha256", m[1], "--policy", "/var/lib/stella/trust/witness-policy-v2")
	if err != nil || !strings.Contains(out, "VERIFIED: 1 snapshot") {
		t.Fatalf("offline mirror verify --kit: %v\n%s", err, out)
	}
	// A kit checked against another manifest digest is refused.
	bad := strings.Repeat("0", 64)
	if out, err := docker("run", "--rm", "--network", "none", "--tmpfs", "/tmp", "-v", p.name+"_mirror-data:/var/lib/stella/mirror:ro", img,
		"verify", "--kit", "/var/lib/stella/mirror/kit.tar", "--manifest-sha256", bad); err == nil {
		t.Fatalf("verify accepted a wrong manifest digest:\n%s", out)
	}
}

// v2Size is the size of the v2 log's checkpoint.
func v2Size(t *testing.T, p *project) int64 {
	t.Helper()
	body, err := get(p.logURL + "/api/v2/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(body), "\n", 3)
	if len(lines) < 3 {
		t.Fatalf("v2 checkpoint %q", body)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 1 {
		t.Fatalf("v2 checkpoint size %q: %v", lines[1], err)
	}
	return n
}

// metricValue is the value of an unlabelled metric in a Prometheus text
// exposition, or -1.
func metricValue(exposition, name string) float64 {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
