package server_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/referrers"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/stack"
)

// Peer tools of the release verification tests, from the Go module proxy.
var (
	registryTool = stack.Tool{Name: "registry", Package: "github.com/distribution/distribution/v3/cmd/registry", Version: "v3.1.2"}
	orasTool     = stack.Tool{Name: "oras", Package: "oras.land/oras/cmd/oras", Version: "v1.3.6"}
)

// ociRegistry is a distribution/distribution v3 registry on 127.0.0.1.
type ociRegistry struct {
	host string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRegistry(t *testing.T) *ociRegistry {
	t.Helper()
	bin := registryTool.Install(t)
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yml")
	os.WriteFile(conf, fmt.Appendf(nil, `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: 127.0.0.1:%d
`, filepath.Join(dir, "data"), port), 0o600)
	r := &ociRegistry{host: fmt.Sprintf("127.0.0.1:%d", port), cmd: exec.Command(bin, "serve", conf), done: make(chan struct{})}
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(r.stop)
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + r.host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry did not start: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *ociRegistry) stop() {
	select {
	case <-r.done:
	default:
		r.cmd.Process.Kill()
		<-r.done
	}
}

// oras runs the oras CLI in dir (file arguments are relative to it) and
// returns its JSON output's "digest".
func oras(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin := orasTool.Install(t)
	cmd := exec.Command(bin, append(args, "--plain-http", "--format", "json")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("oras %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	var res struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Digest == "" {
		t.Fatalf("oras %s: output %s", args[0], out)
	}
	return res.Digest
}

// pushImage pushes a scanner "image" (an OCI artifact) and returns its digest.
func pushImage(t *testing.T, ref, content string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "scanner.tar"), []byte(content), 0o600)
	return oras(t, dir, "push", ref, "--artifact-type", "application/vnd.stella.scanner.v1", "scanner.tar:application/vnd.oci.image.layer.v1.tar")
}

// attach attaches b as a referrer of ref. distribution v3.1 has no
// Referrers API endpoint: oras (and the signer, through oras-go) use the
// OCI distribution spec 1.1 fallback, the referrers tag schema.
func attach(t *testing.T, ref, artifactType string, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "referrer.json"), b, 0o600)
	return oras(t, dir, "attach", ref, "--artifact-type", artifactType, "--distribution-spec", "v1.1-referrers-tag", "referrer.json:"+artifactType)
}

