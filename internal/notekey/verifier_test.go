package notekey_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"

	"github.com/stellaops/tlog/internal/notekey"
)

func TestParse(t *testing.T) {
	// The signed-note spec example key.
	v, err := notekey.LogVerifier("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
	if err != nil || v.Name() != "example.com/foo" || v.KeyHash() != 0x530d903a {
		t.Fatalf("spec example: %v %v", v, err)
	}

	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ek, err := notekey.ECDSAVerifierKey("rekor.example.com", &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// transparency-dev/formats parses the same form with the same key ID.
	fv, err := fnote.NewECDSAVerifier(ek)
	if err != nil {
		t.Fatal(err)
	}
	v, err = notekey.LogVerifier(ek)
	if err != nil || v.KeyHash() != fv.KeyHash() || v.Name() != "rekor.example.com" {
		t.Fatalf("ECDSA: %v %v", v, err)
	}

	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der224, _ := x509.MarshalPKIXPublicKey(&k224.PublicKey)
	sum := sha256.Sum256(der224)
	p224 := fmt.Sprintf("log.example+%08x+%s", binary.BigEndian.Uint32(sum[:4]), base64.StdEncoding.EncodeToString(append([]byte{0x02}, der224...)))
	cosigKey := "w.example/w1+01020304+" + "BA" + strings.Repeat("A", 42) // type 0x04
	for name, tc := range map[string]struct {
		vkey string
		want error
	}{
		"two parts":        {"example.com/foo+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", notekey.ErrInvalidKey},
		"wrong key ID":     {"example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", notekey.ErrInvalidKey},
		"wrong name":       {"example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", notekey.ErrInvalidKey},
		"bad base64":       {"example.com/foo+530d903a+!!!", notekey.ErrInvalidKey},
		"space in name":    {"example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", notekey.ErrInvalidKey},
		"ecdsa wrong id":   {"rekor.example.com+00000000+" + strings.SplitN(ek, "+", 3)[2], notekey.ErrInvalidKey},
		"cosignature type": {cosigKey, notekey.ErrUnsupportedType},
		"P-224":            {p224, notekey.ErrInvalidKey},
	} {
		if _, err := notekey.LogVerifier(tc.vkey); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	vk, err := notekey.VerifierKeyFromPublicKey("log.example", pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notekey.LogVerifier(vk); err != nil {
		t.Fatal(err)
	}
}

func TestParseLog(t *testing.T) {
	const k = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
	if _, err := notekey.LogVerifiers("rekor.example.com - 123", []string{k}); err != nil {
		t.Fatalf("origin with spaces: %v", err)
	}
	for name, tc := range map[string]struct {
		origin string
		vkeys  []string
		want   error
	}{
		"no keys":       {"o", nil, notekey.ErrInvalidKey},
		"duplicate key": {"o", []string{k, k}, notekey.ErrInvalidKey},
		"empty origin":  {"", []string{k}, notekey.ErrInvalidOrigin},
		"newline":       {"a\nb", []string{k}, notekey.ErrInvalidOrigin},
		"too long":      {strings.Repeat("o", 256), []string{k}, notekey.ErrInvalidOrigin},
		"bad utf8":      {"o\xff", []string{k}, notekey.ErrInvalidOrigin},
	} {
		if _, err := notekey.LogVerifiers(tc.origin, tc.vkeys); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
