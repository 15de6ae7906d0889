package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/rekor/pkg/util"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/config"
	tentries "github.com/stellaops/tlog/testing/entries"
)

// TestRestart checks that a restarted logserver serves the same log: same
// tree, key and root; old entries still fetchable and verifiable; new
// entries continue at the next index; old entries are still duplicates.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	s := newSigner(t)
	f := &apiFixture{e: e, treeID: e.logInfo(t).treeID, s: s, sth: map[uint64]util.SignedCheckpoint{}}
	for i := range 3 {
		a := []byte(fmt.Sprintf("before restart %d", i))
		f.createRaw(t, fmt.Sprintf("before-%d", i), hashedRekord(t, s, a), a)
	}
	dsse, err := s.DSSE([]byte("before restart dsse"))
	if err != nil {
		t.Fatal(err)
	}
	f.createRaw(t, "before-dsse", dsse, nil)
	before := e.logInfo(t)
	keyBefore := e.get(t, "/api/v1/log/publicKey").body

	e.ls.Restart()
	e.connect(t)

	after := e.logInfo(t) // verifies the checkpoint with the (re-read) key
	if *after.SignedTreeHead != *before.SignedTreeHead {
		t.Errorf("checkpoint changed across a restart with no new entry:\n%s\n%s", *before.SignedTreeHead, *after.SignedTreeHead)
	}
	if after.treeID != before.treeID {
		t.Fatalf("tree ID changed across restart: %d -> %d", before.treeID, after.treeID)
	}
	if *after.TreeSize != *before.TreeSize || *after.RootHash != *before.RootHash {
		t.Fatalf("tree head changed across restart: size %d root %s -> size %d root %s",
			*before.TreeSize, *before.RootHash, *after.TreeSize, *after.RootHash)
	}
	if keyAfter := e.get(t, "/api/v1/log/publicKey").body; !bytes.Equal(keyAfter, keyBefore) {
		t.Fatalf("public key changed across restart:\n%s\n%s", keyBefore, keyAfter)
	}
	if !before.sth.Verify(e.ver) {
		t.Fatal("the pre-restart checkpoint does not verify with the post-restart key")
	}
	for i, l := range f.log {
		for _, path := range []string{fmt.Sprintf("/api/v1/log/entries?logIndex=%d", i), "/api/v1/log/entries/" + l.id, "/api/v1/log/entries/" + l.uuid} {
			r := e.get(t, path)
			wantStatus(t, "after restart GET "+path, r, http.StatusOK)
			id, a := decodeLogEntry(t, r.body)
			if id != l.id || *a.LogIndex != int64(i) || *a.IntegratedTime != *l.a.IntegratedTime || a.Body != l.a.Body {
				t.Fatalf("after restart %s: entry differs from before", path)
			}
			if string(a.Verification.SignedEntryTimestamp) != string(l.a.Verification.SignedEntryTimestamp) {
				t.Errorf("after restart %s: SET differs from the stored one", path)
			}
			e.checkEntry(t, id, a, f.treeID)
		}
	}
	// Old entries are still duplicates, at their old Location.
	for _, l := range f.log {
		r := e.post(t, "/api/v1/log/entries", l.pe)
		wantError(t, "duplicate after restart", r, http.StatusConflict, l.id)
		if loc := r.header.Get("Location"); loc != "/api/v1/log/entries/"+l.id {
			t.Fatalf("409 after restart: Location %q, want /api/v1/log/entries/%s", loc, l.id)
		}
	}
	// Search keys survived the restart.
	sum := sha256.Sum256(f.log[0].artifact)
	r0 := e.post(t, "/api/v1/index/retrieve", map[string]any{"hash": "sha256:" + hex.EncodeToString(sum[:])})
	wantStatus(t, "index search after restart", r0, http.StatusOK)
	var ids []string
	if err := json.Unmarshal(r0.body, &ids); err != nil || len(ids) != 1 || ids[0] != f.log[0].id {
		t.Fatalf("index search after restart: %s (%v), want [%s]", r0.body, err, f.log[0].id)
	}
	// New entries continue the log.
	for i := range 2 {
		a := []byte(fmt.Sprintf("after restart %d", i))
		f.createRaw(t, fmt.Sprintf("after-%d", i), hashedRekord(t, s, a), a)
	}
	final := e.logInfo(t)
	if *final.TreeSize != int64(len(f.log)) {
		t.Fatalf("tree size %d after restart, want %d", *final.TreeSize, len(f.log))
	}
	if want := hex.EncodeToString(mth(f.leafHashes())); *final.RootHash != want {
		t.Fatalf("root %s, independently computed %s", *final.RootHash, want)
	}
	// The pre-restart head is consistent with the new one.
	path := fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", before.sth.Size, final.sth.Size)
	r := e.get(t, path)
	wantStatus(t, path, r, http.StatusOK)
	var cp models.ConsistencyProof
	if err := json.Unmarshal(r.body, &cp); err != nil {
		t.Fatal(err)
	}
	var hashes [][]byte
	for _, h := range cp.Hashes {
		b, _ := hex.DecodeString(h)
		hashes = append(hashes, b)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, before.sth.Size, final.sth.Size, hashes, before.sth.Hash, final.sth.Hash); err != nil {
		t.Fatalf("consistency across restart: %v", err)
	}

	// A second restart with nothing new in between changes nothing.
	e.ls.Restart()
	e.connect(t)
	again := e.logInfo(t)
	if again.treeID != final.treeID || *again.TreeSize != *final.TreeSize || *again.RootHash != *final.RootHash {
		t.Fatalf("second restart changed the head: %d/%d/%s -> %d/%d/%s", final.treeID, *final.TreeSize, *final.RootHash,
			again.treeID, *again.TreeSize, *again.RootHash)
	}
}

