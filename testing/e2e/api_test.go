package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	tentries "github.com/stellaops/tlog/testing/entries"
)

// logged is an entry the test logged, with what the log answered.
type logged struct {
	name     string
	pe       models.ProposedEntry
	artifact []byte
	id       string // 80-hex entry ID
	uuid     string // 64-hex leaf hash
	a        models.LogEntryAnon
	body     []byte
}

// apiFixture is one log shared by the subtests of TestAPI: entries are
// logged sequentially, so index i is the i-th logged entry.
type apiFixture struct {
	e      *env
	treeID int64
	s, s2  *tentries.Signer
	log    []logged
	// sth[n] is the checkpoint (verified) the log returned with size n.
	sth map[uint64]util.SignedCheckpoint
}

// createRaw posts pe over raw HTTP and runs every check of a 201 answer.
func (f *apiFixture) createRaw(t testing.TB, name string, pe models.ProposedEntry, artifact []byte) logged {
	t.Helper()
	r := f.e.post(t, "/api/v1/log/entries", pe)
	wantStatus(t, "create "+name, r, http.StatusCreated)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("create %s: Content-Type %q", name, ct)
	}
	id, a := decodeLogEntry(t, r.body)
	if loc := r.header.Get("Location"); loc != "/api/v1/log/entries/"+id {
		t.Errorf("create %s: Location %q, want /api/v1/log/entries/%s", name, loc, id)
	}
	if etag := r.header.Get("ETag"); etag != id {
		t.Errorf("create %s: ETag %q, want %s", name, etag, id)
	}
	f.e.checkEntry(t, id, a, f.treeID)
	want := int64(len(f.log))
	if *a.LogIndex != want {
		t.Fatalf("create %s: logIndex %d, want %d (entries are logged one after the other)", name, *a.LogIndex, want)
	}
	ip := a.Verification.InclusionProof
	if *ip.TreeSize != want+1 {
		t.Fatalf("create %s: inclusion proof at tree size %d, want %d", name, *ip.TreeSize, want+1)
	}
	var sc util.SignedCheckpoint
	if err := sc.UnmarshalText([]byte(*ip.Checkpoint)); err != nil {
		t.Fatal(err)
	}
	f.sth[sc.Size] = sc
	l := logged{name: name, pe: pe, artifact: artifact, id: id, uuid: id[16:], a: a, body: entryBody(t, a)}
	f.log = append(f.log, l)
	return l
}

func (f *apiFixture) leafHashes() [][]byte {
	var hs [][]byte
	for _, l := range f.log {
		hs = append(hs, leafHash(l.body))
	}
	return hs
}

