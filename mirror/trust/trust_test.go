package trust

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func keys(t *testing.T, name string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func TestVerify(t *testing.T) {
	logS, logV := keys(t, "example.com/log")
	skeyW, vkeyW, _ := note.GenerateKey(rand.Reader, "w.example/1")
	ws, _ := fnote.NewSignerForCosignatureV1(skeyW)
	wv, _ := fnote.VKeyToCosignatureV1(vkeyW)
	tr, err := Parse(fmt.Appendf(nil, "log %s\nwitness W %s\nquorum W\n", logV, wv), "")
	if err != nil {
		t.Fatal(err)
	}
	sign := func(origin string, signers ...note.Signer) []byte {
		b, err := note.Sign(&note.Note{Text: origin + "\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	c, err := tr.Verify(sign("example.com/log", logS, ws))
	if err != nil || c.Size != 5 || !c.Witnessed() || c.Oldest().IsZero() {
		t.Fatalf("%+v %v", c, err)
	}
	var q *QuorumError
	if _, err := tr.Verify(sign("example.com/log", logS)); !errors.As(err, &q) || q.Missing[0] != "W" {
		t.Fatalf("no cosignature: %v", err)
	}
	if _, err := tr.Verify(sign("example.com/log", ws)); err == nil || !strings.Contains(err.Error(), "no log signature") {
		t.Fatalf("witness only: %v", err)
	}
	if _, err := tr.Verify(sign("example.com/other", logS, ws)); err == nil || !strings.Contains(err.Error(), "origin") {
		t.Fatalf("other origin: %v", err)
	}
	if _, err := tr.Verify(sign("example.com/log - 42", logS, ws)); err != nil {
		t.Fatalf("Rekor-style origin: %v", err)
	}
	otherS, _ := keys(t, "example.com/log")
	if _, err := tr.Verify(sign("example.com/log", otherS)); err == nil || !strings.Contains(err.Error(), "not signed by a log key") {
		t.Fatalf("another key: %v", err)
	}
	bad := sign("example.com/log", logS, ws)
	bad[len(bad)-3] ^= 1
	if _, err := tr.Verify(bad); err == nil {
		t.Fatal("altered cosignature accepted")
	}
	pinned, _ := Parse(tr.PolicyText, "example.com/log - 7")
	if _, err := pinned.Verify(sign("example.com/log - 42", logS, ws)); err == nil {
		t.Fatal("pinned origin not enforced")
	}
	if _, err := Parse([]byte("quorum none\n"), ""); err == nil {
		t.Fatal("a policy without a log accepted")
	}
}
