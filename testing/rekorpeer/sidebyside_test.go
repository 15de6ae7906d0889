package rekorpeer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/pki"
	"github.com/sigstore/rekor/pkg/types"

	"github.com/stellaops/tlog/testing/rekorstack"
	"github.com/stellaops/tlog/testing/stack"
)

// peers are rekor-server v1.5.4 (with Trillian v1.8.0) and our logserver,
// on one MariaDB.
type peers struct {
	rekor, ours string // base URLs
}

func startPeers(t *testing.T) peers {
	t.Helper()
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
	ls := stack.StartLogserver(t, stack.TestDatabase(t, db, "stella"), t.TempDir(), nil)
	return peers{rekor: rk.URL, ours: ls.URL}
}

func post(t *testing.T, url string, v any) (int, http.Header, []byte) {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// created is the single entry of a 201 (or search) answer: its entry ID
// and canonical body.
func created(t *testing.T, who string, b []byte) (string, []byte) {
	t.Helper()
	var le models.LogEntry
	if err := json.Unmarshal(b, &le); err != nil || len(le) != 1 {
		t.Fatalf("%s: want one entry, got %s (%v)", who, b, err)
	}
	for id, a := range le {
		body, err := base64.StdEncoding.DecodeString(a.Body.(string))
		if err != nil {
			t.Fatalf("%s: body: %v", who, err)
		}
		return id, body
	}
	panic("unreachable")
}

func uuidOf(entryID string) string { return entryID[len(entryID)-64:] }

// TestEveryKindSideBySide submits the same input of every entry kind and
// version of Rekor v1.5.4 (rekord with each public-key format) to
// rekor-server v1.5.4 and to our log, and requires the same answers: the
// canonical body byte for byte, the UUID (leaf hash), 409 with the same
// UUID on resubmission, the same hit from /api/v1/log/entries/retrieve,
// and the same results from /api/v1/index/retrieve for every search key
// Rekor indexes (artifact hash, e-mail and subject, public key in the
// client's format), and the same refusals of queries Rekor refuses.
func TestEveryKindSideBySide(t *testing.T) {
	p := startPeers(t)
	cases := kindCases(t)
	type done struct {
		c    kindCase
		uuid string
		keys []string
	}
	var all []done
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, _, rb := post(t, p.rekor+"/api/v1/log/entries", c.pe)
			if st != http.StatusCreated {
				t.Fatalf("rekor: %d %s", st, rb)
			}
			st, _, ob := post(t, p.ours+"/api/v1/log/entries", c.pe)
			if st != http.StatusCreated {
				t.Fatalf("ours: %d %s", st, ob)
			}
			rID, rBody := created(t, "rekor", rb)
			oID, oBody := created(t, "ours", ob)
			if !bytes.Equal(rBody, oBody) {
				t.Fatalf("canonical bodies differ:\nrekor %s\nours  %s", rBody, oBody)
			}
			leaf := sha256.Sum256(append([]byte{0}, oBody...))
			if uuidOf(rID) != uuidOf(oID) || uuidOf(oID) != hex.EncodeToString(leaf[:]) {
				t.Fatalf("UUIDs differ: rekor %s ours %s leaf hash %x", rID, oID, leaf)
			}
			for who, url := range map[string]string{"rekor": p.rekor, "ours": p.ours} {
				st, h, b := post(t, url+"/api/v1/log/entries", c.pe)
				if st != http.StatusConflict || !strings.HasSuffix(h.Get("Location"), uuidOf(oID)) {
					t.Errorf("%s resubmission: %d Location %q %s", who, st, h.Get("Location"), b)
				}
				q := &models.SearchLogQuery{}
				q.SetEntries([]models.ProposedEntry{c.pe})
				st, _, b = post(t, url+"/api/v1/log/entries/retrieve", q)
				var hits []models.LogEntry
				if err := json.Unmarshal(b, &hits); st != http.StatusOK || err != nil || len(hits) != 1 {
					t.Fatalf("%s retrieve by entry: %d %s", who, st, b)
				}
				for id := range hits[0] {
					if uuidOf(id) != uuidOf(oID) {
						t.Errorf("%s retrieve by entry: %s, want %s", who, id, oID)
					}
				}
			}
			entry, err := types.UnmarshalEntry(c.pe)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := entry.IndexKeys()
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, done{c, uuidOf(oID), keys})
			t.Logf("%s: %d-byte body, uuid %s, index keys %q", c.name, len(oBody), uuidOf(oID), keys)
		})
	}
	if t.Failed() {
		return
	}
	t.Run("search/refused", func(t *testing.T) { searchRefused(t, p) })
	// Search: every key Rekor indexed for an entry finds it on both, with
	// the same result sets (both logs hold the same entries).
	for _, d := range all {
		t.Run("search/"+d.c.name, func(t *testing.T) {
			var qs []*models.SearchIndex
			for _, k := range d.keys {
				switch {
				case hashKey.MatchString(k):
					qs = append(qs, &models.SearchIndex{Hash: strings.ToUpper(k[strings.Index(k, ":")+1:])})
				case keyHash.MatchString(k):
					// The key's fingerprint: searched by key below.
				case strings.Contains(k, "@"):
					qs = append(qs, &models.SearchIndex{Email: strfmt.Email(k)})
					qs = append(qs, &models.SearchIndex{Subject: k})
				default:
					qs = append(qs, &models.SearchIndex{Subject: k})
				}
			}
			if len(qs) == 0 {
				t.Fatalf("no searchable key among %q", d.keys)
			}
			// Rekor writes its index asynchronously, all keys of an entry in
			// one statement: wait for the first, then compare all.
			deadline := time.Now().Add(20 * time.Second)
			for !contains(search(t, p.rekor, qs[0]), d.uuid) {
				if time.Now().After(deadline) {
					t.Fatalf("rekor never indexed %s under %+v", d.uuid, qs[0])
				}
				time.Sleep(100 * time.Millisecond)
			}
			// A key finds the entry if Rekor indexed its fingerprint (jar
			// entries, for one, are indexed by artifact hash only): then it
			// must, otherwise both must answer the same.
			indexed := len(qs)
			for _, k := range d.c.keys {
				if contains(d.keys, fingerprint(t, k)) {
					qs = append(qs[:indexed], append([]*models.SearchIndex{{PublicKey: k}}, qs[indexed:]...)...)
					indexed++
				} else {
					qs = append(qs, &models.SearchIndex{PublicKey: k})
				}
			}
			for i, q := range qs {
				r, o := search(t, p.rekor, q), search(t, p.ours, q)
				if strings.Join(r, ",") != strings.Join(o, ",") {
					t.Errorf("query %d %s: rekor %v, ours %v", i, describe(q), r, o)
				}
				if i < indexed && !contains(o, d.uuid) {
					t.Errorf("query %d %s: %s not found (rekor %v)", i, describe(q), d.uuid, r)
				}
				t.Logf("%s: %d hits on both", describe(q), len(o))
			}
		})
	}
}