func publicPEM(t *testing.T, label string) string {
	t.Helper()
	s, err := setupToken.Signer(context.Background(), label)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// releaseStatement is a scanner release attestation about an image digest.
func releaseStatement(digest string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"stella/scanner","digest":{"sha256":%q}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"builder":{"id":"https://release.stella-ops.org"}}}`,
		strings.TrimPrefix(digest, "sha256:")))
}

// promotionBy is the promotion fixture produced by a scanner image.
func promotionBy(t *testing.T, image string) json.RawMessage {
	t.Helper()
	var doc map[string]any
	json.Unmarshal([]byte(stellaFixture(t, "promotion")), &doc)
	prod := doc["predicate"].(map[string]any)["producer"].(map[string]any)
	if image == "" {
		delete(prod, "image")
	} else {
		prod["image"] = image
	}
	b, _ := json.Marshal(doc)
	return b
}

const tokSecOps = "secops-token-0123456789abcdef0123456789abc"

// TestReleaseVerification runs the release-integrity check against a real
// OCI registry (distribution v3) with images and referrers pushed by oras:
// pass, fail (untrusted key, statement about another image), missing,
// allow-list, manual approval (and its expiry), registry down; every
// refusal is one audit row. It also checks GET verify/referrers.
func TestReleaseVerification(t *testing.T) {
	reg := startRegistry(t)
	repo := reg.host + "/stella/scanner"
	imgGood := pushImage(t, repo+":good", "scanner good")
	imgBad := pushImage(t, repo+":bad", "scanner bad")
	imgBare := pushImage(t, repo+":bare", "scanner without referrers")
	imgListed := pushImage(t, repo+":listed", "scanner built on site")
	imgLate := pushImage(t, repo+":late", "scanner checked while the registry is down")

	clk := &testClock{t: time.Now()}
	cfg := baseConfig(clk.now())
	for i := range cfg.Tenants {
		if cfg.Tenants[i].Name == "acme" {
			cfg.Tenants[i].RequireReleaseVerification = true
		}
	}
	cfg.Tenants = append(cfg.Tenants, server.TenantConfig{Name: "secops",
		Tokens: []server.TokenConfig{{ID: "secops", SHA256: hashTok(tokSecOps), Scopes: []string{"approve:release"}}}})
	cfg.Releases = &server.ReleasesConfig{Config: referrers.Config{
		Repositories:   []string{repo},
		PlainHTTP:      true,
		TrustedKeys:    []referrers.TrustedKey{{Name: "stella-release", PublicKey: publicPEM(t, "other-attest")}},
		TrustedDigests: []string{imgListed},
	}}
	e := newEnv(t, cfg, server.Options{Now: clk.now})
	if _, err := e.root.Exec(fmt.Sprintf("GRANT INSERT, SELECT ON `%s`.signer_release_approvals TO '%s'@'127.0.0.1'", e.dbName, e.svcUser)); err != nil {
		t.Fatal(err)
	}

	// The release key (tenant "other", key other-attest) attests the good
	// image: a sigstore bundle and a bare DSSE envelope, pushed with oras.
	rel, err := e.client(tokOther).SignDSSE(context.Background(), api.DSSERequest{Statement: releaseStatement(imgGood), Bundle: true})
	if err != nil {
		t.Fatal(err)
	}
	attach(t, repo+"@"+imgGood, referrers.BundleMediaType, rel.Bundle)
	attach(t, repo+"@"+imgGood, referrers.DSSEMediaType, rel.Envelope)
	attach(t, repo+"@"+imgGood, "application/vnd.example.sbom", []byte(`{"not":"examined"}`))
	// The bad image: signed by a key that is not trusted, and a trusted
	// statement about another image.
	untrusted, err := e.client(tokAcme).SignDSSE(context.Background(), api.DSSERequest{Key: "acme-attest", Statement: releaseStatement(imgBad), Bundle: true})
	if err != nil {
		t.Fatal(err)
	}
	attach(t, repo+"@"+imgBad, referrers.BundleMediaType, untrusted.Bundle)
	attach(t, repo+"@"+imgBad, referrers.BundleMediaType, rel.Bundle)

	sign := func(image string, status int, code string) string {
		t.Helper()
		return e.signOnce(tokAcme, api.DSSERequest{Key: "acme-attest", Statement: promotionBy(t, image)}, status, code)
	}
	rid := sign(repo+"@"+imgGood, 200, "")
	if d := e.detail(rid); !strings.Contains(d, "verified (signed by stella-release)") {
		t.Errorf("pass detail %q", d)
	}
	rid = sign(repo+"@"+imgListed, 200, "")
	if d := e.detail(rid); !strings.Contains(d, "allow-listed") {
		t.Errorf("allow-list detail %q", d)
	}
	sign("", 200, "") // no scanner image named: nothing to verify
	rid = sign(repo+"@"+imgBad, 403, "release_unverified")
	if d := e.detail(rid); !strings.Contains(d, "verdict untrusted") {
		t.Errorf("fail detail %q", d)
	}
	rid = sign(repo+"@"+imgBare, 403, "release_unverified")
	if d := e.detail(rid); !strings.Contains(d, "verdict missing") {
		t.Errorf("missing detail %q", d)
	}
	sign(reg.host+"/elsewhere/scanner@"+imgGood, 403, "release_unverified") // not a scanner repository
	// Other tenants do not require it.
	e.signOnce(tokOther, api.DSSERequest{Statement: promotionBy(t, repo+"@"+imgBad)}, 200, "")

	// GET verify/referrers.
	get := func(q, token string) (int, api.ReleaseVerdict, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url+api.PathVerifyReferrers+"?"+q, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		json.NewDecoder(resp.Body).Decode(&raw)
		var v api.ReleaseVerdict
		var m map[string]any
		json.Unmarshal(raw, &v)
		json.Unmarshal(raw, &m)
		return resp.StatusCode, v, m
	}
	st, v, _ := get("digest="+imgGood, tokAcme)
	if st != 200 || v.Verdict != "trusted" || !v.Trusted || len(v.Signers) != 1 || v.Signers[0] != "stella-release" || v.Repository != repo {
		t.Fatalf("good image: %d %+v", st, v)
	}
	results := map[string]int{}
	for _, r := range v.Referrers {
		results[r.ArtifactType+" "+r.Result]++
	}
	if results[referrers.BundleMediaType+" verified"] != 1 || results[referrers.DSSEMediaType+" verified"] != 1 || results["application/vnd.example.sbom skipped"] != 1 {
		t.Errorf("good image referrers %+v", v.Referrers)
	}
	st, v, _ = get("digest="+imgBad, tokAcme)
	if st != 200 || v.Verdict != "untrusted" || v.Trusted || len(v.Referrers) != 2 {
		t.Fatalf("bad image: %d %+v", st, v)
	}
	for _, r := range v.Referrers {
		if r.Result != "rejected" || (!strings.Contains(r.Problem, "no signature by a trusted scanner release key") && !strings.Contains(r.Problem, "not about "+imgBad)) {
			t.Errorf("bad image referrer %+v", r)
		}
	}
	if st, v, _ = get("digest="+imgBare, tokAcme); st != 200 || v.Verdict != "missing" {
		t.Errorf("bare image: %d %+v", st, v)
	}
	if st, v, _ = get("digest=sha256:"+strings.Repeat("0", 64), tokAcme); st != 200 || v.Verdict != "missing" {
		t.Errorf("unknown image: %d %+v", st, v)
	}
	if st, v, _ = get("digest="+imgListed, tokAcme); st != 200 || v.Verdict != "allow-listed" || !v.Trusted {
		t.Errorf("allow-listed image: %d %+v", st, v)
	}
	if st, _, m := get("digest=sha256:xyz", tokAcme); st != 400 || m["error"] != "bad_request" {
		t.Errorf("bad digest: %d %v", st, m)
	}
	if st, _, _ := get("digest="+imgGood, ""); st != 401 {
		t.Errorf("no credentials: %d", st)
	}
	if st, _, _ := get("digest="+imgGood, tokLog); st != 403 {
		t.Errorf("logserver credentials: %d", st)
	}

	// Manual approval of the bare image for acme, audited.
	approve := func(token string, req api.ApprovalRequest, status int, code string) map[string]any {
		t.Helper()
		body, _ := json.Marshal(req)
		before := e.auditCount()
		got, _, m := e.post(api.PathReleaseApprovals, token, string(body))
		if got != status || (code != "" && m["error"] != code) {
			t.Fatalf("approval: %d %v, want %d %s", got, m, status, code)
		}
		if e.auditCount() != before+1 {
			t.Fatal("approval not audited exactly once")
		}
		return m
	}
	approve(tokAcme, api.ApprovalRequest{Digest: imgBare, Ticket: "CHG-1", Reason: "r", ExpiresAt: clk.now().Add(time.Hour)}, 403, "scope_missing")
	approve(tokSecOps, api.ApprovalRequest{Digest: imgBare, Ticket: "CHG-1", Reason: "", ExpiresAt: clk.now().Add(time.Hour)}, 400, "bad_request")
	approve(tokSecOps, api.ApprovalRequest{Digest: imgBare, Ticket: "CHG-1", Reason: "r", ExpiresAt: clk.now().Add(30 * 24 * time.Hour)}, 400, "bad_request")
	approve(tokSecOps, api.ApprovalRequest{Digest: imgBare, Tenant: "other", Ticket: "CHG-0", Reason: "for another tenant", ExpiresAt: clk.now().Add(time.Hour)}, 200, "")
	sign(repo+"@"+imgBare, 403, "release_unverified")
	m := approve(tokSecOps, api.ApprovalRequest{Digest: imgBare, Tenant: "acme", Ticket: "CHG-7781", Reason: "scanner rebuilt on site, referrers pending",
		ExpiresAt: clk.now().Add(time.Hour)}, 200, "")
	row := e.audit(m["requestId"].(string))
	if row.Endpoint != "release-approval" || row.Caller != "token:secops" || !strings.Contains(row.Subjects.String, imgBare) {
		t.Errorf("approval audit row %+v", row)
	}
	rid = sign(repo+"@"+imgBare, 200, "")
	if d := e.detail(rid); !strings.Contains(d, "manual approval") || !strings.Contains(d, "CHG-7781") || !strings.Contains(d, "not verified (missing)") {
		t.Errorf("approved detail %q", d)
	}
	if _, v, _ := get("digest="+imgBare, tokAcme); v.Approval == nil || v.Approval.Ticket != "CHG-7781" {
		t.Errorf("verify does not show the approval: %+v", v)
	}
	clk.add(2 * time.Hour) // the approval expires (and cached verdicts too)
	sign(repo+"@"+imgBare, 403, "release_unverified")

	// The registry goes down: a verified verdict is cached for its TTL,
	// an image never verified is refused as unavailable (503), unless
	// approved.
	sign(repo+"@"+imgGood, 200, "")
	reg.stop()
	sign(repo+"@"+imgGood, 200, "")
	sign(repo+"@"+imgLate, 503, "registry_unavailable")
	if st, _, m := get("digest="+imgLate, tokAcme); st != 503 || m["error"] != "registry_unavailable" {
		t.Errorf("verify with the registry down: %d %v", st, m)
	}
	approve(tokSecOps, api.ApprovalRequest{Digest: imgLate, Ticket: "INC-9", Reason: "registry outage", ExpiresAt: clk.now().Add(time.Hour)}, 200, "")
	rid = sign(repo+"@"+imgLate, 200, "")
	if d := e.detail(rid); !strings.Contains(d, "not verified (error)") {
		t.Errorf("approved during outage: %q", d)
	}
	met := e.metrics()
	for _, want := range []string{
		`signer_release_verifications_total{verdict="trusted"}`,
		`signer_release_verifications_total{verdict="allow-listed"} 1`,
		`signer_release_verifications_total{verdict="approved"} 2`,
		`signer_release_verifications_total{verdict="untrusted"} 1`,
		`signer_release_verifications_total{verdict="missing"} 4`,
		`signer_release_verifications_total{verdict="error"} 1`,
		`signer_release_approvals_total 3`,
	} {
		if !strings.Contains(met, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
