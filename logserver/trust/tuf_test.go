package trust_test

import (
	"context"
	"crypto"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stellaops/tlog/logserver/app"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/signerstack"
	"github.com/stellaops/tlog/testing/stack"
)

// tufExpiry is the test's timestamp lifetime: the refresh loop replaces it
// every tufExpiry/2.
const tufExpiry = 8 * time.Second

func timestampVersion(t *testing.T, data []byte) (int64, time.Time) {
	t.Helper()
	var m struct {
		Signed struct {
			Version int64     `json:"version"`
			Expires time.Time `json:"expires"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m.Signed.Version, m.Signed.Expires
}

// freeze serves a copy of the repository as it is now (a stale or
// tampered mirror), changed by edit; it returns its URL and directory.
func freeze(t *testing.T, repo string, edit func(dir string)) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tuf")
	if err := os.CopyFS(dir, os.DirFS(repo)); err != nil {
		t.Fatal(err)
	}
	edit(dir)
	srv := httptest.NewServer(http.StripPrefix("/tuf", http.FileServer(http.Dir(dir))))
	t.Cleanup(srv.Close)
	return srv.URL + "/tuf", dir
}

// The appliance's TUF repository, read by the real cosign v3.1.3: after
// `cosign initialize --mirror $URL/tuf --root root.json`, a plain sign-blob
// logs to our v2 log and verify-blob verifies, with no other trust flag;
// the timestamp is refreshed while cosign keeps verifying; a stale mirror
// (expired timestamp) and a tampered target are refused.
func TestCosignV3TUF(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		keys := filepath.Join(filepath.Dir(c.Trust.Dir), "tufkeys")
		c.Trust.TUF = &config.TUF{
			RootKey:         config.Key{File: filepath.Join(keys, "root.pem"), Create: true},
			OnlineKey:       config.Key{File: filepath.Join(keys, "online.pem"), Create: true},
			TimestampExpiry: tufExpiry,
		}
	})
	cosign := stack.Cosign3.Install(t)
	work := t.TempDir()
	run := func(wantOK bool, tufRoot string, args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = work
		// HOME and TUF_ROOT are empty temporary directories: nothing but
		// what `cosign initialize` fetched from the appliance.
		cmd.Env = append(os.Environ(), "HOME="+work, "COSIGN_PASSWORD=", "TUF_ROOT="+tufRoot)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("cosign %s: %v (want ok=%v)\n%s", strings.Join(args, " "), err, wantOK, out)
		}
		return string(out)
	}
	root := filepath.Join(e.dir, "root.json")
	repo := filepath.Join(e.dir, "tuf")
	live := filepath.Join(work, "tuf-live")
	start := time.Now()
	out := run(true, live, "initialize", "--mirror", e.url+"/tuf", "--root", root)
	if strings.Contains(out, "WARNING") {
		t.Fatalf("cosign initialize: %s", out)
	}
	t.Logf("cosign initialize: %v", time.Since(start).Round(time.Millisecond))
	run(true, live, "generate-key-pair", "--output-key-prefix", "k")
	if err := os.WriteFile(filepath.Join(work, "f"), []byte("release 3.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	run(true, live, "sign-blob", "--yes", "--key", "k.key", "--bundle", "f.bundle", "f")
	t.Logf("cosign sign-blob (TUF refresh, v2 log write): %v", time.Since(start).Round(time.Millisecond))
	data, _ := os.ReadFile(filepath.Join(work, "f.bundle"))
	if !strings.Contains(string(data), `"version":"0.0.2"`) || !strings.Contains(string(data), `127.0.0.1`) {
		t.Fatalf("bundle not from our v2 log: %s", data)
	}
	verify := func(wantOK bool, tufRoot string) string {
		t.Helper()
		out := run(wantOK, tufRoot, "verify-blob", "--key", "k.pub", "--bundle", "f.bundle", "f")
		if wantOK && !strings.Contains(out, "Verified OK") {
			t.Fatalf("verify-blob: %s", out)
		}
		return out
	}
	start = time.Now()
	verify(true, live)
	t.Logf("cosign verify-blob (TUF refresh): %v", time.Since(start).Round(time.Millisecond))
	pred := `{"buildType":"https://stella.test/build","builder":{"id":"https://stella.test/ci"}}`
	if err := os.WriteFile(filepath.Join(work, "pred.json"), []byte(pred), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, live, "attest-blob", "--yes", "--key", "k.key", "--predicate", "pred.json", "--type", "https://stella.test/predicate/v1", "--bundle", "a.bundle", "f")
	if out := run(true, live, "verify-blob-attestation", "--key", "k.pub", "--type", "https://stella.test/predicate/v1", "--bundle", "a.bundle", "f"); !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob-attestation: %s", out)
	}

	// A mirror frozen now: its timestamp expires while ours is refreshed.
	stale := filepath.Join(work, "tuf-stale")
	staleURL, staleDir := freeze(t, repo, func(string) {})
	run(true, stale, "initialize", "--mirror", staleURL, "--root", root)
	ts, err := os.ReadFile(filepath.Join(staleDir, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	v0, exp0 := timestampVersion(t, ts)
	// A mirror with a changed trusted_root.json (our v2 log removed).
	tampered := filepath.Join(work, "tuf-tampered")
	tamperedURL, _ := freeze(t, repo, func(dir string) {
		paths, _ := filepath.Glob(filepath.Join(dir, "targets", "*.trusted_root.json"))
		for _, p := range paths {
			b, _ := os.ReadFile(p)
			var tr map[string]any
			if err := json.Unmarshal(b, &tr); err != nil {
				t.Fatal(err)
			}
			tr["tlogs"] = tr["tlogs"].([]any)[1:]
			b, _ = json.Marshal(tr)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if len(paths) == 0 {
			t.Fatal("no trusted_root.json target")
		}
	})
	if out := run(false, tampered, "initialize", "--mirror", tamperedURL, "--root", root); !strings.Contains(out, "hash verification failed") {
		t.Fatalf("tampered mirror: %s", out)
	}
	verify(false, tampered)

	time.Sleep(time.Until(exp0) + time.Second)
	v1, exp1 := timestampVersion(t, get(t, e.url+"/tuf/timestamp.json"))
	if v1 <= v0 || !exp1.After(time.Now()) {
		t.Fatalf("timestamp not refreshed: version %d → %d, expires %v", v0, v1, exp1)
	}
	t.Logf("timestamp version %d → %d while the first expired", v0, v1)
	if m := string(get(t, e.url+"/metrics")); !strings.Contains(m, `logserver_tuf_expires_in_seconds{role="timestamp"}`) {
		t.Fatalf("no TUF expiry metric: %s", m)
	}
	verify(true, live)
	if out := verify(false, stale); !strings.Contains(out, "expired") {
		t.Fatalf("stale mirror: %s", out)
	}

	// Changed trust files at a restart (here the operator's name): a new
	// targets version, which cosign fetches; the root stays version 1.
	e.ls.Config.Trust.Operator = "stella-ops-renamed"
	e.ls.Restart()
	if _, err := os.Stat(filepath.Join(repo, "2.targets.json")); err != nil {
		t.Fatalf("no new targets version: %v", err)
	}
	if _, err := os.Stat(filepath.Join(repo, "2.root.json")); err == nil {
		t.Fatal("a restart signed a new root")
	}
	run(true, live, "sign-blob", "--yes", "--key", "k.key", "--bundle", "f2.bundle", "f")
	cached, _ := filepath.Glob(filepath.Join(live, "*", "targets", "signing_config.v0.2.json"))
	if len(cached) != 1 {
		t.Fatalf("cosign's cached signing config: %v", cached)
	}
	if b, _ := os.ReadFile(cached[0]); !strings.Contains(string(b), "stella-ops-renamed") {
		t.Fatalf("cosign did not fetch the new signing config: %s", b)
	}
	verify(true, live)
}

// startSigner runs a real signer service over a SoftHSM2 token holding
// two ECDSA P-256 keys with purpose digests, "tuf-root" and "tuf-online",
// and returns its URL, a token file and the keys' public keys.
func startSigner(t *testing.T, dir string) (string, string, map[string]crypto.PublicKey) {
	t.Helper()
	ctx := context.Background()
	hsm := signerstack.NewHSM(t, "tuf", nil, signerstack.Key{Label: "tuf-root-1", Type: pkcs11.ECDSAP256},
		signerstack.Key{Label: "tuf-online-1", Type: pkcs11.ECDSAP256})
	const token = "tuf-test-token"
	url := signerstack.Serve(t, hsm.Config(2, []server.KeyConfig{
		{Name: "tuf-root", Purposes: []string{"digests"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "tuf-root-1"}}},
		{Name: "tuf-online", Purposes: []string{"digests"}, Versions: []server.KeyVersionConfig{{Version: 1, Label: "tuf-online-1"}}},
	}, signerstack.Tenant("logserver", token, []string{"tuf-root", "tuf-online"}, "sign:digests")))
	tokFile := signerstack.TokenFile(t, dir, token)
	pubs := map[string]crypto.PublicKey{}
	c := client.New(url, token, nil)
	for _, k := range []string{"tuf-root", "tuf-online"} {
		ds, err := c.NewDigestSigner(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		pubs[k] = ds.Public()
	}
	return url, tokFile, pubs
}

// The TUF metadata keys in the HSM: the signer signs root, targets,
// snapshot and timestamp; root.json names exactly its two keys; cosign
// v3.1.3 initializes from it and verifies a blob signed through our v2 log.
func TestTUFKeysInSigner(t *testing.T) {
	keyDir := t.TempDir()
	signerURL, tokFile, pubs := startSigner(t, keyDir)
	e := newEnv(t, func(c *config.Config) {
		c.Trust.TUF = &config.TUF{
			RootKey:   config.Key{Signer: &client.Config{URL: signerURL, TokenFile: tokFile, Key: "tuf-root"}},
			OnlineKey: config.Key{Signer: &client.Config{URL: signerURL, TokenFile: tokFile, Key: "tuf-online"}},
		}
	})
	rootJSON, err := os.ReadFile(filepath.Join(e.dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := metadata.Root().FromBytes(rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for name, pub := range pubs {
		k, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		ids[name], _ = k.ID()
	}
	if len(root.Signed.Keys) != 2 || root.Signed.Roles["root"].KeyIDs[0] != ids["tuf-root"] || root.Signed.Roles["timestamp"].KeyIDs[0] != ids["tuf-online"] {
		t.Fatalf("root.json does not name the signer's keys %v: %s", ids, rootJSON)
	}
	if err := root.VerifyDelegate("root", root); err != nil {
		t.Fatalf("root.json not signed by the HSM's root key: %v", err)
	}
	cosign := stack.Cosign3.Install(t)
	work := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "HOME="+work, "COSIGN_PASSWORD=", "TUF_ROOT="+filepath.Join(work, "tuf"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("initialize", "--mirror", e.url+"/tuf", "--root", filepath.Join(e.dir, "root.json"))
	run("generate-key-pair", "--output-key-prefix", "k")
	if err := os.WriteFile(filepath.Join(work, "f"), []byte("hsm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("sign-blob", "--yes", "--key", "k.key", "--bundle", "f.bundle", "f")
	if out := run("verify-blob", "--key", "k.pub", "--bundle", "f.bundle", "f"); !strings.Contains(out, "Verified OK") {
		t.Fatalf("verify-blob: %s", out)
	}
}

// The log key is refused as a TUF key (both sign SHA-256 of canonical
// JSON), and nothing is published.
func TestTUFRefusesLogKey(t *testing.T) {
	e := newEnv(t)
	e.ls.Stop()
	cfg := *e.ls.Config
	trust := *cfg.Trust
	cfg.Trust = &trust
	tufDir := filepath.Join(t.TempDir(), "tuf")
	trust.TUF = &config.TUF{Dir: tufDir, RootKey: cfg.Key, OnlineKey: config.Key{File: filepath.Join(t.TempDir(), "online.pem"), Create: true}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), &cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = a.Shutdown(context.Background())
		t.Fatal("the log key was taken as the TUF root key")
	}
	if !strings.Contains(err.Error(), "is the log key") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(filepath.Join(tufDir, "1.root.json")); err == nil {
		t.Fatal("a root was published")
	}
}