// TestOversizeBody lowers api.max_request_bytes and checks that larger
// bodies get 413 on every POST endpoint, and that nothing is logged.
func TestOversizeBody(t *testing.T) {
	const limit = 16 << 10
	e := newEnvWith(t, func(c *config.Config) { c.API.MaxRequestBytes = limit })
	s := newSigner(t)

	// A DSSE entry whose envelope is well over the limit.
	big := bigDSSE(t, s, 4*limit)
	data, _ := json.Marshal(big)
	if len(data) <= limit {
		t.Fatalf("test entry is only %d bytes", len(data))
	}
	r := e.post(t, "/api/v1/log/entries", data)
	wantError(t, "oversize entry", r, http.StatusRequestEntityTooLarge)
	// Junk over the limit gets 413 too, not a parse error.
	r = e.post(t, "/api/v1/log/entries", bytes.Repeat([]byte("{"), 2*limit))
	wantError(t, "oversize junk", r, http.StatusRequestEntityTooLarge)
	// Retrieve and index search bodies are limited too.
	var uuids []string
	for i := 0; i < 10; i++ {
		uuids = append(uuids, strings.Repeat("ab", 32))
	}
	pad := map[string]any{"entryUUIDs": uuids, "pad": strings.Repeat("p", 2*limit)}
	wantError(t, "oversize retrieve", e.post(t, "/api/v1/log/entries/retrieve", pad), http.StatusRequestEntityTooLarge)
	wantError(t, "oversize index search", e.post(t, "/api/v1/index/retrieve",
		map[string]any{"hash": strings.Repeat("ab", 32), "pad": strings.Repeat("p", 2*limit)}), http.StatusRequestEntityTooLarge)
	if size := e.treeSize(t); size != 0 {
		t.Fatalf("oversize submissions changed the tree size to %d", size)
	}
	// An entry under the limit is still accepted.
	small := bigDSSE(t, s, limit/4)
	if data, _ := json.Marshal(small); len(data) >= limit {
		t.Fatalf("small test entry is %d bytes", len(data))
	}
	r = e.post(t, "/api/v1/log/entries", small)
	wantStatus(t, "entry under the limit", r, http.StatusCreated)
	id, a := decodeLogEntry(t, r.body)
	e.checkEntry(t, id, a, e.logInfo(t).treeID)
}

// bigDSSE is a dsse 0.0.1 proposal whose payload is n bytes.
func bigDSSE(t testing.TB, s *tentries.Signer, n int) models.ProposedEntry {
	t.Helper()
	env, err := s.Envelope("text/plain", bytes.Repeat([]byte("x"), n))
	if err != nil {
		t.Fatal(err)
	}
	pe, err := types.NewProposedEntry(context.Background(), "dsse", "0.0.1", types.ArtifactProperties{
		ArtifactBytes:  env,
		PublicKeyBytes: [][]byte{s.PubPEM},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

// TestContentType checks that writes must be JSON, as go-swagger enforces in
// Rekor: another media type gets 415 and stores nothing.
func TestContentType(t *testing.T) {
	e := newEnv(t)
	pe, err := newSigner(t).HashedRekord([]byte("content type"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(pe)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", ""} {
		req, _ := http.NewRequest(http.MethodPost, e.ls.URL+"/api/v1/log/entries", bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: %s, want 415", ct, resp.Status)
		}
	}
	if size := e.treeSize(t); size != 0 {
		t.Fatalf("refused submissions changed the tree size to %d", size)
	}
	r := e.post(t, "/api/v1/log/entries", body)
	wantStatus(t, "JSON entry", r, http.StatusCreated)
}
