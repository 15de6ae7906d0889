package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/internal/keyfile"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/mirror/export"
)

// TestExportOurTiles mirrors both logs of our logserver as tlog-tiles (the
// v1 log's tiles at /, the Rekor v2 log's at /api/v2/), each cosigned by
// its own witness binary: the snapshots carry the quorum, every tile and
// entry bundle verifies against the checkpoint, the kits verify offline,
// and a Rekor v1 LogEntry verifies against the v1 tiles kit as witnessed.
func TestExportOurTiles(t *testing.T) {
	const v1Origin = "stella.test/log"
	const v2Origin = "127.0.0.1"
	keys := t.TempDir()
	newNoteKey := func(name, origin string) (string, string) {
		path := filepath.Join(keys, name)
		key, err := keyfile.CreateEd25519(path)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := witnessing.NewCheckpointSigner(origin, key)
		if err != nil {
			t.Fatal(err)
		}
		return path, cs.VerifierKey()
	}
	v1Key, v1VKey := newNoteKey("v1.pem", v1Origin)
	v2Key, v2VKey := newNoteKey("v2.pem", v2Origin)
	w1 := startWitness(t, "witness.test/w1", v1Origin, v1VKey)
	w2 := startWitness(t, "witness.test/w2", v2Origin, v2VKey)
	v1Policy := filepath.Join(keys, "v1-policy")
	os.WriteFile(v1Policy, fmt.Appendf(nil, "log %s\nwitness W %s %s\nquorum W\n", v1VKey, w1.VKey, w1.URL), 0o600)
	v2Policy := filepath.Join(keys, "v2-policy")
	os.WriteFile(v2Policy, fmt.Appendf(nil, "log %s\nwitness W %s %s\nquorum W\n", v2VKey, w2.VKey, w2.URL), 0o600)
	r := newRekorLogWith(t, func(c *config.Config) {
		c.Witnessing = config.Witnessing{Origin: v1Origin, KeyFile: v1Key, PolicyFile: v1Policy, RetryMin: 100 * time.Millisecond, RetryMax: time.Second}
		c.RekorV2 = &config.RekorV2{URL: "http://" + v2Origin, KeyFile: v2Key, PolicyFile: v2Policy}
	})
	r.add(t, "v1", 40)
	postV2(t, r.ls.URL, 25)
	waitCosigned(t, r.ls.URL+"/checkpoint", 40, "witness.test/w1")
	waitCosigned(t, r.ls.URL+"/api/v2/checkpoint", 25, "witness.test/w2")

	for _, lg := range []struct {
		name, prefix, vkey, witness string
		size                        int64
		origin                      string
	}{
		{"v1", "/", v1VKey, w1.VKey, 40, v1Origin},
		{"v2", "/api/v2/", v2VKey, w2.VKey, 25, v2Origin},
	} {
		t.Run(lg.name, func(t *testing.T) {
			policy := filepath.Join(t.TempDir(), "policy")
			os.WriteFile(policy, fmt.Appendf(nil, "log %s\nlog %s\nwitness W %s\nquorum W\n", lg.vkey, r.vkey, lg.witness), 0o600)
			dir := t.TempDir()
			now := time.Now()
			e := newExporter(t, export.Config{Source: r.ls.URL + lg.prefix, Kind: export.KindTiles, Dir: dir, PolicyFile: policy}, &now)
			res, err := e.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if res.Snapshot.Size != lg.size || res.Snapshot.Origin != lg.origin || !res.Snapshot.Quorum {
				t.Fatalf("snapshot %+v", res.Snapshot)
			}
			kitFile := filepath.Join(t.TempDir(), "kit.tar")
			mustRun(t, "kit", "--dir", dir, "--out", kitFile)
			if out := mustRun(t, "verify", "--kit", kitFile); !strings.Contains(out, "VERIFIED: 1 snapshot") {
				t.Fatalf("verify:\n%s", out)
			}
			if lg.name != "v1" {
				return
			}
			entry := filepath.Join(t.TempDir(), "entry.json")
			data, _ := json.Marshal(r.posted[len(r.posted)-1])
			os.WriteFile(entry, data, 0o644)
			code, v, out := verdictOf(t, "--kit", kitFile, "--bundle", entry)
			if code != 0 || !v.Verified || !v.Witnessed {
				t.Fatalf("exit %d\n%s", code, out)
			}
		})
	}
}

// postV2 logs n hashedrekord 0.0.2 entries in the Rekor v2 log.
func postV2(t *testing.T, base string, n int) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	for i := range n {
		d := sha256.Sum256(fmt.Appendf(nil, "v2 artifact %d", i))
		sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(`{"hashedRekordRequestV002":{"digest":%q,"signature":{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}}}`,
			base64.StdEncoding.EncodeToString(d[:]), base64.StdEncoding.EncodeToString(sig), base64.StdEncoding.EncodeToString(der))
		resp, err := http.Post(base+"/api/v2/log/entries", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("v2 entry %d: %d %s", i, resp.StatusCode, b)
		}
	}
}

// waitCosigned waits until url serves a checkpoint of size carrying a
// cosignature of witness.
func waitCosigned(t *testing.T, url string, size int, witness string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // hang guard
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), fmt.Sprintf("\n%d\n", size)) && strings.Contains(string(b), "— "+witness+" ") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never served a checkpoint of size %d cosigned by %s", url, size, witness)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
