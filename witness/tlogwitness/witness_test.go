package tlogwitness_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/store"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// countingBudget allows everything and counts the charges.
type countingBudget struct {
	mu sync.Mutex
	n  int
}

func (b *countingBudget) Allow(string) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return true, 0
}

// TestReuseCosignature: an identical request within ReuseCosignature of
// the cosignature gets the stored one (no signature, no budget); after the
// window, or with other note text for the same tree, a fresh one (charged).
// Stale requests are never charged.
func TestReuseCosignature(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "w.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := testlog.NewEd25519("example.com/reuse")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddLog(store.Log{Origin: l.Origin, VerifierKeys: []string{l.VKey}, Source: store.SourceAdmin}); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := cosig.NewSigner("w.example/reuse", key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	budget := &countingBudget{}
	w := tlogwitness.New(st, signer, tlogwitness.Options{Budgets: budget, ReuseCosignature: time.Minute, Now: func() time.Time { return now }})
	add := func(body []byte) (tlogwitness.Cosigned, error) {
		req, err := c2sp.ParseAddCheckpoint(body)
		if err != nil {
			t.Fatal(err)
		}
		return w.AddCheckpoint(context.Background(), req)
	}
	l.Append(5)
	first, err := add(l.Request(0, 5))
	if err != nil || first.Reused || budget.n != 1 {
		t.Fatalf("first: %+v %v, charged %d", first, err, budget.n)
	}
	now = now.Add(30 * time.Second)
	again, err := add(l.Request(5, 5))
	if err != nil || !again.Reused || !bytes.Equal(again.Signature, first.Signature) || budget.n != 1 {
		t.Fatalf("identical within the window: %+v %v, charged %d", again, err, budget.n)
	}
	var conflict *tlogwitness.ConflictError
	if _, err := add(l.Request(0, 5)); !errors.As(err, &conflict) || conflict.Size != 5 || budget.n != 1 {
		t.Fatalf("stale old size: %v, charged %d", err, budget.n)
	}
	l.Extensions = []string{"extra: 1"} // same tree, other note text
	other, err := add(l.Request(5, 5))
	if err != nil || other.Reused || budget.n != 2 {
		t.Fatalf("other text: %+v %v, charged %d", other, err, budget.n)
	}
	now = now.Add(2 * time.Minute)
	late, err := add(l.Request(5, 5))
	if err != nil || late.Reused || bytes.Equal(late.Signature, other.Signature) || budget.n != 3 {
		t.Fatalf("identical after the window: %+v %v, charged %d", late, err, budget.n)
	}
}
