package rekorv2_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	sgtlog "github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/rekorv2"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/signerstack"
	"github.com/stellaops/tlog/testing/stack"
)

// The v2 log's note key in the HSM: a real signer service over a SoftHSM2
// token signs every v2 checkpoint; sigstore-go verifies an entry under the
// signer's public key; a key with another note name is refused.
func TestV2KeyInSigner(t *testing.T) {
	ctx := context.Background()
	m := stack.TestMariaDB(t, false)
	hsm := signerstack.NewHSM(t, "rekor-v2", m, signerstack.Key{Label: "rekor-v2-ed", Type: pkcs11.Ed25519})
	const token = "logserver-test-token"
	signerURL := signerstack.Serve(t, hsm.Config(2, []server.KeyConfig{
		{Name: "rekor-v2", Purposes: []string{"checkpoint"}, NoteName: "127.0.0.1", Versions: []server.KeyVersionConfig{{Version: 1, Label: "rekor-v2-ed"}}},
		{Name: "misnamed", Purposes: []string{"checkpoint"}, NoteName: "other.example", Versions: []server.KeyVersionConfig{{Version: 1, Label: "rekor-v2-ed"}}},
	}, signerstack.Tenant("logserver", token, []string{"rekor-v2", "misnamed"}, "sign:checkpoint")))
	if _, err := rekorv2.OpenSignerKey(ctx, client.New(signerURL, token, nil), "misnamed", "127.0.0.1", 0); err == nil || !strings.Contains(err.Error(), "signs notes as") {
		t.Fatalf("misnamed key: %v", err)
	}

	dir := t.TempDir()
	tokFile := signerstack.TokenFile(t, dir, token)
	ls := stack.StartLogserver(t, stack.TestDatabase(t, m, "v2hsm"), dir, func(c *config.Config) {
		c.RekorV2 = &config.RekorV2{URL: "http://127.0.0.1", Signer: &client.Config{URL: signerURL, TokenFile: tokFile, Key: "rekor-v2"},
			PublicKeyFile: filepath.Join(dir, "v2.pub.pem")}
	})
	key := newKey(t)
	req, _, _ := request(t, []byte("hsm"), key, key)
	resp, err := http.Post(ls.URL+"/api/v2/log/entries", "application/json", strings.NewReader(string(req)))
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	_, _ = io.Copy(&body, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body.String())
	}
	var tle rekorpb.TransparencyLogEntry
	if err := protojson.Unmarshal([]byte(body.String()), &tle); err != nil {
		t.Fatal(err)
	}
	entry, err := sgtlog.ParseTransparencyLogEntry(&tle)
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := os.ReadFile(filepath.Join(dir, "v2.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(mustPEM(t, pemData))
	if err != nil {
		t.Fatal(err)
	}
	ver, _ := signature.LoadVerifier(pub, crypto.Hash(0))
	if err := sgtlog.VerifyCheckpointAndInclusion(entry, ver, "127.0.0.1"); err != nil {
		t.Fatalf("sigstore-go with the HSM key: %v", err)
	}
}
