package admission_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// reply is one HTTP answer.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// message is the "message" of an error body (v1 or v2 shape).
func (r reply) message(t *testing.T) (int, string) {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e.Code, e.Message
}

type client struct {
	base string
	http *http.Client
}

func (c client) post(t *testing.T, path string, body []byte, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

// metrics scrapes /metrics: sample -> value, samples keyed as printed
// (labels sorted by name).
func (c client) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := c.http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sample names a sample with its labels as Prometheus prints them.
func sample(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var kv []string
	for i := 0; i+1 < len(labels); i += 2 {
		kv = append(kv, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	sort.Strings(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}

// wantMetrics checks samples against want (name+labels -> value).
func wantMetrics(t *testing.T, c client, want map[string]float64) {
	t.Helper()
	got := c.metrics(t)
	// Every admitted submission's latency is observed.
	for _, tier := range []string{"graph", "edge"} {
		if v, ok := want[subm(tier, "admitted")]; ok {
			want[sample("attestor_rekor_submission_latency_seconds_count", "tier", tier)] = v
		}
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("metric %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func subm(tier, status string) string {
	return sample("attestor_rekor_submissions_total", "tier", tier, "status", status)
}

// pki is a CA with server and client certificates, written as PEM files.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: k, caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for cn (server: for 127.0.0.1); it returns
// the certificate and key files and the tls.Certificate.
func (p *pki) issue(t *testing.T, cn string, server bool) (string, string, tls.Certificate) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	cf, kf := p.write(t, cn+".pem", "CERTIFICATE", der), p.write(t, cn+".key", "PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return cf, kf, pair
}

func (p *pki) client(base string, certs ...tls.Certificate) client {
	return client{base: base, http: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.caPool, Certificates: certs}}}}
}

// avoidHourBoundary waits past the next UTC hour when fewer than 40s of
// the current one remain: the budgets below are per hour (and day), and a
// window rolling over mid-test would reset the counts it checks.
func avoidHourBoundary(t *testing.T) {
	left := time.Until(time.Now().UTC().Truncate(time.Hour).Add(time.Hour))
	if left < 40*time.Second {
		t.Logf("waiting %v for the next hour", left)
		time.Sleep(left + time.Second)
	}
}

// v1Encoder returns a function marshalling a proposed entry (and failing
// t on its error).
func v1Encoder(t *testing.T) func(models.ProposedEntry, error) []byte {
	return func(pe models.ProposedEntry, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(pe)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func v2Body(t *testing.T, artifact []byte) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	d := sha256.Sum256(artifact)
	sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(fmt.Sprintf(`{"hashedRekordRequestV002":{"digest":%q,"signature":{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}}}`,
		base64.StdEncoding.EncodeToString(d[:]), base64.StdEncoding.EncodeToString(sig), base64.StdEncoding.EncodeToString(der)))
}

// TestAdmissionHTTP drives a real logserver (TLS on loopback, MariaDB,
// Rekor v1 and v2) through the budget scenarios and checks answers and
// the scraped metrics after each.
func TestAdmissionHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB and a logserver")
	}
	avoidHourBoundary(t)
	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "rekor")
	dir := t.TempDir()
	p := newPKI(t)
	srvCert, srvKey, _ := p.issue(t, "server", true)
	_, _, mtlsCert := p.issue(t, "scanner.mtls", false)
	_, _, strangerCert := p.issue(t, "stranger", false)
	token := "scanner-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "scanner.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherSum := sha256.Sum256([]byte("ci-token-fedcba9876543210"))
	ls := stack.StartLogserver(t, dsn, dir, func(c *config.Config) {
		c.RekorV2 = &config.RekorV2{URL: "http://127.0.0.1", KeyFile: filepath.Join(dir, "v2.pem"), CreateKey: true}
		c.TLS = &config.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: filepath.Join(p.dir, "ca.pem")}
		c.Tenants = config.Tenants{DefaultTenant: "public", Identities: []config.TenantIdentity{
			{Name: "scanner", TokenFiles: []string{tokenFile}},
			{Name: "ci", TokenSHA256: []string{hex.EncodeToString(otherSum[:])}},
			{Name: "certified", ClientCerts: []string{"cn:scanner.mtls"}},
		}}
		c.Budgets = config.Budgets{Enabled: true,
			Default:            config.BudgetLimits{HourlyLimit: 5, EdgeBundleDailyLimit: 2},
			Tenants:            map[string]config.BudgetLimits{"scanner": {HourlyLimit: 3}, "certified": {HourlyLimit: 2}},
			EdgeKinds:          []string{"intoto"},
			EdgePredicateTypes: []string{"https://slsa.dev/provenance/v1"},
		}
	})
	base := strings.Replace(ls.URL, "http://", "https://", 1)
	anon := p.client(base)
	signer, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	v1Body := v1Encoder(t)
	n := 0
	hashed := func() []byte {
		n++
		return v1Body(signer.HashedRekord([]byte(fmt.Sprintf("artifact %d", n))))
	}
	want := map[string]float64{}
	for _, tier := range []string{"graph", "edge"} {
		for _, s := range []string{"admitted", "rejected", "queued", "unavailable", "logged", "failed", "uncertain"} {
			want[subm(tier, s)] = 0
		}
	}
	want["attestor_rekor_submissions_rejected"] = 0
	wantMetrics(t, anon, want)

	t.Run("default tenant, refunds, 429", func(t *testing.T) {
		first := hashed()
		if r := anon.post(t, "/api/v1/log/entries", first); r.code != http.StatusCreated {
			t.Fatalf("first entry: %d %s", r.code, r.body)
		}
		if r := anon.post(t, "/api/v1/log/entries", first); r.code != http.StatusConflict {
			t.Fatalf("duplicate: %d %s, want 409", r.code, r.body)
		}
		r := anon.post(t, "/api/v1/log/entries", hashed(), "X-Stella-Tier", "bulk")
		if code, msg := r.message(t); r.code != 400 || code != 400 || !strings.Contains(msg, "X-Stella-Tier") {
			t.Fatalf("bad tier header: %d %s", r.code, r.body)
		}
		if r := anon.post(t, "/api/v1/log/entries", []byte(`{"kind":"hashedrekord"`)); r.code != http.StatusBadRequest {
			t.Fatalf("malformed: %d %s", r.code, r.body)
		}
		// The 409 and the 400 were refunded, the bad header never charged:
		// 4 more fit in the hourly limit of 5.
		for i := range 4 {
			if r := anon.post(t, "/api/v1/log/entries", hashed()); r.code != http.StatusCreated {
				t.Fatalf("entry %d: %d %s", i+2, r.code, r.body)
			}
		}
		before := time.Now()
		r = anon.post(t, "/api/v1/log/entries", hashed())
		code, msg := r.message(t)
		if r.code != http.StatusTooManyRequests || code != 429 {
			t.Fatalf("over budget: %d %s, want 429", r.code, r.body)
		}
		reset := before.UTC().Truncate(time.Hour).Add(time.Hour)
		for _, s := range []string{`tenant "public"`, "graph budget", "hourly limit of 5 submissions", "resets at " + reset.Format(time.RFC3339)} {
			if !strings.Contains(msg, s) {
				t.Errorf("429 message %q lacks %q", msg, s)
			}
		}
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if left := time.Until(reset).Seconds(); err != nil || float64(ra) < left-1 || float64(ra) > left+2 {
			t.Errorf("Retry-After %q, want about %.0f s (until %v)", r.header.Get("Retry-After"), left, reset)
		}
		want[subm("graph", "admitted")] = 7 // 1 + duplicate + malformed + 4
		want[subm("graph", "logged")] = 5
		want[subm("graph", "failed")] = 2
		want[subm("graph", "rejected")] = 1
		want["attestor_rekor_submissions_rejected"] = 1
		want[sample("attestor_rekor_budget_remaining", "tenant", "public")] = 0
		want[sample("attestor_rekor_budget_utilization", "tenant", "public")] = 1
		wantMetrics(t, anon, want)
	})

	t.Run("v2 shares the budget, in its error shape", func(t *testing.T) {
		r := anon.post(t, "/api/v2/log/entries", v2Body(t, []byte("v2 artifact")))
		code, msg := r.message(t)
		if r.code != http.StatusTooManyRequests || code != 8 || !strings.Contains(msg, `tenant "public" is over its graph budget`) || r.header.Get("Retry-After") == "" {
			t.Fatalf("v2 over budget: %d %v %s", r.code, r.header, r.body)
		}
		if !bytes.Contains(r.body, []byte(`"details":[]`)) {
			t.Errorf("v2 error body %s: want rekor-tiles' status shape", r.body)
		}
		want[subm("graph", "rejected")]++
		want["attestor_rekor_submissions_rejected"]++
		wantMetrics(t, anon, want)
	})

	t.Run("queued when asked", func(t *testing.T) {
		// Over budget with Prefer: respond-async: the pending queue takes it.
		r := anon.post(t, "/api/v1/log/entries", hashed(), "Prefer", "respond-async")
		var q struct{ ID, Status string }
		if err := json.Unmarshal(r.body, &q); err != nil || r.code != http.StatusAccepted || q.Status != "transparency_pending" ||
			r.header.Get("Location") != "/api/v1/queue/entries/"+q.ID {
			t.Fatalf("queued: %d %v %s", r.code, r.header, r.body)
		}
		resp, err := anon.http.Get(base + r.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Status, Tenant, Tier string }
		if err := jsonDecode(resp, &got); err != nil || resp.StatusCode != 200 || got.Status != "transparency_pending" {
			t.Fatalf("queued entry: %d %+v %v", resp.StatusCode, got, err)
		}
		want[subm("graph", "queued")]++
		wantMetrics(t, anon, want)
	})

	t.Run("edge tier", func(t *testing.T) {
		// intoto by kind, dsse by predicate type, then the header: the third
		// edge bundle of the day is over the daily limit of 2.
		if r := anon.post(t, "/api/v1/log/entries", v1Body(signer.Intoto("0.0.2", []byte("bundle 1")))); r.code != http.StatusCreated {
			t.Fatalf("intoto: %d %s", r.code, r.body)
		}
		if r := anon.post(t, "/api/v1/log/entries", v1Body(signer.DSSE([]byte("bundle 2")))); r.code != http.StatusCreated {
			t.Fatalf("dsse: %d %s", r.code, r.body)
		}
		r := anon.post(t, "/api/v1/log/entries", hashed(), "X-Stella-Tier", "edge")
		_, msg := r.message(t)
		if r.code != http.StatusTooManyRequests || !strings.Contains(msg, "daily limit of 2 edge bundles") || !strings.Contains(msg, "edge budget") {
			t.Fatalf("third edge bundle: %d %s", r.code, r.body)
		}
		want[subm("edge", "admitted")] = 2
		want[subm("edge", "logged")] = 2
		want[subm("edge", "rejected")] = 1
		want["attestor_rekor_submissions_rejected"]++
		wantMetrics(t, anon, want)
	})

	t.Run("bearer tokens", func(t *testing.T) {
		for i := range 3 {
			path := "/api/v1/log/entries"
			body := hashed()
			if i == 2 {
				path, body = "/api/v2/log/entries", v2Body(t, []byte("scanner v2"))
			}
			if r := anon.post(t, path, body, "Authorization", "Bearer "+token); r.code != http.StatusCreated {
				t.Fatalf("scanner entry %d: %d %s", i, r.code, r.body)
			}
		}
		r := anon.post(t, "/api/v1/log/entries", hashed(), "Authorization", "Bearer "+token)
		if _, msg := r.message(t); r.code != 429 || !strings.Contains(msg, `tenant "scanner"`) || !strings.Contains(msg, "hourly limit of 3") {
			t.Fatalf("scanner over budget: %d %s", r.code, r.body)
		}
		// A wrong token is 401, never the default tenant.
		r = anon.post(t, "/api/v1/log/entries", hashed(), "Authorization", "Bearer "+token+"x")
		if code, msg := r.message(t); r.code != 401 || code != 401 || !strings.Contains(msg, "not valid for any tenant") {
			t.Fatalf("wrong token: %d %s", r.code, r.body)
		}
		r = anon.post(t, "/api/v2/log/entries", v2Body(t, []byte("x")), "Authorization", "Basic Zm9vOmJhcg==")
		if code, _ := r.message(t); r.code != 401 || code != 16 {
			t.Fatalf("v2 basic auth: %d %s, want 401 with gRPC code 16", r.code, r.body)
		}
		// The second token tenant has its own budget (the default one).
		if r := anon.post(t, "/api/v1/log/entries", hashed(), "Authorization", "Bearer ci-token-fedcba9876543210"); r.code != http.StatusCreated {
			t.Fatalf("ci entry: %d %s", r.code, r.body)
		}
		want[subm("graph", "admitted")] += 4
		want[subm("graph", "logged")] += 4
		want[subm("graph", "rejected")]++
		want["attestor_rekor_submissions_rejected"]++
		want[sample("attestor_rekor_budget_remaining", "tenant", "scanner")] = 0
		want[sample("attestor_rekor_budget_utilization", "tenant", "scanner")] = 1
		want[sample("attestor_rekor_budget_remaining", "tenant", "ci")] = 4
		want[sample("attestor_rekor_budget_utilization", "tenant", "ci")] = 0.2
		wantMetrics(t, anon, want)
	})

	t.Run("client certificates", func(t *testing.T) {
		mtls := p.client(base, mtlsCert)
		for i := range 2 {
			if r := mtls.post(t, "/api/v1/log/entries", hashed()); r.code != http.StatusCreated {
				t.Fatalf("certified entry %d: %d %s", i, r.code, r.body)
			}
		}
		r := mtls.post(t, "/api/v1/log/entries", hashed())
		if _, msg := r.message(t); r.code != 429 || !strings.Contains(msg, `tenant "certified"`) || !strings.Contains(msg, "hourly limit of 2") {
			t.Fatalf("certified over budget: %d %s", r.code, r.body)
		}
		r = p.client(base, strangerCert).post(t, "/api/v1/log/entries", hashed())
		if _, msg := r.message(t); r.code != 401 || !strings.Contains(msg, "not mapped to a tenant") {
			t.Fatalf("unmapped certificate: %d %s", r.code, r.body)
		}
		// Certificate and token naming different tenants.
		r = mtls.post(t, "/api/v1/log/entries", hashed(), "Authorization", "Bearer "+token)
		if _, msg := r.message(t); r.code != 401 || !strings.Contains(msg, "disagree") {
			t.Fatalf("token and certificate of two tenants: %d %s", r.code, r.body)
		}
		want[subm("graph", "admitted")] += 2
		want[subm("graph", "logged")] += 2
		want[subm("graph", "rejected")]++
		want["attestor_rekor_submissions_rejected"]++
		want[sample("attestor_rekor_budget_remaining", "tenant", "certified")] = 0
		wantMetrics(t, anon, want)
	})

	t.Run("authentication required", func(t *testing.T) {
		ls.Config.Tenants.RequireAuthentication = true
		ls.Config.Budgets.Tenants["certified"] = config.BudgetLimits{HourlyLimit: 3, BurstLimit: 200, BurstWindow: 10 * time.Minute, EdgeBundleDailyLimit: 2}
		ls.Restart()
		r := anon.post(t, "/api/v1/log/entries", hashed())
		if code, msg := r.message(t); r.code != 401 || code != 401 || !strings.Contains(msg, "only from authenticated tenants") {
			t.Fatalf("anonymous write: %d %s", r.code, r.body)
		}
		r = anon.post(t, "/api/v2/log/entries", v2Body(t, []byte("anon v2")))
		if code, _ := r.message(t); r.code != 401 || code != 16 {
			t.Fatalf("anonymous v2 write: %d %s", r.code, r.body)
		}
		// The budget gauges start from the database's state.
		wantMetrics(t, anon, map[string]float64{sample("attestor_rekor_budget_remaining", "tenant", "certified"): 1,
			sample("attestor_rekor_budget_remaining", "tenant", "public"): 0, sample("attestor_rekor_budget_utilization", "tenant", "scanner"): 1,
			sample("attestor_rekor_budget_remaining", "tenant", "ci"): 4, subm("graph", "admitted"): 0})
		// Reads stay open; the budget state survived the restart: the
		// certified tenant (limit raised to 3) has exactly one left.
		if resp, err := anon.http.Get(base + "/api/v1/log"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("read: %v %v", resp, err)
		}
		mtls := p.client(base, mtlsCert)
		if r := mtls.post(t, "/api/v1/log/entries", hashed()); r.code != http.StatusCreated {
			t.Fatalf("certified after restart: %d %s", r.code, r.body)
		}
		if r := mtls.post(t, "/api/v1/log/entries", hashed()); r.code != 429 {
			t.Fatalf("certified over the raised limit: %d %s", r.code, r.body)
		}
		// The counters restart with the process; the budget gauges are set
		// at the tenant's next decision.
		wantMetrics(t, anon, map[string]float64{subm("graph", "admitted"): 1, subm("graph", "logged"): 1, subm("graph", "rejected"): 1,
			"attestor_rekor_submissions_rejected": 1, sample("attestor_rekor_budget_remaining", "tenant", "certified"): 0})
	})
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
