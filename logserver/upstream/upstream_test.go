package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/internal/retry"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/upstream"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// env is two logservers on the package's MariaDB, each on its own
// database: up (the upstream, Rekor v1 and v2 logs) and local, which
// replays to up.
type env struct {
	up       *stack.Logserver
	upDir    string
	local    *stack.Logserver
	localDSN string
}

func startUpstream(t *testing.T) (*stack.Logserver, string) {
	dir := t.TempDir()
	up := stack.StartLogserver(t, newDatabase(t, "up"), dir, func(c *config.Config) {
		c.Hostname = "up.test"
		c.RekorV2 = &config.RekorV2{URL: "http://up2.test", KeyFile: filepath.Join(dir, "v2.pem"), CreateKey: true,
			VKeyFile: filepath.Join(dir, "v2.vkey")}
	})
	return up, dir
}

// startLocal starts the replaying logserver; upV1 and upV2 are the
// upstream URLs its v1 and v2 logs replay to.
func (e *env) startLocal(t *testing.T, upV1, upV2 string, mutate func(*config.Config)) {
	e.localDSN = newDatabase(t, "local")
	dir := t.TempDir()
	e.local = stack.StartLogserver(t, e.localDSN, dir, func(c *config.Config) {
		c.RekorV2 = &config.RekorV2{URL: "http://local2.test", KeyFile: filepath.Join(dir, "v2.pem"), CreateKey: true}
		c.Upstream = &config.Upstream{
			V1:           &config.UpstreamLog{URL: upV1, PublicKeyFile: e.up.PublicKeyFile},
			V2:           &config.UpstreamLog{URL: upV2, PublicKeyFile: filepath.Join(e.upDir, "v2.vkey")},
			PollInterval: 50 * time.Millisecond,
			Timeout:      10 * time.Second,
			Retry:        retry.Policy{InitialDelay: 100 * time.Millisecond, MaxDelay: 400 * time.Millisecond},
		}
		if mutate != nil {
			mutate(c)
		}
	})
}

func newEnv(t *testing.T) *env {
	e := &env{}
	e.up, e.upDir = startUpstream(t)
	return e
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func post(t *testing.T, u string, body []byte) answer {
	t.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func get(t *testing.T, u string, out any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", u, err, b)
		}
	}
	return resp.StatusCode
}

