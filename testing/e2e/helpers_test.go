package e2e

import (
	"context"
	"os"
	"testing"

	rclient "github.com/sigstore/rekor/pkg/client"
	gclient "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/testing/stack"
)

// env is one logserver over a private MariaDB.
type env struct {
	db     *stack.MariaDB
	ls     *stack.Logserver
	client *gclient.Rekor
	ver    signature.Verifier
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "rekor")
	ls := stack.StartLogserver(t, dsn, t.TempDir(), nil)
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
	if e.ver, err = signature.LoadVerifier(pub, 0x5); err != nil { // crypto.SHA256
		t.Fatal(err)
	}
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

func only(t *testing.T, le models.LogEntry) (string, models.LogEntryAnon) {
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
