package rekorv2_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/testing/stack"
)

// The v2 log's note key in the HSM: a real signer service over a SoftHSM2
// token signs every v2 checkpoint; sigstore-go verifies an entry under the
// signer's public key; a key with another note name is refused.
func TestV2KeyInSigner(t *testing.T) {
	ctx := context.Background()
	tok := softhsm.NewToken(t, "rekor-v2")
	pt, err := pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pt.Generate(ctx, "rekor-v2-ed", pkcs11.Ed25519); err != nil {
		t.Fatal(err)
	}
	if err := pt.Close(); err != nil {
		t.Fatal(err)
	}
	m := stack.TestMariaDB(t, false)
	sdsn := stack.TestDatabase(t, m, "signer")
	db, err := audit.OpenDB(sdsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	const token = "logserver-test-token"
	sum := sha256.Sum256([]byte(token))
	cfg := &server.Config{
		Token: &pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: 2},
		Audit: server.AuditConfig{DSN: sdsn},
		Keys: []server.KeyConfig{
			{Name: "rekor-v2", Purposes: []string{"checkpoint"}, NoteName: "127.0.0.1", Versions: []server.KeyVersionConfig{{Version: 1, Label: "rekor-v2-ed"}}},
			{Name: "misnamed", Purposes: []string{"checkpoint"}, NoteName: "other.example", Versions: []server.KeyVersionConfig{{Version: 1, Label: "rekor-v2-ed"}}},
		},
		Tenants: []server.TenantConfig{{Name: "logserver", Keys: []string{"rekor-v2", "misnamed"},
			Tokens: []server.TokenConfig{{ID: "ls", SHA256: hex.EncodeToString(sum[:]), Scopes: []string{"sign:checkpoint"}}}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	if _, err := rekorv2.OpenSignerKey(ctx, client.New(hs.URL, token, nil), "misnamed", "127.0.0.1", 0); err == nil || !strings.Contains(err.Error(), "signs notes as") {
		t.Fatalf("misnamed key: %v", err)
	}

	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ls := stack.StartLogserver(t, stack.TestDatabase(t, m, "v2hsm"), dir, func(c *config.Config) {
		c.RekorV2 = &config.RekorV2{URL: "http://127.0.0.1", Signer: &client.Config{URL: hs.URL, TokenFile: tokFile, Key: "rekor-v2"},
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