// v1Entries are a hashedrekord, a dsse and an intoto 0.0.2 proposal (the
// last two are not resubmittable from their canonical bodies).
func v1Entries(t *testing.T, s *entries.Signer, tag string) [][]byte {
	var out [][]byte
	for i, mk := range []func([]byte) (models.ProposedEntry, error){
		s.HashedRekord, s.DSSE, func(a []byte) (models.ProposedEntry, error) { return s.Intoto("0.0.2", a) },
	} {
		pe, err := mk([]byte(fmt.Sprintf("%s artifact %d", tag, i)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(pe)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

type key struct {
	k   *ecdsa.PrivateKey
	der []byte
}

func newKey(t *testing.T) key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return key{k, der}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// v2HashedRekord is a hashedrekord 0.0.2 request.
func v2HashedRekord(t *testing.T, k key, artifact string) []byte {
	d := sha256.Sum256([]byte(artifact))
	sig, err := ecdsa.SignASN1(rand.Reader, k.k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(fmt.Sprintf(`{"hashedRekordRequestV002":{"digest":%q,"signature":{"content":%q,"verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}}}}`,
		b64(d[:]), b64(sig), b64(k.der)))
}

// v2DSSE is a dsse 0.0.2 request of a statement signed by every key.
func v2DSSE(t *testing.T, artifact string, keys ...key) []byte {
	payload := []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":%q,"digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`, artifact))
	const typ = "application/vnd.in-toto+json"
	d := sha256.Sum256([]byte(fmt.Sprintf("DSSEv1 %d %s %d %s", len(typ), typ, len(payload), payload)))
	var sigs, vers []string
	for _, k := range keys {
		sig, err := ecdsa.SignASN1(rand.Reader, k.k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, fmt.Sprintf(`{"sig":%q,"keyid":""}`, b64(sig)))
		vers = append(vers, fmt.Sprintf(`{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":%q}}`, b64(k.der)))
	}
	return []byte(fmt.Sprintf(`{"dsseRequestV002":{"envelope":{"payload":%q,"payloadType":%q,"signatures":[%s]},"verifiers":[%s]}}`,
		b64(payload), typ, strings.Join(sigs, ","), strings.Join(vers, ",")))
}

// written is an entry the local log took: its leaf hash and canonical body.
type written struct {
	api  string
	leaf string
	body []byte
	req  []byte
}

func writeV1(t *testing.T, base string, req []byte) written {
	t.Helper()
	a := post(t, base+"/api/v1/log/entries", req)
	if a.code != http.StatusCreated {
		t.Fatalf("v1 write: %d %s", a.code, a.body)
	}
	var le models.LogEntry
	if err := json.Unmarshal(a.body, &le); err != nil {
		t.Fatal(err)
	}
	for uuid, e := range le {
		body, _ := base64.StdEncoding.DecodeString(e.Body.(string))
		return written{api: "v1", leaf: uuid[len(uuid)-64:], body: body, req: req}
	}
	t.Fatal("no entry")
	return written{}
}

func writeV2(t *testing.T, base string, req []byte) written {
	t.Helper()
	a := post(t, base+"/api/v2/log/entries", req)
	if a.code != http.StatusCreated {
		t.Fatalf("v2 write: %d %s", a.code, a.body)
	}
	var tle struct {
		CanonicalizedBody []byte `json:"canonicalizedBody"`
	}
	if err := json.Unmarshal(a.body, &tle); err != nil {
		t.Fatal(err)
	}
	return written{api: "v2", leaf: hex.EncodeToString(rfc6962.DefaultHasher.HashLeaf(tle.CanonicalizedBody)), body: tle.CanonicalizedBody, req: req}
}

func list(t *testing.T, base, state string) upstream.List {
	t.Helper()
	var l upstream.List
	if code := get(t, base+"/api/v1/upstream/entries?state="+state, &l); code != http.StatusOK {
		t.Fatalf("list %s: %d", state, code)
	}
	return l
}

// metric returns the value of the sample name{labels} on base's /metrics
// (0 if absent).
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upstreamSize is the upstream's v1 tree size and v2 checkpoint size.
func upstreamSizes(t *testing.T, up *stack.Logserver) (int64, int64) {
	var info struct {
		TreeSize int64 `json:"treeSize"`
	}
	if code := get(t, up.URL+"/api/v1/log", &info); code != http.StatusOK {
		t.Fatalf("upstream log info: %d", code)
	}
	resp, err := http.Get(up.URL + "/api/v2/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cp, _ := io.ReadAll(resp.Body)
	lines := strings.Split(string(cp), "\n")
	if len(lines) < 2 {
		t.Fatalf("upstream v2 checkpoint %q", cp)
	}
	v2, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatalf("upstream v2 checkpoint %q", cp)
	}
	return info.TreeSize, v2
}

// The proof: entries written while the upstream is stopped wait as
// transparency_pending (API and metrics), drain when it is back, each once,
// with the same canonical bodies upstream; an entry the upstream already
// has is recorded through its 409; a refused local write leaves no row.
func TestReplayThroughOutage(t *testing.T) {
	e := newEnv(t)
	e.startLocal(t, e.up.URL, e.up.URL, func(c *config.Config) { c.Sequencer.MaxEntryBytes = 1500 })
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)

	// An entry the upstream has already: forwarded through 409.
	pre := v1Entries(t, s, "pre")[0]
	upFirst := writeV1(t, e.up.URL, pre)
	preLocal := writeV1(t, e.local.URL, pre)
	waitFor(t, "the 409 path", 20*time.Second, func() bool {
		return metric(t, e.local.URL, `logserver_upstream_forwarded_total{log="v1"}`) == 1
	})
	var byLeaf upstream.List
	if code := get(t, e.local.URL+"/api/v1/upstream/entries/"+preLocal.leaf, &byLeaf); code != http.StatusOK ||
		len(byLeaf.Entries) != 1 || byLeaf.Entries[0].Status != "forwarded" || byLeaf.Entries[0].UpstreamIndex == nil ||
		*byLeaf.Entries[0].UpstreamIndex != 0 || !strings.HasSuffix(byLeaf.Entries[0].UpstreamUUID, upFirst.leaf) || !byLeaf.Entries[0].UpstreamVerified ||
		byLeaf.Entries[0].UpstreamTime == nil {
		t.Fatalf("entry the upstream had: %d %+v", code, byLeaf)
	}

	e.up.Stop()
	var ws []written
	for _, req := range v1Entries(t, s, "outage") {
		ws = append(ws, writeV1(t, e.local.URL, req))
	}
	ws = append(ws, writeV2(t, e.local.URL, v2HashedRekord(t, k, "outage v2")), writeV2(t, e.local.URL, v2DSSE(t, "outage v2 dsse", k)))

	// A refused local write (the v2 dsse canonical body of five signatures
	// exceeds sequencer.max_entry_bytes) and an invalid one leave no row.
	big := post(t, e.local.URL+"/api/v2/log/entries", v2DSSE(t, "too big", newKey(t), newKey(t), newKey(t), newKey(t), newKey(t)))
	if big.code == http.StatusCreated {
		t.Fatalf("a dsse of 5 signatures was logged: %s", big.body)
	}
	bad := v1Entries(t, s, "bad")[0]
	bad = bytes.Replace(bad, []byte(`"content":"`), []byte(`"content":"AAAA`), 1)
	if a := post(t, e.local.URL+"/api/v1/log/entries", bad); a.code != http.StatusBadRequest {
		t.Fatalf("invalid entry: %d %s", a.code, a.body)
	}

	waitFor(t, "failed attempts while the upstream is down", 20*time.Second, func() bool {
		return metric(t, e.local.URL, `logserver_upstream_attempt_failures_total{log="v1",reason="unavailable"}`) >= 2 &&
			metric(t, e.local.URL, `logserver_upstream_attempt_failures_total{log="v2",reason="unavailable"}`) >= 2
	})
	pending := list(t, e.local.URL, "pending")
	if pending.Pending != 5 || len(pending.Entries) != 5 || pending.OldestPending == nil {
		t.Fatalf("pending while the upstream is down: %+v", pending)
	}
	attempted := 0
	for i, p := range pending.Entries {
		if p.Status != "transparency_pending" || p.LeafHash != ws[i].leaf || p.Log != ws[i].api || p.LocalIndex == nil {
			t.Fatalf("pending entry %d: %+v, want %s %s", i, p, ws[i].api, ws[i].leaf)
		}
		if p.Attempts > 0 {
			attempted++
			if !strings.Contains(p.LastError, "connect") {
				t.Fatalf("pending entry %d: last error %q", i, p.LastError)
			}
		}
	}
	if attempted == 0 {
		t.Fatal("no pending entry records an attempt")
	}
	var v2Only upstream.List
	if get(t, e.local.URL+"/api/v1/upstream/entries?state=pending&log=v2", &v2Only); v2Only.Pending != 2 || len(v2Only.Entries) != 2 || v2Only.Entries[0].Log != "v2" {
		t.Fatalf("pending of the v2 log: %+v", v2Only)
	}
	var page upstream.List
	if get(t, e.local.URL+"/api/v1/upstream/entries?state=pending&limit=2", &page); len(page.Entries) != 2 || page.Next == "" {
		t.Fatalf("first page of 2: %+v", page)
	}
	if code := get(t, e.local.URL+"/api/v1/upstream/entries?state=bogus", nil); code != http.StatusBadRequest {
		t.Fatalf("state=bogus: %d", code)
	}
	if v1, v2 := metric(t, e.local.URL, `logserver_upstream_pending_entries{log="v1"}`), metric(t, e.local.URL, `logserver_upstream_pending_entries{log="v2"}`); v1 != 3 || v2 != 2 {
		t.Fatalf("pending gauges v1 %v v2 %v, want 3 and 2", v1, v2)
	}
	if age := metric(t, e.local.URL, `logserver_upstream_oldest_pending_age_seconds{log="v1"}`); age <= 0 {
		t.Fatalf("oldest pending age %v", age)
	}
	if n := countRows(t, e.localDSN); n != 6 { // 5 pending, 1 forwarded
		t.Fatalf("%d outbox rows, want 6 (the refused writes left one)", n)
	}

	e.up.Restart()
	waitFor(t, "the backlog to drain", 30*time.Second, func() bool { return list(t, e.local.URL, "pending").Pending == 0 })
	fwd := list(t, e.local.URL, "forwarded")
	if len(fwd.Entries) != 6 {
		t.Fatalf("forwarded: %+v", fwd)
	}
	if v1, v2 := upstreamSizes(t, e.up); v1 != 4 || v2 != 2 {
		t.Fatalf("upstream sizes v1 %d v2 %d, want 4 and 2 (each entry once)", v1, v2)
	}
	for i, w := range ws {
		f := fwd.Entries[i+1]
		if f.LeafHash != w.leaf || f.UpstreamIndex == nil || !f.UpstreamVerified {
			t.Fatalf("forwarded %d: %+v", i, f)
		}
		switch w.api {
		case "v1":
			// The upstream's entry has our canonical body (same leaf).
			var le models.LogEntry
			if code := get(t, e.up.URL+"/api/v1/log/entries/"+w.leaf, &le); code != http.StatusOK {
				t.Fatalf("upstream entry %s: %d", w.leaf, code)
			}
			for _, ue := range le {
				body, _ := base64.StdEncoding.DecodeString(ue.Body.(string))
				if !bytes.Equal(body, w.body) || *ue.LogIndex != *f.UpstreamIndex {
					t.Fatalf("upstream entry %d differs: index %d/%d\n%s\n%s", i, *ue.LogIndex, *f.UpstreamIndex, body, w.body)
				}
			}
		case "v2":
			// Resubmitting upstream finds the same entry at that index.
			a := post(t, e.up.URL+"/api/v2/log/entries", w.req)
			if a.code != http.StatusConflict || a.header.Get("X-Log-Index") != strconv.FormatInt(*f.UpstreamIndex, 10) {
				t.Fatalf("upstream v2 entry %d: %d %s (X-Log-Index %q, want %d)", i, a.code, a.body, a.header.Get("X-Log-Index"), *f.UpstreamIndex)
			}
		}
	}
	if v1, v2 := metric(t, e.local.URL, `logserver_upstream_forwarded_total{log="v1"}`), metric(t, e.local.URL, `logserver_upstream_forwarded_total{log="v2"}`); v1 != 4 || v2 != 2 {
		t.Fatalf("forwarded counters v1 %v v2 %v", v1, v2)
	}
	if p := metric(t, e.local.URL, `logserver_upstream_pending_entries{log="v1"}`); p != 0 {
		t.Fatalf("pending gauge after the drain: %v", p)
	}
	if ts := metric(t, e.local.URL, `logserver_upstream_last_success_timestamp_seconds{log="v2"}`); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Fatalf("last success %v", ts)
	}
}

func countRows(t *testing.T, dsn string) int {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM upstream_outbox").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A 429 with Retry-After from the upstream is honoured (the next attempt
// waits for it, not for the much shorter retry policy), and the entry is
// then forwarded once.
func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t)
	target, _ := url.Parse(e.up.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var posts []time.Time
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			mu.Lock()
			posts = append(posts, time.Now())
			n := len(posts)
			mu.Unlock()
			if n == 1 {
				w.Header().Set("Retry-After", "2")
				http.Error(w, `{"code":429,"message":"rate limited"}`, http.StatusTooManyRequests)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	e.startLocal(t, front.URL, e.up.URL, nil)
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	w := writeV1(t, e.local.URL, v1Entries(t, s, "429")[1])
	waitFor(t, "the forward after 429", 20*time.Second, func() bool {
		return metric(t, e.local.URL, `logserver_upstream_forwarded_total{log="v1"}`) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 2 {
		t.Fatalf("%d POSTs upstream, want 2", len(posts))
	}
	if gap := posts[1].Sub(posts[0]); gap < 2*time.Second {
		t.Fatalf("retried %v after a 429 with Retry-After: 2", gap)
	}
	if n := metric(t, e.local.URL, `logserver_upstream_attempt_failures_total{log="v1",reason="rate_limited"}`); n != 1 {
		t.Fatalf("rate_limited failures %v", n)
	}
	var l upstream.List
	if code := get(t, e.local.URL+"/api/v1/upstream/entries/"+w.leaf, &l); code != http.StatusOK || l.Entries[0].Status != "forwarded" || l.Entries[0].Attempts != 2 {
		t.Fatalf("after 429: %d %+v", code, l)
	}
}

// A crash between the outbox insert and the answer leaves the row
// awaiting_local. Such a row is forwarded once its entry is in the local
// log (the write reached it before the crash), and dropped after the grace
// if the entry never appears (the crash came before the write); a younger
// one waits. The crash is reproduced by putting the rows in the state the
// dead process leaves them in, with both logservers stopped.
func TestCrashLeftovers(t *testing.T) {
	e := newEnv(t)
	e.startLocal(t, e.up.URL, e.up.URL, nil)
	e.up.Stop()
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	reqs := v1Entries(t, s, "crash")
	logged := writeV1(t, e.local.URL, reqs[2]) // intoto: the original body matters
	e.local.Stop()

	db, err := sql.Open("mysql", e.localDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	leaf, _ := hex.DecodeString(logged.leaf)
	if res, err := db.Exec("UPDATE upstream_outbox SET state = 'awaiting_local', attempts = 0, last_error = NULL, local_index = NULL WHERE leaf_hash = ?", leaf); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%d rows for the logged entry", n)
	}
	never := sha256.Sum256([]byte("never logged, old"))
	young := sha256.Sum256([]byte("never logged, young"))
	if _, err := db.Exec("INSERT INTO upstream_outbox (api, leaf_hash, body, state, created_at) VALUES"+
		" ('v1', ?, ?, 'awaiting_local', NOW(6) - INTERVAL 2 HOUR), ('v1', ?, ?, 'awaiting_local', NOW(6))",
		never[:], reqs[0], young[:], reqs[1]); err != nil {
		t.Fatal(err)
	}

	e.up.Restart()
	e.local.Restart()
	waitFor(t, "the logged entry to be forwarded", 20*time.Second, func() bool {
		return metric(t, e.local.URL, `logserver_upstream_forwarded_total{log="v1"}`) == 1
	})
	waitFor(t, "the old leftover to be dropped", 20*time.Second, func() bool {
		return metric(t, e.local.URL, `logserver_upstream_dropped_total{log="v1"}`) == 1
	})
	var le models.LogEntry
	if code := get(t, e.up.URL+"/api/v1/log/entries/"+logged.leaf, &le); code != http.StatusOK {
		t.Fatalf("the logged entry is not upstream: %d", code)
	}
	p := list(t, e.local.URL, "pending")
	if p.Pending != 1 || len(p.Entries) != 1 || p.Entries[0].LeafHash != hex.EncodeToString(young[:]) || p.Entries[0].LocalIndex != nil ||
		p.Entries[0].Status != "awaiting_local" {
		t.Fatalf("pending after the restart: %+v (want only the young leftover, not in the local log)", p)
	}
	if code := get(t, e.local.URL+"/api/v1/upstream/entries/"+hex.EncodeToString(never[:]), nil); code != http.StatusNotFound {
		t.Fatalf("the old leftover: %d, want 404", code)
	}
}

// A full outbox refuses local writes with 503 (never log what cannot be
// replayed): nothing is logged locally.
func TestOutboxFull(t *testing.T) {
	e := newEnv(t)
	e.up.Stop()
	e.startLocal(t, e.up.URL, e.up.URL, func(c *config.Config) { c.Upstream.MaxOutbox = 2 })
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	reqs := v1Entries(t, s, "full")
	writeV1(t, e.local.URL, reqs[0])
	writeV1(t, e.local.URL, reqs[1])
	a := post(t, e.local.URL+"/api/v1/log/entries", reqs[2])
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !strings.Contains(string(a.body), "upstream replay") {
		t.Fatalf("write into a full outbox: %d %q %s", a.code, a.header.Get("Retry-After"), a.body)
	}
	var info struct {
		TreeSize int64 `json:"treeSize"`
	}
	if get(t, e.local.URL+"/api/v1/log", &info); info.TreeSize != 2 {
		t.Fatalf("local tree size %d after the refusal, want 2", info.TreeSize)
	}
	if n := metric(t, e.local.URL, `logserver_upstream_outbox_full_total{log="v1"}`); n != 1 {
		t.Fatalf("outbox_full_total %v", n)
	}
	// Once the upstream takes the backlog, writes are accepted again.
	e.up.Restart()
	waitFor(t, "the drain", 20*time.Second, func() bool { return list(t, e.local.URL, "pending").Pending == 0 })
	waitFor(t, "room in the outbox", 10*time.Second, func() bool {
		return post(t, e.local.URL+"/api/v1/log/entries", reqs[2]).code == http.StatusCreated
	})
}

// budget admits the first n submissions, then says "not now" once for
// wait, then admits everything; it records what it was asked.
type budget struct {
	mu       sync.Mutex
	n        int
	wait     time.Duration
	calls    []string
	deniedAt time.Time
	after    time.Time // first admission after the denial
}

func (b *budget) Take(_ context.Context, tenant, tier string) (bool, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, tenant+"/"+tier)
	switch {
	case len(b.calls) <= b.n:
		return true, 0, nil
	case b.deniedAt.IsZero():
		b.deniedAt = time.Now()
		return false, b.wait, nil
	case b.after.IsZero():
		b.after = time.Now()
	}
	return true, 0, nil
}

// The drain stays within the budget: a denial stops the forwarder for the
// budget's Retry-After, and every submission is charged to the configured
// tenant and tier. The package is driven directly (a fake budget, the
// real database, store and upstream logserver).
func TestDrainWithinBudget(t *testing.T) {
	e := newEnv(t)
	dsn := newDatabase(t, "local")
	local := stack.StartLogserver(t, dsn, t.TempDir(), nil) // no upstream of its own
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key, err := os.ReadFile(e.up.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(db)
	b := &budget{n: 2, wait: 1500 * time.Millisecond}
	pol := retry.Policy{InitialDelay: 50 * time.Millisecond}
	if err := pol.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := upstream.New(upstream.Config{DB: db, Entries: st,
		Logs:    []upstream.Log{{API: upstream.V1, URL: e.up.URL, Key: key, TreeID: st.ActiveTree}},
		Timeout: 10 * time.Second, PollInterval: 50 * time.Millisecond, Grace: time.Hour, Retry: pol,
		Tenant: "t1", Tier: "graph", Budget: b, MaxOutbox: 100, Parallel: 1, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	ob := r.Outbox(upstream.V1)
	for i := range 5 {
		pe, err := s.HashedRekord([]byte(fmt.Sprintf("budget %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := json.Marshal(pe)
		w := writeV1(t, local.URL, req)
		leaf, _ := hex.DecodeString(w.leaf)
		done, err := ob.Before(t.Context(), [32]byte(leaf), req)
		if err != nil {
			t.Fatal(err)
		}
		done(true)
	}
	r.Start(t.Context())
	defer r.Close()
	waitFor(t, "all five upstream", 20*time.Second, func() bool {
		v1, _ := upstreamSizes(t, e.up)
		return v1 == 5
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) != 6 || b.calls[0] != "t1/graph" {
		t.Fatalf("budget calls %v, want 6 (5 admitted, 1 denied) as t1/graph", b.calls)
	}
	if gap := b.after.Sub(b.deniedAt); gap < b.wait {
		t.Fatalf("next submission %v after the budget said wait %v", gap, b.wait)
	}
}

// SIGKILL of the replaying logserver (a real process) under concurrent
// hashedrekord and dsse writes while it forwards: after a restart every
// entry of the local log, acknowledged or not, reaches the upstream, and
// nothing else does (the upstream's size is the local log's); rows the
// crash left without a local entry are dropped after the grace.
func TestKillUnderLoad(t *testing.T) {
	e := newEnv(t)
	dsn := newDatabase(t, "local")
	dir := t.TempDir()
	ports, err := stack.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	cfgPath := filepath.Join(dir, "logserver.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nhostname: stella.test\ndatabase:\n  dsn: %q\n  allow_non_durable: true\n"+
		"key:\n  file: %q\n  create: true\nsequencer:\n  interval: 20ms\n"+
		"upstream:\n  v1: {url: %q, public_key_file: %q}\n  timeout: 2s\n  poll_interval: 50ms\n  grace: 15s\n"+
		"  retry: {initial_delay: 100ms, max_delay: 500ms}\n",
		ports[0], dsn, filepath.Join(dir, "log-key.pem"), e.up.URL, e.up.PublicKeyFile)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+cfgPath)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the child logserver", 2*time.Minute, func() bool {
			r, err := http.Get(base + "/readyz")
			if err != nil {
				return false
			}
			r.Body.Close()
			return r.StatusCode == http.StatusOK
		})
		return cmd
	}
	child := start()
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })

	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string][]byte{} // leaf -> canonical body
	var seq atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				var pe models.ProposedEntry
				var err error
				if w%2 == 0 {
					pe, err = s.HashedRekord([]byte(fmt.Sprintf("kill %d", n)))
				} else {
					pe, err = s.DSSE([]byte(fmt.Sprintf("kill %d", n)))
				}
				if err != nil {
					t.Error(err)
					return
				}
				req, _ := json.Marshal(pe)
				resp, err := http.Post(base+"/api/v1/log/entries", "application/json", bytes.NewReader(req))
				if err != nil {
					continue // killed mid-request: not acknowledged
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					continue
				}
				var le models.LogEntry
				if json.Unmarshal(body, &le) != nil {
					continue
				}
				for id, v := range le {
					b, _ := base64.StdEncoding.DecodeString(v.Body.(string))
					mu.Lock()
					acked[id[len(id)-64:]] = b
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	child.Process.Kill() // SIGKILL
	child.Wait()
	close(stop)
	wg.Wait()
	child = start()
	if len(acked) < 20 {
		t.Fatalf("only %d entries acknowledged under load", len(acked))
	}
	waitFor(t, "the drain after the restart", 2*time.Minute, func() bool { return list(t, base, "pending").Pending == 0 })

	var info struct {
		TreeSize int64 `json:"treeSize"`
	}
	get(t, base+"/api/v1/log", &info)
	upSize, _ := upstreamSizes(t, e.up)
	if upSize != info.TreeSize {
		t.Fatalf("upstream has %d entries, the local log %d", upSize, info.TreeSize)
	}
	for leaf, body := range acked {
		var le models.LogEntry
		if code := get(t, e.up.URL+"/api/v1/log/entries/"+leaf, &le); code != http.StatusOK {
			t.Fatalf("acknowledged entry %s is not upstream: %d", leaf, code)
		}
		for _, v := range le {
			b, _ := base64.StdEncoding.DecodeString(v.Body.(string))
			if !bytes.Equal(b, body) {
				t.Fatalf("upstream entry %s differs", leaf)
			}
		}
	}
	fwd := list(t, base, "forwarded")
	t.Logf("%d acknowledged, local size %d, upstream size %d, %d rows forwarded, %v dropped", len(acked), info.TreeSize, upSize,
		len(fwd.Entries), metric(t, base, `logserver_upstream_dropped_total{log="v1"}`))
}

// An upstream that refuses an entry (a 4xx other than 409 and 429) marks
// it failed with the reason; an answer that does not verify with the
// configured key (here: another log's key) marks it failed as unverified.
// Both are kept and listed for the operator, and nothing retries them.
func TestRefusedAndUnverified(t *testing.T) {
	e := newEnv(t)
	target, _ := url.Parse(e.up.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var v2Posts atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/v2/log/entries" {
			v2Posts.Add(1)
			http.Error(w, `{"code":3,"message":"invalid hashedrekord request"}`, http.StatusBadRequest)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	e.startLocal(t, e.up.URL, front.URL, func(c *config.Config) {
		// The local log's own key stands for a wrong upstream key.
		c.Upstream.V1.PublicKeyFile = c.Key.PublicKeyFile
	})
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	w1 := writeV1(t, e.local.URL, v1Entries(t, s, "unverified")[0])
	w2 := writeV2(t, e.local.URL, v2HashedRekord(t, newKey(t), "refused"))
	waitFor(t, "both to fail", 20*time.Second, func() bool { return len(list(t, e.local.URL, "failed").Entries) == 2 })
	failed := list(t, e.local.URL, "failed").Entries
	for _, f := range failed {
		switch f.LeafHash {
		case w1.leaf:
			if f.Status != "failed" || !strings.Contains(f.LastError, "does not verify") || f.Attempts != 1 {
				t.Fatalf("unverified: %+v", f)
			}
		case w2.leaf:
			if f.Status != "failed" || !strings.Contains(f.LastError, "400") || !strings.Contains(f.LastError, "invalid hashedrekord request") || f.Attempts != 1 {
				t.Fatalf("refused: %+v", f)
			}
		default:
			t.Fatalf("failed row %+v", f)
		}
	}
	if n := metric(t, e.local.URL, `logserver_upstream_attempt_failures_total{log="v1",reason="unverified"}`); n != 1 {
		t.Fatalf("unverified failures %v", n)
	}
	if n := metric(t, e.local.URL, `logserver_upstream_attempt_failures_total{log="v2",reason="refused"}`); n != 1 {
		t.Fatalf("refused failures %v", n)
	}
	if g := metric(t, e.local.URL, `logserver_upstream_failed_entries{log="v2"}`); g != 1 {
		t.Fatalf("failed gauge %v", g)
	}
	time.Sleep(500 * time.Millisecond) // several poll intervals: no retry
	if n := v2Posts.Load(); n != 1 {
		t.Fatalf("%d POSTs of a refused entry, want 1", n)
	}
	if p := list(t, e.local.URL, "pending"); p.Pending != 0 {
		t.Fatalf("pending %+v", p)
	}
}
