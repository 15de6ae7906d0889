package cosig_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/witness/cosig"
)

const text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

// TestSignVerifiesWithFormats checks our lines against the independent
// cosignature/v1 verifier of transparency-dev/formats, including the vkey
// and the timestamp.
func TestSignVerifiesWithFormats(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := cosig.NewSigner("witness.example/w1", key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != s.Name() {
		t.Fatalf("formats name %q, ours %q", v.Name(), s.Name())
	}
	for _, txt := range []string{text, text + "Timestamp: 1689748607742585419\n"} {
		ts := time.Unix(1679315147, 0)
		line, err := s.Sign(context.Background(), []byte(txt), ts)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open([]byte(txt+"\n"+string(line)), note.VerifierList(v))
		if err != nil {
			t.Fatalf("formats rejects our cosignature: %v", err)
		}
		got, err := fnote.CoSigV1Timestamp(n.Sigs[0])
		if err != nil || !got.Equal(ts) {
			t.Fatalf("timestamp %v, %v", got, err)
		}
		// A different text does not verify.
		if _, err := note.Open([]byte(strings.Replace(txt, "20852163", "20852164", 1)+"\n"+string(line)), note.VerifierList(v)); err == nil {
			t.Fatal("cosignature verified on another checkpoint")
		}
	}
	if _, err := s.Sign(context.Background(), []byte(text), time.Unix(0, 0)); err == nil {
		t.Fatal("signed with a zero timestamp")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "w.key")
	k, err := cosig.GenerateKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if _, err := cosig.GenerateKeyFile(p); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	got, err := cosig.LoadKeyFile(p)
	if err != nil || !got.Equal(k) {
		t.Fatalf("load: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := cosig.LoadKeyFile(bad); !errors.Is(err, cosig.ErrBadKey) {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := cosig.NewSigner("bad name", k); err == nil {
		t.Fatal("accepted a name with a space")
	}
}