// searchRefused: search queries Rekor refuses (a PKCS#7 key, an unknown
// format, a malformed key, a bad hash or e-mail) get the same status and
// error from both logs; an empty query the same empty list.
func searchRefused(t *testing.T, p peers) {
	jar := readFile(t, rekorModuleDir(t), "pkg/types/jar/v0.0.1/tests/test.jar")
	for name, q := range map[string]any{
		"pkcs7 key":     &models.SearchIndex{PublicKey: pubKey("pkcs7", jarSignatureBlock(t, jar))},
		"unknown":       map[string]any{"publicKey": map[string]any{"format": "gpg", "content": "AAAA"}},
		"malformed key": &models.SearchIndex{PublicKey: pubKey("ssh", []byte("not a key"))},
		"bad hash":      map[string]any{"hash": "sha256:xyz"},
		"bad email":     map[string]any{"email": "not-an-email"},
		"empty":         map[string]any{},
	} {
		rs, _, rb := post(t, p.rekor+"/api/v1/index/retrieve", q)
		os, _, ob := post(t, p.ours+"/api/v1/index/retrieve", q)
		if rs != os || !bytes.Equal(bytes.TrimSpace(rb), bytes.TrimSpace(ob)) {
			t.Errorf("%s: rekor %d %s, ours %d %s", name, rs, rb, os, ob)
		}
		t.Logf("%s: both %d %s", name, os, bytes.TrimSpace(ob))
	}
}

var (
	hashKey = regexp.MustCompile(`^sha(256|384|512):[0-9a-f]+$`)
	keyHash = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// search returns the sorted UUIDs of an /api/v1/index/retrieve answer.
func search(t *testing.T, url string, q *models.SearchIndex) []string {
	t.Helper()
	st, _, b := post(t, url+"/api/v1/index/retrieve", q)
	if st != http.StatusOK {
		t.Fatalf("%s index/retrieve %s: %d %s", url, describe(q), st, b)
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		ids[i] = uuidOf(ids[i])
	}
	sort.Strings(ids)
	return ids
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func describe(q *models.SearchIndex) string {
	switch {
	case q.PublicKey != nil:
		return "publicKey/" + *q.PublicKey.Format
	case q.Hash != "":
		return "hash " + q.Hash
	case q.Email != "":
		return "email " + q.Email.String()
	default:
		return "subject " + q.Subject
	}
}

// fingerprint is the index key of a public key: hex SHA-256 of its
// canonical form, as Rekor's types index it.
func fingerprint(t *testing.T, k *models.SearchIndexPublicKey) string {
	t.Helper()
	af, err := pki.NewArtifactFactory(pki.Format(*k.Format))
	if err != nil {
		t.Fatal(err)
	}
	key, err := af.NewPublicKey(bytes.NewReader(k.Content))
	if err != nil {
		t.Fatal(err)
	}
	c, err := key.CanonicalValue()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:])
}
