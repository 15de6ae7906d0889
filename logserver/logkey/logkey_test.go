package logkey

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestFileCreateReopenSign(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys", "log.pem")
	if _, err := OpenFile(p, false); err == nil {
		t.Fatal("opened a missing key without create")
	}
	k1, err := OpenFile(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	k2, err := OpenFile(p, true)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := LogID(k1.Public())
	id2, _ := LogID(k2.Public())
	if id1 != id2 {
		t.Fatal("reopening the key file gave another key")
	}
	d := [][sha256.Size]byte{sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))}
	sigs, err := k2.SignDigests(context.Background(), d)
	if err != nil || len(sigs) != 2 {
		t.Fatal(err)
	}
	for i := range d {
		if !ecdsa.VerifyASN1(k1.Public().(*ecdsa.PublicKey), d[i][:], sigs[i]) {
			t.Fatalf("signature %d does not verify", i)
		}
	}
}

func TestRejectsNonP256(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	p := filepath.Join(t.TempDir(), "ed.pem")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := OpenFile(p, false); err == nil {
		t.Fatal("accepted an Ed25519 log key")
	}
}
