package queue_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
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
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// env is a logserver (v1 and v2 logs, the queue) over a private MariaDB,
// and a connection of the test's own to its database.
type env struct {
	m      *stack.MariaDB
	dsn    string
	dir    string
	ls     *stack.Logserver
	db     *sql.DB
	s      *entries.Signer
	ver    signature.Verifier // the v1 log key
	v2vkey string
}

func newEnv(t testing.TB, mutate func(*config.Config)) *env {
	t.Helper()
	m := stack.TestMariaDB(t, false)
	e := &env{m: m, dsn: stack.TestDatabase(t, m, "queue"), dir: t.TempDir()}
	e.start(t, mutate)
	return e
}

func (e *env) start(t testing.TB, mutate func(*config.Config)) {
	t.Helper()
	e.ls = stack.StartLogserver(t, e.dsn, e.dir, func(c *config.Config) {
		c.RekorV2 = &config.RekorV2{URL: "http://127.0.0.1", KeyFile: filepath.Join(e.dir, "v2.pem"), CreateKey: true,
			VKeyFile: filepath.Join(e.dir, "v2.vkey")}
		c.Queue.Poll = 50 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	})
	e.connect(t)
}

// connect opens the test's connection and loads the logs' keys.
func (e *env) connect(t testing.TB) {
	t.Helper()
	if e.db == nil {
		db, err := sql.Open("mysql", e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		e.db = db
		if e.s, err = entries.NewSigner(); err != nil {
			t.Fatal(err)
		}
	}
	pemBytes, err := os.ReadFile(e.ls.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if e.ver, err = signature.LoadVerifier(pub, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if vk, err := os.ReadFile(filepath.Join(e.dir, "v2.vkey")); err == nil {
		e.v2vkey = strings.TrimSpace(string(vk))
	}
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func do(t testing.TB, method, url string, body []byte, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

// v1Body is a hashedrekord proposal for artifact.
func (e *env) v1Body(t testing.TB, artifact string) []byte {
	t.Helper()
	pe, err := e.s.HashedRekord([]byte(artifact))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(pe)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var v2Key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

// v2Body is a hashedrekord 0.0.2 request for artifact.
func v2Body(t testing.TB, artifact string) []byte {
	t.Helper()
	d := sha256.Sum256([]byte(artifact))
	sig, err := ecdsa.SignASN1(rand.Reader, v2Key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&v2Key.PublicKey)
	return []byte(fmt.Sprintf(`{"hashedRekordRequestV002":{"digest":%q,"signature":{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}}}`,
		base64.StdEncoding.EncodeToString(d[:]), base64.StdEncoding.EncodeToString(sig), base64.StdEncoding.EncodeToString(der)))
}

// enqueue posts body to the queue of api and returns the id of its 202.
func (e *env) enqueue(t testing.TB, api string, body []byte, hdr map[string]string) string {
	t.Helper()
	a := do(t, "POST", e.ls.URL+"/api/"+api+"/queue/entries", body, hdr)
	var r struct{ ID, Status string }
	if a.code != http.StatusAccepted || json.Unmarshal(a.body, &r) != nil || r.Status != "transparency_pending" || len(r.ID) != 32 {
		t.Fatalf("enqueue: %d %s", a.code, a.body)
	}
	if loc := a.header.Get("Location"); loc != "/api/"+api+"/queue/entries/"+r.ID {
		t.Fatalf("Location %q", loc)
	}
	return r.ID
}

// status is GET /api/v1/queue/entries/{id}.
type status struct {
	ID            string          `json:"id"`
	Status        string          `json:"status"`
	API           string          `json:"api"`
	Tier          string          `json:"tier"`
	Priority      int             `json:"priority"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at"`
	LastError     string          `json:"last_error"`
	LogIndex      *int64          `json:"log_index"`
	UUID          string          `json:"uuid"`
	Entry         json.RawMessage `json:"entry"`
}

func getStatus(t testing.TB, base, id string) (int, status) {
	t.Helper()
	a := do(t, "GET", base+"/api/v1/queue/entries/"+id, nil, nil)
	var st status
	if a.code == http.StatusOK {
		if err := json.Unmarshal(a.body, &st); err != nil {
			t.Fatalf("status %s: %v", a.body, err)
		}
	}
	return a.code, st
}

// waitState polls id until its status is want.
func waitState(t testing.TB, base, id, want string, d time.Duration) status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, st := getStatus(t, base, id)
		if code == http.StatusOK && st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued entry %s: %d %+v, want %s", id, code, st, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verifyV1 checks a v1 LogEntry with Rekor's own verifier (inclusion
// proof, checkpoint signature, SET) and returns its UUID and index.
func (e *env) verifyV1(t testing.TB, raw []byte) (string, int64) {
	t.Helper()
	var le models.LogEntry
	if err := json.Unmarshal(raw, &le); err != nil || len(le) != 1 {
		t.Fatalf("v1 entry %s: %v", raw, err)
	}
	for id, a := range le {
		if err := verify.VerifyLogEntry(context.Background(), &a, e.ver); err != nil {
			t.Fatalf("rekor verify.VerifyLogEntry: %v", err)
		}
		return id, *a.LogIndex
	}
	panic("unreachable")
}

// count is a COUNT(*) query's answer.
func (e *env) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// metric is the value of a sample line of /metrics (name with labels, as
// printed), -1 if absent.
func metric(t testing.TB, base, sample string) float64 {
	t.Helper()
	a := do(t, "GET", base+"/metrics", nil, nil)
	for _, l := range strings.Split(string(a.body), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

func boolp(b bool) *bool { return &b }
