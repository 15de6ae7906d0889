package rekorpeer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"

	"github.com/stellaops/tlog/internal/retry"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/upstream"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/rekorstack"
	"github.com/stellaops/tlog/testing/stack"
)

// Upstream replay to the real rekor-server v1.5.4: hashedrekord, dsse and
// intoto entries logged by our logserver are forwarded from their original
// request bodies; Rekor logs each with our canonical body (same UUID), its
// answers verify with its public key (SET, inclusion proof, checkpoint);
// an entry Rekor already had is recorded through its 409 and Location.
func TestUpstreamReplayToRekor(t *testing.T) {
	var bin string
	for _, tl := range rekorstack.Tools {
		bin = filepath.Dir(tl.Install(t))
	}
	db := stack.TestMariaDB(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rk, err := rekorstack.Start(ctx, db, rekorstack.Options{Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rk.Stop)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "rekor.pub")
	resp, err := http.Get(rk.URL + "/api/v1/log/publicKey")
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := os.WriteFile(keyFile, pemKey, 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	var reqs [][]byte
	for i, mk := range []func([]byte) (models.ProposedEntry, error){
		s.HashedRekord, s.DSSE, func(a []byte) (models.ProposedEntry, error) { return s.Intoto("0.0.2", a) },
		func(a []byte) (models.ProposedEntry, error) { return s.Intoto("0.0.1", a) }, s.HashedRekord,
	} {
		pe, err := mk([]byte(fmt.Sprintf("upstream artifact %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(pe)
		reqs = append(reqs, b)
	}
	// Rekor has the last one already.
	if code, _, body := postRaw(t, rk.URL+"/api/v1/log/entries", reqs[4]); code != http.StatusCreated {
		t.Fatalf("rekor: %d %s", code, body)
	}

	ls := stack.StartLogserver(t, stack.TestDatabase(t, db, "stella"), dir, func(c *config.Config) {
		c.Upstream = &config.Upstream{V1: &config.UpstreamLog{URL: rk.URL, PublicKeyFile: keyFile},
			PollInterval: 50 * time.Millisecond, Retry: retry.Policy{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second}}
	})
	bodies := map[string][]byte{} // UUID -> our canonical body
	for i, req := range reqs {
		code, _, body := postRaw(t, ls.URL+"/api/v1/log/entries", req)
		if code != http.StatusCreated {
			t.Fatalf("entry %d: %d %s", i, code, body)
		}
		var le models.LogEntry
		if err := json.Unmarshal(body, &le); err != nil {
			t.Fatal(err)
		}
		for id, e := range le {
			b, _ := base64.StdEncoding.DecodeString(e.Body.(string))
			bodies[id[len(id)-64:]] = b
		}
	}
	deadline := time.Now().Add(time.Minute)
	var l upstream.List
	for {
		resp, err := http.Get(ls.URL + "/api/v1/upstream/entries?state=all")
		if err != nil {
			t.Fatal(err)
		}
		l = upstream.List{}
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if l.Pending == 0 && len(l.Entries) == len(reqs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained to Rekor: %+v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, e := range l.Entries {
		if e.Status != "forwarded" || !e.UpstreamVerified || e.UpstreamIndex == nil || e.UpstreamTime == nil || !strings.HasSuffix(e.UpstreamUUID, e.LeafHash) {
			t.Fatalf("entry %d: %+v", i, e)
		}
		code, _, body := getRaw(t, rk.URL+"/api/v1/log/entries/"+e.LeafHash)
		if code != http.StatusOK {
			t.Fatalf("rekor has no entry %s: %d %s", e.LeafHash, code, body)
		}
		var le models.LogEntry
		if err := json.Unmarshal(body, &le); err != nil {
			t.Fatal(err)
		}
		for _, re := range le {
			b, _ := base64.StdEncoding.DecodeString(re.Body.(string))
			if !bytes.Equal(b, bodies[e.LeafHash]) || *re.LogIndex != *e.UpstreamIndex {
				t.Fatalf("entry %d: Rekor's body or index differs (index %d, recorded %d)", i, *re.LogIndex, *e.UpstreamIndex)
			}
		}
	}
	if *l.Entries[4].UpstreamIndex != 0 {
		t.Fatalf("the entry Rekor had first is recorded at %d, want 0", *l.Entries[4].UpstreamIndex)
	}
}

func postRaw(t *testing.T, u string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func getRaw(t *testing.T, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}
