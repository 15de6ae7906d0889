package tlogwitness_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stellaops/tlog/witness/tlogwitness"
)

const h = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="

func TestParseRequest(t *testing.T) {
	r, err := tlogwitness.ParseRequest([]byte("old 7\n" + h + "\n" + h + "\n\norigin\n9\n" + h + "\n\n— x AAAA\n"))
	if err != nil || r.OldSize != 7 || len(r.Proof) != 2 || !strings.HasPrefix(string(r.Checkpoint), "origin\n9\n") {
		t.Fatalf("%+v %v", r, err)
	}
	body := "old 1\n" + strings.Repeat(h+"\n", 63) + "\ncp\n"
	if r, err := tlogwitness.ParseRequest([]byte(body)); err != nil || len(r.Proof) != 63 {
		t.Fatalf("63 lines: %v", err)
	}
	body = "old 1\n" + strings.Repeat(h+"\n", 64) + "\ncp\n"
	if _, err := tlogwitness.ParseRequest([]byte(body)); !errors.Is(err, tlogwitness.ErrMalformed) {
		t.Fatalf("64 lines: %v", err)
	}
}

func TestParseCheckpoint(t *testing.T) {
	c, err := tlogwitness.ParseCheckpoint("rekor.example.com - 42\n0\n" + h + "\nTimestamp: 1\n")
	if err != nil || c.Origin != "rekor.example.com - 42" || c.Size != 0 || len(c.Extensions) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{
		"", "o\n1\n", "o\n1\n" + h, "\n1\n" + h + "\n", "o\n01\n" + h + "\n", "o\n-1\n" + h + "\n",
		"o\n1\n" + h[:40] + "\n", "o\n1\n" + h + "\n\n", "o\n 1\n" + h + "\n",
	} {
		if _, err := tlogwitness.ParseCheckpoint(bad); !errors.Is(err, tlogwitness.ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzParseRequest checks the parser never panics and that what it accepts
// respects the limits (run with -fuzz; seeds run in go test).
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("old 7\n" + h + "\n\norigin\n9\n" + h + "\n\n— x AAAA\n"))
	f.Add([]byte("old 0\n\n"))
	f.Add([]byte("old 18446744073709551615\n" + h + "\n\nx"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := tlogwitness.ParseRequest(body)
		if err != nil {
			if !errors.Is(err, tlogwitness.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(r.Proof) > tlogwitness.MaxProofLines || len(r.Checkpoint) == 0 {
			t.Fatalf("accepted %d proof lines, checkpoint %q", len(r.Proof), r.Checkpoint)
		}
		for _, p := range r.Proof {
			if len(p) != 32 {
				t.Fatalf("proof hash of %d bytes", len(p))
			}
		}
		if c, err := tlogwitness.ParseCheckpoint(string(r.Checkpoint)); err == nil && c.Origin == "" {
			t.Fatal("empty origin accepted")
		}
	})
}
