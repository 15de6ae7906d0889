// Package signerstack gives tests a real signer's parts: a fresh SoftHSM2
// token with generated keys and a private, migrated MariaDB audit database
// ([NewHSM]), a signer configuration over them ([HSM.Config], [Tenant]),
// and the signer service itself ([Serve]). Only _test.go files and other
// test helpers import it.
package signerstack

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/softhsm"
	"github.com/stellaops/tlog/testing/stack"
)

// Key is a key generated into the token.
type Key struct {
	Label string
	Type  pkcs11.KeyType
}

// HSM is a token holding generated keys and a migrated audit database.
type HSM struct {
	Token    *softhsm.Token
	AuditDSN string
	Audit    *sql.DB // open on AuditDSN until the test ends
}

// NewHSM makes the token (named label) with keys and the audit database
// in m (a fresh MariaDB when m is nil).
func NewHSM(t testing.TB, label string, m *stack.MariaDB, keys ...Key) *HSM {
	t.Helper()
	ctx := context.Background()
	tok := softhsm.NewToken(t, label)
	pt, err := pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: softhsm.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := pt.Generate(ctx, k.Label, k.Type); err != nil {
			t.Fatal(err)
		}
	}
	if err := pt.Close(); err != nil {
		t.Fatal(err)
	}
	if m == nil {
		m = stack.TestMariaDB(t, false)
	}
	h := &HSM{Token: tok, AuditDSN: stack.TestDatabase(t, m, "signer")}
	if h.Audit, err = audit.OpenDB(h.AuditDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Audit.Close() })
	if err := audit.Migrate(ctx, h.Audit); err != nil {
		t.Fatal(err)
	}
	return h
}

// Config is a signer configuration over the token (sessions PKCS#11
// sessions) and the audit database, with keys and tenants.
func (h *HSM) Config(sessions int, keys []server.KeyConfig, tenants ...server.TenantConfig) *server.Config {
	return &server.Config{
		Token: &pkcs11.Config{Module: h.Token.Module, TokenLabel: h.Token.Label, PIN: softhsm.PIN, Sessions: sessions},
		Audit: server.AuditConfig{DSN: h.AuditDSN},
		Keys:  keys, Tenants: tenants,
	}
}

// Tenant is a tenant allowed keys, with one bearer token (id "t") holding
// scopes.
func Tenant(name, token string, keys []string, scopes ...string) server.TenantConfig {
	sum := sha256.Sum256([]byte(token))
	return server.TenantConfig{Name: name, Keys: keys,
		Tokens: []server.TokenConfig{{ID: "t", SHA256: hex.EncodeToString(sum[:]), Scopes: scopes}}}
}

// New validates cfg and builds the signer; it is closed when the test
// ends.
func New(t testing.TB, cfg *server.Config) *server.Server {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// Serve builds the signer of cfg and serves it over HTTP on loopback until
// the test ends; it returns the base URL.
func Serve(t testing.TB, cfg *server.Config) string {
	t.Helper()
	srv := New(t, cfg)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// TokenFile writes token, as the services read it, into a file in dir.
func TokenFile(t testing.TB, dir, token string) string {
	t.Helper()
	p := filepath.Join(dir, "signer-token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
