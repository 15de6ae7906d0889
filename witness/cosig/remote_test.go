package cosig_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/testing/stack"
	"github.com/stellaops/tlog/witness/cosig"
)

// TestRemoteThroughSigner cosigns with a key held by a real signer service
// (SoftHSM2 token, MariaDB audit trail): the lines verify against the vkey
// the Remote advertises, and a misnamed or unknown key is refused at start.
func TestRemoteThroughSigner(t *testing.T) {
	ctx := context.Background()
	tok := softhsm.NewToken(t, "witness-remote")
	pt, err := pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pt.Generate(ctx, "cosign-ed", pkcs11.Ed25519); err != nil {
		t.Fatal(err)
	}
	if err := pt.Close(); err != nil {
		t.Fatal(err)
	}

	m := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, m, "signer")
	db, err := audit.OpenDB(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	const token = "witness-test-token"
	sum := sha256.Sum256([]byte(token))
	cfg := &server.Config{
		Token: &pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: 1},
		Audit: server.AuditConfig{DSN: dsn},
		Keys: []server.KeyConfig{{Name: "witness", Purposes: []string{"cosignature"}, NoteName: "w.example/witness",
			Versions: []server.KeyVersionConfig{{Version: 1, Label: "cosign-ed"}}}},
		Tenants: []server.TenantConfig{{Name: "witness", Keys: []string{"witness"},
			Tokens: []server.TokenConfig{{ID: "w", SHA256: hex.EncodeToString(sum[:]), Scopes: []string{"sign:cosignature"}}}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() { hs.Close(); srv.Close() }()
	c := client.New(hs.URL, token, nil)

	if _, err := cosig.NewRemote(ctx, c, "witness", "other.example/witness", time.Second, 4); !errors.Is(err, cosig.ErrBadKey) {
		t.Fatalf("misnamed key: %v, want ErrBadKey", err)
	}
	if _, err := cosig.NewRemote(ctx, c, "nope", "w.example/witness", time.Second, 4); !errors.Is(err, cosig.ErrBadKey) {
		t.Fatalf("unknown key: %v, want ErrBadKey", err)
	}
	r, err := cosig.NewRemote(ctx, c, "witness", "w.example/witness", 5*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	text := []byte("log.example/origin\n7\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	lines, err := r.Sign(ctx, text, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(r.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(append(append(text, '\n'), lines...), note.VerifierList(v))
	if err != nil || len(n.Sigs) != 1 {
		t.Fatalf("cosignature from the signer does not verify: %v", err)
	}
}
