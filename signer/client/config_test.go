package client

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
)

// TestOpenWaits: Open waits while the signer is unreachable, answers 5xx
// or lists the key without an available version, and fails at once on a
// 4xx or a key the signer does not have. The signer here is a small fake
// on loopback that injects those answers; the logserver's and witness's
// tests open keys of the real signer.
func TestOpenWaits(t *testing.T) {
	defer func(d time.Duration) { waitEvery = d }(waitEvery)
	waitEvery = 20 * time.Millisecond
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte(" tok\n"), 0o600)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// statuses[i] is the answer to the i-th GET /keys; after them the key
	// is listed, its version unavailable for the next unavailable answers.
	serve := func(t *testing.T, statuses []int, unavailable int) (*httptest.Server, *atomic.Int32) {
		var n atomic.Int32
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := int(n.Add(1)) - 1
			if r.URL.Path != api.PathKeys {
				http.NotFound(w, r)
				return
			}
			if i < len(statuses) {
				w.WriteHeader(statuses[i])
				json.NewEncoder(w).Encode(api.Error{Code: "x", Message: "injected"})
				return
			}
			json.NewEncoder(w).Encode(api.KeysResponse{Keys: []api.KeyInfo{{Name: "log",
				Versions: []api.KeyVersionInfo{{Version: 1, State: "active", Available: i >= len(statuses)+unavailable}}}}})
		}))
		t.Cleanup(s.Close)
		return s, &n
	}
	open := func(url, key string, d time.Duration) (*Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return Open(ctx, Config{URL: url, TokenFile: tokFile, Key: key, Timeout: time.Second}, quiet)
	}

	t.Run("5xx then unavailable then ready", func(t *testing.T) {
		s, n := serve(t, []int{503, 500, 502}, 2)
		c, err := open(s.URL, "log", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Load(); got != 6 {
			t.Fatalf("%d requests, want 6 (3 errors, 2 unavailable, 1 ready)", got)
		}
		if c.token != "tok" {
			t.Fatalf("token %q: not read trimmed", c.token)
		}
	})
	t.Run("4xx fails at once", func(t *testing.T) {
		s, n := serve(t, []int{503, 401}, 0)
		if _, err := open(s.URL, "log", 5*time.Second); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("err %v, want the 401", err)
		}
		if n.Load() != 2 {
			t.Fatalf("%d requests after a 4xx", n.Load())
		}
	})
	t.Run("no such key fails at once", func(t *testing.T) {
		s, n := serve(t, nil, 0)
		if _, err := open(s.URL, "typo", 5*time.Second); err == nil || !strings.Contains(err.Error(), "no such key") {
			t.Fatalf("err %v", err)
		}
		if n.Load() != 1 {
			t.Fatalf("%d requests for a missing key", n.Load())
		}
	})
	t.Run("unreachable until ctx ends", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		start := time.Now()
		if _, err := open("http://"+addr, "log", 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Fatalf("err %v", err)
		}
		if time.Since(start) < 250*time.Millisecond {
			t.Fatal("gave up before ctx ended")
		}
	})
	t.Run("missing token file", func(t *testing.T) {
		s, n := serve(t, nil, 0)
		ctx := context.Background()
		if _, err := Open(ctx, Config{URL: s.URL, TokenFile: tokFile + ".missing", Key: "log"}, quiet); err == nil || !strings.Contains(err.Error(), "token_file") {
			t.Fatalf("err %v", err)
		}
		if n.Load() != 0 {
			t.Fatal("called the signer without a token")
		}
	})
}

func TestConfigCheck(t *testing.T) {
	c := Config{URL: "http://signer:8090", TokenFile: "t", Key: "k"}
	if err := c.Check("key.signer", 0); err != nil || c.Timeout != DefaultTimeout {
		t.Fatalf("%v %v", err, c.Timeout)
	}
	w := Config{URL: "http://signer:8090", TokenFile: "t", Key: "k"}
	if err := w.Check("signer", 5*time.Second); err != nil || w.Timeout != 5*time.Second {
		t.Fatalf("%v %v", err, w.Timeout)
	}
	b := Config{URL: "signer:8090", Timeout: -1}
	err := b.Check("rekor_v2.signer", 0)
	for _, want := range []string{"rekor_v2.signer: url, token_file and key are required", "rekor_v2.signer.url", "rekor_v2.signer.timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v: want %q", err, want)
		}
	}
}
