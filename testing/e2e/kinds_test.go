package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestKindsNeverFetchURLs: entries that point at their artifact, signature
// or key by URL (the "url" members older Rekor servers fetched) are refused
// with 400, as Rekor v1.5.4 refuses them, and the log never connects to the
// URL (no server-side request forgery into the appliance's network).
func TestKindsNeverFetchURLs(t *testing.T) {
	var hits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("fetched"))
	}))
	defer target.Close()
	e := newEnv(t)
	u := target.URL + "/x"
	hash := map[string]any{"algorithm": "sha256", "value": strings.Repeat("ab", 32)}
	key := map[string]any{"url": u}
	for kind, spec := range map[string]map[string]any{
		"rekord": {"data": map[string]any{"url": u, "hash": hash},
			"signature": map[string]any{"format": "pgp", "url": u, "publicKey": key}},
		"rpm":    {"package": map[string]any{"url": u, "hash": hash}, "publicKey": key},
		"jar":    {"archive": map[string]any{"url": u, "hash": hash}},
		"alpine": {"package": map[string]any{"url": u, "hash": hash}, "publicKey": key},
		"helm":   {"chart": map[string]any{"provenance": map[string]any{"url": u}}, "publicKey": key},
		"tuf":    {"metadata": map[string]any{"url": u}, "root": map[string]any{"url": u}},
		"cose":   {"message": u, "publicKey": key},
	} {
		body, err := json.Marshal(map[string]any{"kind": kind, "apiVersion": "0.0.1", "spec": spec})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(e.ls.URL+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s by URL: %d %s, want 400", kind, resp.StatusCode, msg)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the log fetched a client-given URL %d times", n)
	}
	resp, err := http.Get(e.ls.URL + "/api/v1/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var li struct{ TreeSize int64 }
	if err := json.NewDecoder(resp.Body).Decode(&li); err != nil || li.TreeSize != 0 {
		t.Fatalf("log info after refused entries: size %d (%v), want 0", li.TreeSize, err)
	}
}
