package witnessing

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func TestCheckpointSigner(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := NewCheckpointSigner("log.stella.example/prod", key)
	if err != nil {
		t.Fatal(err)
	}
	root := [32]byte{1, 2, 3}
	n, err := s.SignCheckpoint(1234, root)
	if err != nil {
		t.Fatal(err)
	}
	want := "log.stella.example/prod\n1234\nAQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u2014 log.stella.example/prod "
	if !strings.HasPrefix(string(n), want) || strings.Count(string(n), "\u2014") != 1 {
		t.Fatalf("note:\n%s", n)
	}
	// x/mod verifies the vkey and signature (Ed25519 type 0x01, key ID).
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(n, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	// formats parses it as a tlog-checkpoint of this origin.
	fv, _ := fnote.NewVerifier(s.VerifierKey())
	cp, _, _, err := flog.ParseCheckpoint(n, "log.stella.example/prod", fv)
	if err != nil || cp.Size != 1234 || [32]byte(cp.Hash) != root {
		t.Fatalf("ParseCheckpoint: %+v %v", cp, err)
	}
	// The vkey is what x/mod would make for the same key.
	signerKey, _ := note.NewEd25519VerifierKey("log.stella.example/prod", key.Public().(ed25519.PublicKey))
	if signerKey != s.VerifierKey() {
		t.Fatalf("vkey %s, want %s", s.VerifierKey(), signerKey)
	}

	if _, err := NewCheckpointSigner("has space", key); err == nil {
		t.Error("origin with a space accepted")
	}
	if _, err := NewCheckpointSigner("a+b", key); err == nil {
		t.Error("origin with + accepted")
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := NewCheckpointSigner("log.example", ek); err == nil {
		t.Error("ECDSA key accepted")
	}
	if _, err := s.SignCheckpoint(-1, root); err == nil {
		t.Error("negative size signed")
	}
}

func TestParseCheckpointText(t *testing.T) {
	root := [32]byte{9}
	o, n, r, err := parseCheckpointText(CheckpointText("o.example", 7, root))
	if err != nil || o != "o.example" || n != 7 || r != root {
		t.Fatalf("%q %d %v", o, n, err)
	}
	for _, bad := range []string{
		"o\n07\nCQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"o\n7\nCQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n",
		"o\n7\nCQ==\n",
		"\n7\nCQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"o\n-7\nCQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
	} {
		if _, _, _, err := parseCheckpointText(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c2sp.key")
	if _, err := LoadOrCreateKey(path, false); err == nil {
		t.Fatal("missing key without create")
	}
	k1, err := LoadOrCreateKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path, true)
	if err != nil || !k1.Equal(k2) {
		t.Fatal("reloaded key differs")
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	ep := filepath.Join(dir, "ecdsa.key")
	os.WriteFile(ep, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadOrCreateKey(ep, false); err == nil || !strings.Contains(err.Error(), "not an Ed25519 key") {
		t.Fatalf("ECDSA key: %v", err)
	}
}
