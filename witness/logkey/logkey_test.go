package logkey_test

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

	"github.com/stellaops/tlog/witness/logkey"
)

func TestParse(t *testing.T) {
	// The signed-note spec example key.
	v, err := logkey.Parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
	if err != nil || v.Name() != "example.com/foo" || v.KeyHash() != 0x530d903a {
		t.Fatalf("spec example: %v %v", v, err)
	}

	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ek, err := logkey.ECDSAVerifierKey("rekor.example.com", &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// transparency-dev/formats parses the same form with the same key ID.
	fv, err := fnote.NewECDSAVerifier(ek)
	if err != nil {
		t.Fatal(err)
	}
	v, err = logkey.Parse(ek)
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
		"two parts":        {"example.com/foo+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", logkey.ErrInvalidKey},
		"wrong key ID":     {"example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", logkey.ErrInvalidKey},
		"wrong name":       {"example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", logkey.ErrInvalidKey},
		"bad base64":       {"example.com/foo+530d903a+!!!", logkey.ErrInvalidKey},
		"space in name":    {"example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", logkey.ErrInvalidKey},
		"ecdsa wrong id":   {"rekor.example.com+00000000+" + strings.SplitN(ek, "+", 3)[2], logkey.ErrInvalidKey},
		"cosignature type": {cosigKey, logkey.ErrUnsupportedType},
		"P-224":            {p224, logkey.ErrInvalidKey},
	} {
		if _, err := logkey.Parse(tc.vkey); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	vk, err := logkey.VerifierKeyFromPublicKey("log.example", pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := logkey.Parse(vk); err != nil {
		t.Fatal(err)
	}
}

func TestParseLog(t *testing.T) {
	const k = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
	if _, err := logkey.ParseLog("rekor.example.com - 123", []string{k}); err != nil {
		t.Fatalf("origin with spaces: %v", err)
	}
	for name, tc := range map[string]struct {
		origin string
		vkeys  []string
		want   error
	}{
		"no keys":       {"o", nil, logkey.ErrInvalidKey},
		"duplicate key": {"o", []string{k, k}, logkey.ErrInvalidKey},
		"empty origin":  {"", []string{k}, logkey.ErrInvalidOrigin},
		"newline":       {"a\nb", []string{k}, logkey.ErrInvalidOrigin},
		"too long":      {strings.Repeat("o", 256), []string{k}, logkey.ErrInvalidOrigin},
		"bad utf8":      {"o\xff", []string{k}, logkey.ErrInvalidOrigin},
	} {
		if _, err := logkey.ParseLog(tc.origin, tc.vkeys); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