func newSigner(t testing.TB) *tentries.Signer {
	t.Helper()
	s, err := tentries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hashedRekord(t testing.TB, s *tentries.Signer, artifact []byte) models.ProposedEntry {
	t.Helper()
	pe, err := s.HashedRekord(artifact)
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

func TestAPI(t *testing.T) {
	e := newEnv(t)
	f := &apiFixture{e: e, s: newSigner(t), s2: newSigner(t), sth: map[uint64]util.SignedCheckpoint{}}

	t.Run("EmptyLog", func(t *testing.T) {
		li := e.logInfo(t)
		f.treeID = li.treeID
		if *li.TreeSize != 0 {
			t.Fatalf("fresh log has size %d", *li.TreeSize)
		}
		if want := hex.EncodeToString(rfc6962.DefaultHasher.EmptyRoot()); *li.RootHash != want {
			t.Errorf("empty root %s, want %s", *li.RootHash, want)
		}
		wantEmpty404(t, "GET entry 0 of an empty log", e.get(t, "/api/v1/log/entries?logIndex=0"))
		wantError(t, "proof of an empty log", e.get(t, "/api/v1/log/proof?firstSize=1&lastSize=1"), 400,
			"the tree size requested(1) was greater than what is currently observable(0)")
	})
	if f.treeID == 0 {
		t.Fatal("no tree ID")
	}

	// Every entry kind, logged, fetched back and verified.
	t.Run("CreateEveryKind", func(t *testing.T) {
		kinds := []struct {
			kind, version string
			make          func(a []byte) (models.ProposedEntry, error)
		}{
			{"hashedrekord", "0.0.1", f.s.HashedRekord},
			{"dsse", "0.0.1", f.s.DSSE},
			{"intoto", "0.0.1", func(a []byte) (models.ProposedEntry, error) { return f.s.Intoto("0.0.1", a) }},
			{"intoto", "0.0.2", func(a []byte) (models.ProposedEntry, error) { return f.s.Intoto("0.0.2", a) }},
		}
		for _, k := range kinds {
			t.Run(k.kind+"-"+k.version, func(t *testing.T) {
				artifact := []byte("artifact for " + k.kind + " " + k.version)
				pe, err := k.make(artifact)
				if err != nil {
					t.Fatal(err)
				}
				l := f.createRaw(t, k.kind+" "+k.version, pe, artifact)
				kind, version := kindOf(t, l.body)
				if kind != k.kind || version != k.version {
					t.Errorf("canonical body is %s %s, want %s %s", kind, version, k.kind, k.version)
				}
				if got := hex.EncodeToString(leafHash(l.body)); got != l.uuid {
					t.Errorf("UUID %s != hex(SHA-256(0x00||body)) %s", l.uuid, got)
				}
				// Fetch it back three ways: index, UUID, entry ID.
				for _, path := range []string{
					"/api/v1/log/entries?logIndex=" + strconv.FormatInt(*l.a.LogIndex, 10),
					"/api/v1/log/entries/" + l.uuid,
					"/api/v1/log/entries/" + l.id,
				} {
					r := e.get(t, path)
					wantStatus(t, "GET "+path, r, http.StatusOK)
					id, a := decodeLogEntry(t, r.body)
					if id != l.id {
						t.Fatalf("GET %s: entry ID %s, want %s", path, id, l.id)
					}
					e.checkEntry(t, id, a, f.treeID)
					if *a.LogIndex != *l.a.LogIndex || *a.IntegratedTime != *l.a.IntegratedTime || a.Body != l.a.Body {
						t.Fatalf("GET %s: entry differs from the create answer", path)
					}
					// The SET is stored, not re-signed on reads (ECDSA
					// signatures are randomised, so a re-sign would differ).
					if string(a.Verification.SignedEntryTimestamp) != string(l.a.Verification.SignedEntryTimestamp) {
						t.Errorf("GET %s: SET differs from the one of the create answer (re-signed on read?)", path)
					}
				}
			})
		}
	})
	if len(f.log) != 4 {
		t.Fatalf("only %d of 4 kinds logged", len(f.log))
	}

	// More hashedrekord entries: two by a second key (for index search).
	t.Run("CreateMore", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			a := []byte(fmt.Sprintf("second key artifact %d", i))
			f.createRaw(t, fmt.Sprintf("s2-%d", i), hashedRekord(t, f.s2, a), a)
		}
		for i := 0; i < 3; i++ {
			a := []byte(fmt.Sprintf("first key artifact %d", i))
			f.createRaw(t, fmt.Sprintf("s-%d", i), hashedRekord(t, f.s, a), a)
		}
	})
	n := int64(len(f.log))
	if n != 9 {
		t.Fatalf("%d entries logged, want 9", n)
	}

	t.Run("LogInfo", func(t *testing.T) {
		r := e.get(t, "/api/v1/log")
		wantStatus(t, "GET /api/v1/log", r, 200)
		var raw map[string]any
		if err := json.Unmarshal(r.body, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"rootHash", "treeSize", "signedTreeHead", "treeID"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("LogInfo lacks %q: %s", k, r.body)
			}
		}
		if _, ok := raw["treeID"].(string); !ok {
			t.Errorf("treeID is %T, want a JSON string", raw["treeID"])
		}
		if _, ok := raw["treeSize"].(float64); !ok {
			t.Errorf("treeSize is %T, want a JSON number", raw["treeSize"])
		}
		li := e.logInfo(t)
		if again := e.logInfo(t); *again.SignedTreeHead != *li.SignedTreeHead {
			t.Errorf("two reads of an unchanged log give different checkpoints (re-signed on read?)")
		}
		if li.treeID != f.treeID {
			t.Errorf("treeID changed: %d then %d", f.treeID, li.treeID)
		}
		if *li.TreeSize != n {
			t.Errorf("treeSize %d, want %d", *li.TreeSize, n)
		}
		if want := hex.EncodeToString(mth(f.leafHashes())); *li.RootHash != want {
			t.Errorf("rootHash %s, independently computed %s", *li.RootHash, want)
		}
		if want := fmt.Sprintf("stella.test - %d", f.treeID); li.sth.Origin != want {
			t.Errorf("checkpoint origin %q, want %q", li.sth.Origin, want)
		}
		// Exactly one signature line, named by the bare hostname.
		text := *li.SignedTreeHead
		var sigLines []string
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "\u2014 ") {
				sigLines = append(sigLines, line)
			}
		}
		if len(sigLines) != 1 {
			t.Fatalf("checkpoint has %d signature lines, want exactly 1:\n%s", len(sigLines), text)
		}
		if !strings.HasPrefix(sigLines[0], "\u2014 stella.test ") {
			t.Errorf("signature line %q is not named \"stella.test\"", sigLines[0])
		}
		// Key hint = first 4 bytes of the logID (SHA-256 of the key DER).
		sig, err := base64.StdEncoding.DecodeString(strings.Fields(sigLines[0])[2])
		if err != nil || len(sig) < 5 {
			t.Fatalf("signature line %q: %v", sigLines[0], err)
		}
		if hex.EncodeToString(sig[:4]) != e.logID[:8] {
			t.Errorf("key hint %x, want %s", sig[:4], e.logID[:8])
		}
		if want := fmt.Sprintf("stella.test - %d\n%d\n%s\n\n", f.treeID, n,
			base64.StdEncoding.EncodeToString(li.sth.Hash)); !strings.HasPrefix(text, want) {
			t.Errorf("checkpoint body:\n%q\nwant prefix\n%q", text, want)
		}
		// rekor's VerifyCurrentCheckpoint: from the size-1 checkpoint to now.
		old := f.sth[1]
		cur, err := verify.VerifyCurrentCheckpoint(context.Background(), e.client, e.ver, &old)
		if err != nil {
			t.Fatalf("verify.VerifyCurrentCheckpoint from size 1: %v", err)
		}
		if int64(cur.Size) != n {
			t.Errorf("current checkpoint size %d, want %d", cur.Size, n)
		}
	})

	t.Run("PublicKey", func(t *testing.T) {
		for _, q := range []string{"", "?treeID=" + strconv.FormatInt(f.treeID, 10)} {
			r := e.get(t, "/api/v1/log/publicKey"+q)
			wantStatus(t, "GET publicKey"+q, r, 200)
			if ct := r.header.Get("Content-Type"); ct != "application/x-pem-file" {
				t.Errorf("publicKey%s: Content-Type %q, want application/x-pem-file", q, ct)
			}
			block, _ := pem.Decode(r.body)
			if block == nil || block.Type != "PUBLIC KEY" {
				t.Fatalf("publicKey%s: not a PEM PUBLIC KEY: %q", q, r.body)
			}
			if string(r.body) != string(e.logPublicKeyPEM(t)) {
				t.Errorf("publicKey%s differs from the key file", q)
			}
			if got := logIDOf(t, r.body); got != e.logID {
				t.Errorf("publicKey%s: SHA-256 of key %s != entries' logID %s", q, got, e.logID)
			}
			if _, err := cryptoutils.UnmarshalPEMToPublicKey(r.body); err != nil {
				t.Error(err)
			}
		}
		wantError(t, "publicKey of another tree", e.get(t, "/api/v1/log/publicKey?treeID=12345"), 400, "Bad Request")
		wantError(t, "publicKey treeID not a number", e.get(t, "/api/v1/log/publicKey?treeID=abc"), 422, "treeID")
	})

	t.Run("ConsistencyProof", func(t *testing.T) {
		leaves := f.leafHashes()
		for first := int64(1); first <= n; first++ {
			for last := first; last <= n; last++ {
				path := fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", first, last)
				r := e.get(t, path)
				wantStatus(t, path, r, 200)
				var cp models.ConsistencyProof
				if err := json.Unmarshal(r.body, &cp); err != nil {
					t.Fatal(err)
				}
				oldRoot, newRoot := mth(leaves[:first]), mth(leaves[:last])
				if *cp.RootHash != hex.EncodeToString(newRoot) {
					t.Fatalf("%s: rootHash %s, want root at %d %x", path, *cp.RootHash, last, newRoot)
				}
				var hashes [][]byte
				for _, h := range cp.Hashes {
					b, err := hex.DecodeString(h)
					if err != nil {
						t.Fatal(err)
					}
					hashes = append(hashes, b)
				}
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(first), uint64(last), hashes, oldRoot, newRoot); err != nil {
					t.Fatalf("%s: proof does not verify: %v", path, err)
				}
				// The roots the log signed at those sizes are the same.
				if s, ok := f.sth[uint64(first)]; ok && hex.EncodeToString(s.Hash) != hex.EncodeToString(oldRoot) {
					t.Fatalf("signed root at %d differs from the computed one", first)
				}
			}
		}
		// firstSize defaults to 1.
		r := e.get(t, fmt.Sprintf("/api/v1/log/proof?lastSize=%d", n))
		wantStatus(t, "proof without firstSize", r, 200)
		r1 := e.get(t, fmt.Sprintf("/api/v1/log/proof?firstSize=1&lastSize=%d", n))
		if string(r.body) != string(r1.body) {
			t.Errorf("proof without firstSize %s != proof from 1 %s", r.body, r1.body)
		}
		tid := strconv.FormatInt(f.treeID, 10)
		wantStatus(t, "proof with our treeID", e.get(t, fmt.Sprintf("/api/v1/log/proof?firstSize=2&lastSize=%d&treeID=%s", n, tid)), 200)

		wantError(t, "firstSize > lastSize", e.get(t, "/api/v1/log/proof?firstSize=5&lastSize=3"), 400,
			"firstSize(5) must be less than lastSize(3)")
		wantError(t, "lastSize beyond the tree", e.get(t, fmt.Sprintf("/api/v1/log/proof?firstSize=1&lastSize=%d", n+1)), 400,
			fmt.Sprintf("the tree size requested(%d) was greater than what is currently observable(%d)", n+1, n))
		wantError(t, "missing lastSize", e.get(t, "/api/v1/log/proof?firstSize=1"), 422, "lastSize")
		wantError(t, "lastSize 0", e.get(t, "/api/v1/log/proof?lastSize=0"), 422, "lastSize")
		wantError(t, "firstSize 0", e.get(t, "/api/v1/log/proof?firstSize=0&lastSize=2"), 422, "firstSize")
		wantError(t, "lastSize not a number", e.get(t, "/api/v1/log/proof?lastSize=abc"), 422, "lastSize")
		wantError(t, "unknown treeID", e.get(t, "/api/v1/log/proof?firstSize=1&lastSize=2&treeID=12345"), 400, "12345")
		t.Run("unknown treeID message", func(t *testing.T) {
			wantError(t, "unknown treeID", e.get(t, "/api/v1/log/proof?firstSize=1&lastSize=2&treeID=12345"), 400,
				"no log range found for tree ID 12345")
		})
		wantError(t, "treeID not a number", e.get(t, "/api/v1/log/proof?firstSize=1&lastSize=2&treeID=x1"), 422, "treeID")
	})

	t.Run("GetByIndex", func(t *testing.T) {
		for i, l := range f.log {
			r := e.get(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", i))
			wantStatus(t, "GET by index", r, 200)
			id, a := decodeLogEntry(t, r.body)
			if id != l.id || *a.LogIndex != int64(i) {
				t.Fatalf("index %d: got %s at %d, want %s", i, id, *a.LogIndex, l.id)
			}
			e.checkEntry(t, id, a, f.treeID)
			// Reads carry a proof against the current head.
			if *a.Verification.InclusionProof.TreeSize != n {
				t.Errorf("index %d: proof at size %d, want current size %d", i, *a.Verification.InclusionProof.TreeSize, n)
			}
		}
		wantEmpty404(t, "index == size", e.get(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", n)))
		wantEmpty404(t, "huge index", e.get(t, "/api/v1/log/entries?logIndex=9223372036854775807"))
		wantError(t, "negative index", e.get(t, "/api/v1/log/entries?logIndex=-1"), 422, "logIndex")
		wantError(t, "missing index", e.get(t, "/api/v1/log/entries"), 422, "logIndex")
		wantError(t, "index not a number", e.get(t, "/api/v1/log/entries?logIndex=one"), 422, "logIndex")
	})

	t.Run("GetByUUID", func(t *testing.T) {
		l := f.log[1]
		for _, id := range []string{l.uuid, l.id, strings.ToUpper(l.uuid), strings.ToUpper(l.id)} {
			r := e.get(t, "/api/v1/log/entries/"+id)
			wantStatus(t, "GET "+id, r, 200)
			got, a := decodeLogEntry(t, r.body)
			if got != l.id {
				t.Fatalf("GET %s: got %s, want %s", id, got, l.id)
			}
			e.checkEntry(t, got, a, f.treeID)
		}
		unknown := strings.Repeat("ab", 32)
		wantEmpty404(t, "unknown UUID", e.get(t, "/api/v1/log/entries/"+unknown))
		wantEmpty404(t, "unknown entry ID", e.get(t, "/api/v1/log/entries/"+l.id[:16]+unknown))
		other := fmt.Sprintf("%016x", f.treeID+1) + l.uuid
		wantEmpty404(t, "entry ID of another tree", e.get(t, "/api/v1/log/entries/"+other))

		for _, bad := range []string{"xyz", l.uuid[:63], l.uuid + "0", strings.Repeat("g", 64), l.id + "00"} {
			wantError(t, "malformed ID "+bad, e.get(t, "/api/v1/log/entries/"+bad), 422, "entryUUID")
		}
		// A well-formed entry ID naming an invalid tree (0, or beyond int64).
		for _, tree := range []string{"0000000000000000", "ffffffffffffffff"} {
			wantError(t, "tree "+tree, e.get(t, "/api/v1/log/entries/"+tree+l.uuid), 400)
		}
	})

	t.Run("Retrieve", func(t *testing.T) {
		retrieve := func(t testing.TB, q any) []string {
			t.Helper()
			r := e.post(t, "/api/v1/log/entries/retrieve", q)
			wantStatus(t, "retrieve", r, 200)
			var les []models.LogEntry
			if err := json.Unmarshal(r.body, &les); err != nil {
				t.Fatal(err)
			}
			for _, le := range les {
				id, a := only(t, le)
				e.checkEntry(t, id, a, f.treeID)
			}
			return decodeLogEntries(t, r.body)
		}
		want := func(t testing.TB, what string, got []string, want ...string) {
			t.Helper()
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", what, got, want)
			}
		}
		L := f.log
		want(t, "by UUID", retrieve(t, map[string]any{"entryUUIDs": []string{L[0].uuid, L[2].uuid}}), L[0].id, L[2].id)
		want(t, "by entry ID", retrieve(t, map[string]any{"entryUUIDs": []string{L[3].id, L[1].id}}), L[3].id, L[1].id)
		t.Run("entry IDs before UUIDs", func(t *testing.T) {
			want(t, "UUID then entry ID", retrieve(t, map[string]any{"entryUUIDs": []string{L[0].uuid, L[1].id}}), L[1].id, L[0].id)
		})
		want(t, "by index", retrieve(t, map[string]any{"logIndexes": []int64{2, 999, 0}}), L[2].id, L[0].id)
		// What cosign's online verification does: the proposed entry itself.
		for _, l := range L[:4] {
			want(t, "by proposed entry "+l.name, retrieve(t, map[string]any{"entries": []any{l.pe}}), l.id)
		}
		want(t, "mixed, UUID/entry hits before index hits",
			retrieve(t, map[string]any{"logIndexes": []int64{0}, "entryUUIDs": []string{L[3].uuid}, "entries": []any{L[1].pe}}),
			L[3].id, L[1].id, L[0].id)
		unlogged := hashedRekord(t, f.s, []byte("never logged"))
		want(t, "misses are left out",
			retrieve(t, map[string]any{
				"entryUUIDs": []string{strings.Repeat("cd", 32), fmt.Sprintf("%016x", f.treeID+1) + L[0].uuid},
				"logIndexes": []int64{n, n + 100},
				"entries":    []any{unlogged},
			}))
		want(t, "null members", retrieve(t, json.RawMessage(`{"logIndexes":[null,4]}`)), L[4].id)
		want(t, "ten items", retrieve(t, map[string]any{"logIndexes": []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}),
			L[0].id, L[1].id, L[2].id, L[3].id, L[4].id, L[5].id, L[6].id, L[7].id, L[8].id)

		eleven := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
		wantError(t, "11 indexes", e.post(t, "/api/v1/log/entries/retrieve", map[string]any{"logIndexes": eleven}), 422)
		wantError(t, "6 UUIDs + 5 indexes", e.post(t, "/api/v1/log/entries/retrieve", map[string]any{
			"entryUUIDs": []string{L[0].uuid, L[1].uuid, L[2].uuid, L[3].uuid, L[4].uuid, L[5].uuid},
			"logIndexes": []int64{0, 1, 2, 3, 4},
		}), 422, "more than max allowed 10 entries in request")
		wantError(t, "empty list (minItems 1)", e.post(t, "/api/v1/log/entries/retrieve", json.RawMessage(`{"entryUUIDs":[]}`)), 422, "entryUUIDs")
		wantError(t, "negative index", e.post(t, "/api/v1/log/entries/retrieve", map[string]any{"logIndexes": []int64{-1}}), 422)
		wantError(t, "malformed UUID", e.post(t, "/api/v1/log/entries/retrieve", map[string]any{"entryUUIDs": []string{"xyz"}}), 422)
		wantError(t, "entry ID of tree 0", e.post(t, "/api/v1/log/entries/retrieve",
			map[string]any{"entryUUIDs": []string{"0000000000000000" + L[0].uuid}}), 400)
		wantError(t, "malformed JSON", e.post(t, "/api/v1/log/entries/retrieve", []byte(`{"logIndexes":[0`)), 400)
		wantError(t, "empty body", e.post(t, "/api/v1/log/entries/retrieve", []byte{}), 422)
		bad := map[string]any{"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": map[string]any{"nope": 1}}
		wantError(t, "retrieve with an invalid entry", e.post(t, "/api/v1/log/entries/retrieve", map[string]any{"entries": []any{bad}}), 400)
		wantError(t, "retrieve with an entry of an unknown kind", e.post(t, "/api/v1/log/entries/retrieve",
			json.RawMessage(`{"entries":[{"kind":"nope","apiVersion":"0.0.1","spec":{}}]}`)), 400, `invalid kind value: "nope"`)
	})

	t.Run("SearchIndex", func(t *testing.T) {
		search := func(q any) []string {
			t.Helper()
			r := e.post(t, "/api/v1/index/retrieve", q)
			wantStatus(t, "index search", r, 200)
			if strings.TrimSpace(string(r.body)) == "null" {
				t.Fatalf("index search answered null, want a JSON array")
			}
			var ids []string
			if err := json.Unmarshal(r.body, &ids); err != nil {
				t.Fatal(err)
			}
			slices.Sort(ids)
			return ids
		}
		want := func(what string, got []string, want ...string) {
			t.Helper()
			if want == nil {
				want = []string{}
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", what, got, want)
			}
		}
		sha := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
		hr := f.log[0]  // hashedrekord by s
		a20 := f.log[4] // hashedrekord by s2
		a21 := f.log[5] // hashedrekord by s2
		want("hash with prefix", search(map[string]any{"hash": "sha256:" + sha(hr.artifact)}), hr.id)
		want("hash without prefix", search(map[string]any{"hash": sha(hr.artifact)}), hr.id)
		want("hash in upper case", search(map[string]any{"hash": "sha256:" + strings.ToUpper(sha(hr.artifact))}), hr.id)
		// DSSE and intoto entries are found by their in-toto subject digest.
		dsse := f.log[1]
		want("dsse by subject digest", search(map[string]any{"hash": "sha256:" + sha(dsse.artifact)}), dsse.id)

		key := func(s *tentries.Signer) map[string]any {
			return map[string]any{"format": "x509", "content": strfmt.Base64(s.PubPEM)}
		}
		want("by x509 key", search(map[string]any{"publicKey": key(f.s2)}), a20.id, a21.id)
		want("key and hash", search(map[string]any{"publicKey": key(f.s2), "hash": "sha256:" + sha(a20.artifact), "operator": "and"}), a20.id)
		want("key and other hash", search(map[string]any{"publicKey": key(f.s2), "hash": "sha256:" + sha(hr.artifact), "operator": "and"}))
		want("key or hash", search(map[string]any{"publicKey": key(f.s2), "hash": "sha256:" + sha(hr.artifact), "operator": "or"}), a20.id, a21.id, hr.id)
		want("key, hash, default operator", search(map[string]any{"publicKey": key(f.s2), "hash": "sha256:" + sha(hr.artifact)}), a20.id, a21.id, hr.id)
		want("unknown hash", search(map[string]any{"hash": "sha256:" + sha([]byte("nothing"))}))
		want("unknown key", search(map[string]any{"publicKey": key(newSigner(t))}))
		want("unknown email", search(map[string]any{"email": "nobody@example.com"}))

		wantError(t, "unknown key format", e.post(t, "/api/v1/index/retrieve",
			map[string]any{"publicKey": map[string]any{"format": "nope", "content": "AAAA"}}), 422)
		wantError(t, "unparsable key", e.post(t, "/api/v1/index/retrieve",
			map[string]any{"publicKey": map[string]any{"format": "x509", "content": base64.StdEncoding.EncodeToString([]byte("not a key"))}}), 400,
			"public key provided could not be parsed")
		wantError(t, "malformed hash", e.post(t, "/api/v1/index/retrieve", map[string]any{"hash": "sha256:xyz"}), 422, "hash")
		wantError(t, "bad operator", e.post(t, "/api/v1/index/retrieve", map[string]any{"hash": sha(hr.artifact), "operator": "xor"}), 422, "operator")
		wantError(t, "malformed JSON", e.post(t, "/api/v1/index/retrieve", []byte(`{"hash":`)), 400)
	})

	t.Run("Duplicate", func(t *testing.T) {
		before := e.treeSize(t)
		for _, l := range f.log[:4] {
			r := e.post(t, "/api/v1/log/entries", l.pe)
			wantError(t, "duplicate "+l.name, r, 409,
				"an equivalent entry already exists in the transparency log with UUID "+l.id)
			loc := r.header.Get("Location")
			if loc != "/api/v1/log/entries/"+l.id {
				t.Fatalf("duplicate %s: Location %q, want /api/v1/log/entries/%s", l.name, loc, l.id)
			}
			g := e.get(t, loc)
			wantStatus(t, "GET Location of a 409", g, 200)
			id, a := decodeLogEntry(t, g.body)
			if id != l.id {
				t.Fatalf("Location of the 409 leads to %s, want %s", id, l.id)
			}
			e.checkEntry(t, id, a, f.treeID)
		}
		if after := e.treeSize(t); after != before {
			t.Fatalf("duplicates changed the tree size from %d to %d", before, after)
		}
	})

	t.Run("ConcurrentDuplicates", func(t *testing.T) {
		raceDuplicates(t, e, f.s, f.treeID, false)
		t.Run("exactly one 201", func(t *testing.T) {
			raceDuplicates(t, e, f.s, f.treeID, true)
		})
	})

	t.Run("Ping", func(t *testing.T) {
		r := e.get(t, "/ping")
		wantStatus(t, "GET /ping", r, http.StatusOK)
		if string(r.body) != "." {
			t.Errorf("GET /ping body %q, want \".\"", r.body)
		}
	})

	t.Run("BadInput", func(t *testing.T) { testBadInput(t, f) })
}

// raceDuplicates posts one new entry from several goroutines at once, for
// a few rounds: every writer gets 201 or 409 naming the same entry, and the
// tree grows by one. strict also requires exactly one 201.
func raceDuplicates(t *testing.T, e *env, s *tentries.Signer, treeID int64, strict bool) {
	const writers, rounds = 8, 5
	for round := range rounds {
		before := e.treeSize(t)
		pe := hashedRekord(t, s, []byte(fmt.Sprintf("raced %d", round)))
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			resps = make([]httpResp, writers)
			errs  = make([]error, writers)
		)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resps[i], errs[i] = e.try(http.MethodPost, "/api/v1/log/entries", pe)
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		created, conflicts := 0, 0
		var id string
		locs := map[string]bool{}
		for _, r := range resps {
			switch r.status {
			case 201:
				created++
				cid, _ := decodeLogEntry(t, r.body)
				if id != "" && cid != id {
					t.Fatalf("round %d: two 201s for one entry name different entries %s and %s", round, id, cid)
				}
				id = cid
			case 409:
				conflicts++
			default:
				t.Errorf("round %d: concurrent duplicate: unexpected answer %s", round, r)
			}
			locs[r.header.Get("Location")] = true
		}
		if created+conflicts != writers || created == 0 {
			t.Fatalf("round %d: %d writers of one entry: %d created, %d conflicts", round, writers, created, conflicts)
		}
		if strict && created != 1 {
			t.Fatalf("round %d: %d writers of one entry: %d created, %d conflicts; want 1 and %d",
				round, writers, created, conflicts, writers-1)
		}
		if len(locs) != 1 || !locs["/api/v1/log/entries/"+id] {
			t.Fatalf("round %d: Locations %v, want all /api/v1/log/entries/%s", round, locs, id)
		}
		for _, r := range resps {
			if r.status == 409 {
				wantError(t, "concurrent 409", r, 409, id)
			}
		}
		if after := e.treeSize(t); after != before+1 {
			t.Fatalf("round %d: tree grew from %d to %d, want +1", round, before, after)
		}
		r := e.get(t, "/api/v1/log/entries/"+id)
		wantStatus(t, "GET raced entry", r, 200)
		gid, a := decodeLogEntry(t, r.body)
		e.checkEntry(t, gid, a, treeID)
	}
}
