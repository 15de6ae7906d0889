package e2e

import (
	"context"
	"crypto"
	"os"
	"testing"

	rclient "github.com/sigstore/rekor/pkg/client"
	gclient "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/stack"
)

// env is one logserver over a private MariaDB.
type env struct {
	db     *stack.MariaDB
	ls     *stack.Logserver
	client *gclient.Rekor
	ver    signature.Verifier
	pub    crypto.PublicKey // the log key
	logID  string           // hex SHA-256 of its PKIX DER
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with a configuration tweak (see stack.StartLogserver).
func newEnvWith(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "rekor")
	ls := stack.StartLogserver(t, dsn, t.TempDir(), mutate)
	e := &env{db: db, ls: ls}
	e.connect(t)
	return e
}

func (e *env) connect(t *testing.T) {
	t.Helper()
	c, err := rclient.GetRekorClient(e.ls.URL, rclient.WithRetryCount(0))
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	pemBytes, err := os.ReadFile(e.ls.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if e.ver, err = signature.LoadVerifier(pub, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	e.pub = pub
	e.logID = logIDOf(t, pemBytes)
}

// create posts pe and returns the single entry of the 201 answer.
func (e *env) create(t *testing.T, pe models.ProposedEntry) (string, models.LogEntryAnon) {
	t.Helper()
	resp, err := e.client.Entries.CreateLogEntry(entries.NewCreateLogEntryParams().WithProposedEntry(pe))
	if err != nil {
		t.Fatalf("create entry: %v", err)
	}
	return only(t, resp.Payload)
}

func only(t testing.TB, le models.LogEntry) (string, models.LogEntryAnon) {
	t.Helper()
	if len(le) != 1 {
		t.Fatalf("want one entry, got %d", len(le))
	}
	for id, a := range le {
		return id, a
	}
	panic("unreachable")
}

// verifyEntry checks inclusion proof, SET and checkpoint signature with
// Rekor's own verification code.
func (e *env) verifyEntry(t *testing.T, a models.LogEntryAnon) {
	t.Helper()
	if err := verify.VerifyLogEntry(context.Background(), &a, e.ver); err != nil {
		t.Fatalf("rekor verify.VerifyLogEntry: %v", err)
	}
}
