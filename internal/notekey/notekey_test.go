package notekey

import (
	"crypto/ed25519"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// The signed-note example from C2SP signed-note.md, checked by x/mod.
func TestVKeyMatchesXMod(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := note.NewEd25519VerifierKey("example.com/foo", pub)
	if err != nil {
		t.Fatal(err)
	}
	got := VKey("example.com/foo", KeyID("example.com/foo", Ed25519, pub), Ed25519, pub)
	if got != want {
		t.Fatalf("vkey %q, x/mod says %q", got, want)
	}
	if _, err := note.NewVerifier(got); err != nil {
		t.Fatal(err)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"example.com/log": true, "": false, "a b": false, "a+b": false, "a\tb": false, "a\x01b": false, "\xff": false,
	} {
		if ValidName(name) != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, !want, want)
		}
	}
}

func TestCosignatureMessage(t *testing.T) {
	got := string(CosignatureMessage([]byte("o\n1\nr\n"), 42))
	if want := "cosignature/v1\ntime 42\no\n1\nr\n"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
}
