package c2sp_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/c2sp"
)

const h = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="

func TestParseAddCheckpoint(t *testing.T) {
	r, err := c2sp.ParseAddCheckpoint([]byte("old 7\n" + h + "\n" + h + "\n\norigin\n9\n" + h + "\n\n— x AAAA\n"))
	if err != nil || r.OldSize != 7 || len(r.Proof) != 2 || !strings.HasPrefix(string(r.Checkpoint), "origin\n9\n") {
		t.Fatalf("%+v %v", r, err)
	}
	again, err := r.Marshal()
	if err != nil || string(again) != "old 7\n"+h+"\n"+h+"\n\norigin\n9\n"+h+"\n\n— x AAAA\n" {
		t.Fatalf("Marshal: %q %v", again, err)
	}
	body := "old 1\n" + strings.Repeat(h+"\n", 63) + "\ncp\n"
	if r, err := c2sp.ParseAddCheckpoint([]byte(body)); err != nil || len(r.Proof) != 63 {
		t.Fatalf("63 lines: %v", err)
	}
	body = "old 1\n" + strings.Repeat(h+"\n", 64) + "\ncp\n"
	if _, err := c2sp.ParseAddCheckpoint([]byte(body)); !errors.Is(err, c2sp.ErrMalformed) {
		t.Fatalf("64 lines: %v", err)
	}
	if _, err := (c2sp.AddCheckpoint{Proof: make([][32]byte, 64)}).Marshal(); err == nil {
		t.Fatal("marshalled 64 proof lines")
	}
}

func TestParseCheckpoint(t *testing.T) {
	c, err := c2sp.ParseCheckpoint("rekor.example.com - 42\n0\n" + h + "\nTimestamp: 1\n")
	if err != nil || c.Origin != "rekor.example.com - 42" || c.Size != 0 || len(c.Extensions) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	if got := c2sp.FormatCheckpoint(c.Origin, 5, c.Hash); got != "rekor.example.com - 42\n5\n"+h+"\n" {
		t.Fatalf("FormatCheckpoint %q", got)
	}
	for _, bad := range []string{
		"", "o\n1\n", "o\n1\n" + h, "\n1\n" + h + "\n", "o\n01\n" + h + "\n", "o\n-1\n" + h + "\n",
		"o\n1\n" + h[:40] + "\n", "o\n1\n" + h + "\n\n", "o\n 1\n" + h + "\n",
	} {
		if _, err := c2sp.ParseCheckpoint(bad); !errors.Is(err, c2sp.ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestSizeBody(t *testing.T) {
	if string(c2sp.FormatSizeBody(42)) != "42\n" {
		t.Fatal(string(c2sp.FormatSizeBody(42)))
	}
	for body, want := range map[string]uint64{"42\n": 42, "0": 0} {
		if n, err := c2sp.ParseSizeBody([]byte(body)); err != nil || n != want {
			t.Errorf("%q: %d %v", body, n, err)
		}
	}
	for _, bad := range []string{"", "\n", "042\n", "-1\n", "4 2\n", "42\n\n"} {
		if _, err := c2sp.ParseSizeBody([]byte(bad)); !errors.Is(err, c2sp.ErrMalformed) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// TestOpenStrict checks that every line of a trusted (name, key ID) is
// verified: x/mod's note.Open accepts a valid line followed by a corrupt
// line of the same key, Open must not.
func TestOpenStrict(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "log.example/strict")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	vs := note.VerifierList(v)
	text := "log.example/strict\n3\n" + h + "\n"
	signed, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c2sp.Open(signed, vs); err != nil || n.Text != text || len(n.Sigs) != 1 {
		t.Fatalf("valid note: %v", err)
	}
	line := string(signed[len(text)+1:])
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(line, "— log.example/strict "), "\n"))
	raw[len(raw)-1] ^= 1
	corrupt := "— log.example/strict " + base64.StdEncoding.EncodeToString(raw) + "\n"
	twice := append(bytes.Clone(signed), corrupt...)
	if _, err := note.Open(twice, vs); err != nil {
		t.Fatalf("x/mod's note.Open changed: it now refuses the repeated corrupt line (%v); Open's extra pass may be redundant", err)
	}
	if _, err := c2sp.Open(twice, vs); !errors.Is(err, c2sp.ErrBadSignature) {
		t.Fatalf("valid line then corrupt line of the same key: %v, want ErrBadSignature", err)
	}
	corruptFirst := []byte(text + "\n" + corrupt + line)
	if _, err := c2sp.Open(corruptFirst, vs); !errors.Is(err, c2sp.ErrBadSignature) {
		t.Fatalf("corrupt line then valid line: %v, want ErrBadSignature", err)
	}
	if _, err := c2sp.Open(signed, note.VerifierList()); !errors.Is(err, c2sp.ErrUntrusted) {
		t.Fatalf("no trusted key: %v, want ErrUntrusted", err)
	}
	if _, err := c2sp.Open([]byte(text), vs); !errors.Is(err, c2sp.ErrMalformed) {
		t.Fatalf("no signature: %v, want ErrMalformed", err)
	}
}

func TestCosignatureTime(t *testing.T) {
	sig := make([]byte, 72)
	sig[7] = 42
	if ts, err := c2sp.CosignatureTime(sig); err != nil || !ts.Equal(time.Unix(42, 0)) {
		t.Fatalf("%v %v", ts, err)
	}
	if _, err := c2sp.CosignatureTime(make([]byte, 72)); err == nil {
		t.Fatal("zero timestamp accepted")
	}
	if _, err := c2sp.CosignatureTime(make([]byte, ed25519.SignatureSize)); err == nil {
		t.Fatal("64-byte signature accepted")
	}
}

// FuzzParseAddCheckpoint checks the parser never panics and that what it
// accepts respects the limits (run with -fuzz; seeds run in go test).
func FuzzParseAddCheckpoint(f *testing.F) {
	f.Add([]byte("old 7\n" + h + "\n\norigin\n9\n" + h + "\n\n— x AAAA\n"))
	f.Add([]byte("old 0\n\n"))
	f.Add([]byte("old 18446744073709551615\n" + h + "\n\nx"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := c2sp.ParseAddCheckpoint(body)
		if err != nil {
			if !errors.Is(err, c2sp.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(r.Proof) > c2sp.MaxProofLines || len(r.Checkpoint) == 0 {
			t.Fatalf("accepted %d proof lines, checkpoint %q", len(r.Proof), r.Checkpoint)
		}
		if again, err := r.Marshal(); err != nil || !bytes.Equal(again, body) {
			t.Fatalf("round trip: %q → %q, %v", body, again, err)
		}
		if c, err := c2sp.ParseCheckpoint(string(r.Checkpoint)); err == nil && c.Origin == "" {
			t.Fatal("empty origin accepted")
		}
	})
}
