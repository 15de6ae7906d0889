package e2e

import (
	"testing"

	"github.com/sigstore/rekor/pkg/generated/client/entries"

	tentries "github.com/stellaops/tlog/testing/entries"
)

func TestSmoke(t *testing.T) {
	e := newEnv(t)
	s, err := tentries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	pe, err := s.HashedRekord([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	id, a := e.create(t, pe)
	t.Logf("created %s at %d", id, *a.LogIndex)
	e.verifyEntry(t, a)
	got, err := e.client.Entries.GetLogEntryByIndex(entries.NewGetLogEntryByIndexParams().WithLogIndex(0))
	if err != nil {
		t.Fatal(err)
	}
	_, b := only(t, got.Payload)
	e.verifyEntry(t, b)
}
