package api_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/witness/api"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/store"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

const witnessName = "witness.test/w1"

// harness is a witness served over real HTTP on loopback, with its state in
// a bbolt file that survives restart().
type harness struct {
	t       testing.TB
	dbPath  string
	signer  cosig.Cosigner
	budgets tlogwitness.Budgets
	st      *store.Store
	api     *api.Server
	srv     *httptest.Server
}

func newHarness(t testing.TB, budgets tlogwitness.Budgets, logs ...*testlog.Log) *harness {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := cosig.NewSigner(witnessName, key)
	if err != nil {
		t.Fatal(err)
	}
	return newHarnessWith(t, signer, budgets, logs...)
}

// newHarnessWith is newHarness with the given cosigning key.
func newHarnessWith(t testing.TB, signer cosig.Cosigner, budgets tlogwitness.Budgets, logs ...*testlog.Log) *harness {
	t.Helper()
	h := &harness{t: t, dbPath: filepath.Join(t.TempDir(), "witness.db"), signer: signer, budgets: budgets}
	h.start()
	for _, l := range logs {
		h.addLog(l.Origin, l.VKey)
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) addLog(origin string, vkeys ...string) {
	h.t.Helper()
	if err := h.st.AddLog(store.Log{Origin: origin, VerifierKeys: vkeys, Source: store.SourceAdmin}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) start() {
	h.t.Helper()
	st, err := store.Open(h.dbPath, store.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.st = st
	w := tlogwitness.New(st, h.signer, tlogwitness.Options{Budgets: h.budgets})
	h.api = api.New(api.Config{Witness: w, ServeMetrics: true})
	h.srv = httptest.NewServer(h.api)
}

func (h *harness) stop() {
	if h.srv != nil {
		h.srv.Close()
		h.srv = nil
	}
	if h.st != nil {
		if err := h.st.Close(); err != nil {
			h.t.Error(err)
		}
		h.st = nil
	}
}

// restart closes the server and the store and opens them again.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

type response struct {
	code int
	ct   string
	body string
	hdr  http.Header
}

func (h *harness) post(body []byte) response {
	h.t.Helper()
	resp, err := http.Post(h.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b), hdr: resp.Header}
}

func (h *harness) get(path string) response {
	h.t.Helper()
	resp, err := http.Get(h.srv.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b), hdr: resp.Header}
}

func wantCode(t *testing.T, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body %q", r.code, code, r.body)
	}
}

func wantConflict(t *testing.T, r response, size int64) {
	t.Helper()
	wantCode(t, r, http.StatusConflict)
	if r.ct != "text/x.tlog.size" {
		t.Errorf("409 Content-Type %q, want text/x.tlog.size", r.ct)
	}
	if want := strconv.FormatInt(size, 10) + "\n"; r.body != want {
		t.Errorf("409 body %q, want %q", r.body, want)
	}
}

// wantCosigned checks a 200 response: one cosignature/v1 line that
// transparency-dev/formats verifies on the checkpoint, with a timestamp.
func (h *harness) wantCosigned(t *testing.T, r response, l *testlog.Log, checkpoint []byte) {
	t.Helper()
	wantCode(t, r, http.StatusOK)
	if !strings.HasPrefix(r.body, "— "+h.signer.Name()+" ") || strings.Count(r.body, "\n") != 1 || !strings.HasSuffix(r.body, "\n") {
		t.Fatalf("response is not one signature line: %q", r.body)
	}
	verifyCosigned(t, append(bytes.Clone(checkpoint), r.body...), l, h.signer.VerifierKey())
}

// verifyCosigned opens a note with the log key and the witness vkey through
// transparency-dev/formats and checks the witness cosignature is there.
func verifyCosigned(t *testing.T, signed []byte, l *testlog.Log, witnessVKey string) {
	t.Helper()
	wv, err := fnote.NewVerifierForCosignatureV1(witnessVKey)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := fnote.NewVerifier(l.VKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(lv, wv))
	if err != nil {
		t.Fatalf("formats verifiers reject the cosigned checkpoint: %v\n%s", err, signed)
	}
	var sawLog, sawWitness bool
	for _, s := range n.Sigs {
		switch {
		case s.Name == wv.Name() && s.Hash == wv.KeyHash():
			sawWitness = true
			ts, err := fnote.CoSigV1Timestamp(s)
			if err != nil || ts.Unix() <= 0 {
				t.Errorf("cosignature timestamp %v, %v", ts, err)
			}
		case s.Name == lv.Name() && s.Hash == lv.KeyHash():
			sawLog = true
		}
	}
	if !sawWitness || !sawLog {
		t.Fatalf("verified signatures %+v: log %v witness %v", n.Sigs, sawLog, sawWitness)
	}
}

func mustLog(t testing.TB, kind string) *testlog.Log {
	t.Helper()
	var l *testlog.Log
	var err error
	switch kind {
	case "ed25519":
		l, err = testlog.NewEd25519("example.com/log-" + hex.EncodeToString(randBytes(t, 4)))
	case "rekor":
		l, err = testlog.NewRekor("rekor.example.com", 1193050959916656506)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func otherEd25519Signer(t *testing.T, name string) note.Signer {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance walks one log through the cases of c2sp.org/tlog-witness,
// for an Ed25519 log and for a Rekor-style ECDSA log.
func TestConformance(t *testing.T) {
	for _, kind := range []string{"ed25519", "rekor"} {
		t.Run(kind, func(t *testing.T) {
			l := mustLog(t, kind)
			h := newHarness(t, nil, l)
			l.Append(12)

			// Unknown origin: 404.
			stranger := mustLog(t, "ed25519")
			stranger.Append(3)
			wantCode(t, h.post(stranger.Request(0, 3)), http.StatusNotFound)

			// First contact with old != 0: 409 with size 0.
			wantConflict(t, h.post(l.Request(3, 5)), 0)

			// Monitoring before any cosignature: 404.
			id := sha256.Sum256([]byte(l.Origin))
			wantCode(t, h.get("/"+hex.EncodeToString(id[:])+"/checkpoint"), http.StatusNotFound)

			// old 0 with a non-empty proof: 422.
			wantCode(t, h.post(testlog.Body(0, l.Proof(3, 5), l.Checkpoint(5))), http.StatusUnprocessableEntity)

			// First checkpoint from old 0: 200.
			cp5 := l.Checkpoint(5)
			h.wantCosigned(t, h.post(testlog.Body(0, nil, cp5)), l, cp5)

			// Stale old size: 409 with the latest size.
			wantConflict(t, h.post(l.Request(0, 8)), 5)
			wantConflict(t, h.post(l.Request(3, 8)), 5)

			// old > checkpoint size: 400 (even though old also mismatches).
			wantCode(t, h.post(testlog.Body(8, nil, l.Checkpoint(5))), http.StatusBadRequest)

			// Valid consistency proof 5 → 10: 200.
			cp10 := l.Checkpoint(10)
			h.wantCosigned(t, h.post(testlog.Body(5, l.Proof(5, 10), cp10)), l, cp10)

			// Bad proofs: 422, state unchanged.
			bad := l.Proof(10, 12)
			bad[0] = bytes.Clone(bad[0])
			bad[0][0] ^= 1
			wantCode(t, h.post(testlog.Body(10, bad, l.Checkpoint(12))), http.StatusUnprocessableEntity)
			wantCode(t, h.post(testlog.Body(10, nil, l.Checkpoint(12))), http.StatusUnprocessableEntity)
			wantCode(t, h.post(testlog.Body(10, l.Proof(10, 12)[1:], l.Checkpoint(12))), http.StatusUnprocessableEntity)
			// A proof for another size pair.
			wantCode(t, h.post(testlog.Body(10, l.Proof(9, 12), l.Checkpoint(12))), http.StatusUnprocessableEntity)

			// 63 proof lines are parsed (then fail as a proof: 422); 64 are a bad request.
			junk := make([][]byte, 64)
			for i := range junk {
				junk[i] = randBytes(t, 32)
			}
			wantCode(t, h.post(testlog.Body(10, junk[:63], l.Checkpoint(12))), http.StatusUnprocessableEntity)
			wantCode(t, h.post(testlog.Body(10, junk, l.Checkpoint(12))), http.StatusBadRequest)

			// Same size, same root: 200 with a fresh cosignature.
			h.wantCosigned(t, h.post(testlog.Body(10, nil, cp10)), l, cp10)
			// Same size, same root, but a non-empty proof: 422.
			wantCode(t, h.post(testlog.Body(10, [][]byte{randBytes(t, 32)}, cp10)), http.StatusUnprocessableEntity)

			// Same size, different root, validly signed: 422.
			var forkRoot [32]byte
			copy(forkRoot[:], randBytes(t, 32))
			fork := l.SignText(l.Text(10, forkRoot))
			wantCode(t, h.post(testlog.Body(10, nil, fork)), http.StatusUnprocessableEntity)

			// Signed by an untrusted key with the log's key name: 403.
			impostor := otherEd25519Signer(t, l.Signer.Name())
			forged, err := note.Sign(&note.Note{Text: l.Text(12, l.Root(12))}, impostor)
			if err != nil {
				t.Fatal(err)
			}
			wantCode(t, h.post(testlog.Body(10, l.Proof(10, 12), forged)), http.StatusForbidden)

			// A note with no signature at all is malformed: 400.
			wantCode(t, h.post(testlog.Body(10, l.Proof(10, 12), []byte(l.Text(12, l.Root(12))))), http.StatusBadRequest)

			// The trusted key's line with a corrupted signature: 403, even
			// alongside a valid line from another key.
			good := l.Checkpoint(12)
			corrupt := corruptSignature(t, good, l.Signer.Name())
			wantCode(t, h.post(testlog.Body(10, l.Proof(10, 12), corrupt)), http.StatusForbidden)

			// A valid trusted line followed by a corrupt line with the same key
			// name and ID (x/mod's note.Open would drop the second): 403.
			validThenCorrupt := append(bytes.Clone(good), corruptLine(t, good, l.Signer.Name())...)
			wantCode(t, h.post(testlog.Body(10, l.Proof(10, 12), validThenCorrupt)), http.StatusForbidden)

			// 20 unknown signature lines before the trusted one are ignored: 200.
			var extra []note.Signer
			for i := 0; i < 20; i++ {
				extra = append(extra, otherEd25519Signer(t, fmt.Sprintf("other.example/%d", i)))
			}
			n, err := note.Sign(&note.Note{Text: l.Text(12, l.Root(12))}, extra...)
			if err != nil {
				t.Fatal(err)
			}
			withLog, err := note.Sign(mustOpenUnverified(t, n), l.Signer)
			if err != nil {
				t.Fatal(err)
			}
			if c := strings.Count(string(withLog), "\n— "); c != 21 {
				t.Fatalf("built a note with %d signatures, want 21", c)
			}
			h.wantCosigned(t, h.post(testlog.Body(10, l.Proof(10, 12), withLog)), l, withLog)

			// Restart: state survives; stale requests still get 409.
			h.restart()
			wantConflict(t, h.post(l.Request(10, 12)), 12)
			r := h.get("/" + hex.EncodeToString(id[:]) + "/checkpoint")
			wantCode(t, r, http.StatusOK)
			verifyCosigned(t, []byte(r.body), l, h.signer.VerifierKey())
			if strings.Contains(r.body, "other.example/") {
				t.Errorf("monitoring checkpoint kept unverified signatures:\n%s", r.body)
			}
			if !strings.HasPrefix(r.body, l.Text(12, l.Root(12))+"\n") {
				t.Errorf("monitoring checkpoint is not the size-12 checkpoint:\n%s", r.body)
			}

			// Continue after the restart: 12 → 12+.
			l.Append(7)
			cp19 := l.Checkpoint(19)
			h.wantCosigned(t, h.post(testlog.Body(12, l.Proof(12, 19), cp19)), l, cp19)

			// Disabled log: 404.
			if err := h.st.SetDisabled(l.Origin, true); err != nil {
				t.Fatal(err)
			}
			wantCode(t, h.post(l.Request(19, 19)), http.StatusNotFound)
		})
	}
}

// mustOpenUnverified returns a note whose Sigs hold every signature line of
// msg without verifying them, so note.Sign can append one more.
func mustOpenUnverified(t *testing.T, msg []byte) *note.Note {
	t.Helper()
	_, err := note.Open(msg, note.VerifierList())
	ue, ok := err.(*note.UnverifiedNoteError)
	if !ok {
		t.Fatalf("note.Open: %v", err)
	}
	n := ue.Note
	n.Sigs, n.UnverifiedSigs = n.UnverifiedSigs, nil
	return n
}

// corruptSignature flips a bit in the signature (not the key ID) of the
// line named name, and appends a valid line from another key.
func corruptSignature(t *testing.T, signed []byte, name string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(signed), "\n")
	done := false
	for i, ln := range lines {
		prefix := "— " + name + " "
		if !strings.HasPrefix(ln, prefix) {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(ln, prefix), "\n"))
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)-5] ^= 0x40
		lines[i] = prefix + base64.StdEncoding.EncodeToString(raw) + "\n"
		done = true
	}
	if !done {
		t.Fatal("no signature line to corrupt")
	}
	n := mustOpenUnverified(t, []byte(strings.Join(lines, "")))
	out, err := note.Sign(n, otherEd25519Signer(t, "other.example/valid"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// corruptLine returns signed's signature line of key name with a bit of
// the signature flipped.
func corruptLine(t *testing.T, signed []byte, name string) string {
	t.Helper()
	prefix := "— " + name + " "
	for _, ln := range strings.SplitAfter(string(signed), "\n") {
		if b64, ok := strings.CutPrefix(ln, prefix); ok {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(b64, "\n"))
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-5] ^= 0x40
			return prefix + base64.StdEncoding.EncodeToString(raw) + "\n"
		}
	}
	t.Fatal("no signature line to corrupt")
	return ""
}

func TestSizeZero(t *testing.T) {
	l := mustLog(t, "ed25519")
	h := newHarness(t, nil, l)
	// Size 0 with a root that is not SHA-256(""): 422.
	var root [32]byte
	copy(root[:], randBytes(t, 32))
	wantCode(t, h.post(testlog.Body(0, nil, l.SignText(l.Text(0, root)))), http.StatusUnprocessableEntity)
	// Size 0 with the empty root: 200, and the next request must say old 0.
	cp0 := l.Checkpoint(0)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp0)), l, cp0)
	l.Append(4)
	cp4 := l.Checkpoint(4)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp4)), l, cp4)
	wantConflict(t, h.post(testlog.Body(0, nil, cp0)), 4)
}

// TestConcurrentSameOld sends N requests with the same old size at once:
// exactly one is cosigned, the others get 409 with the winner's size.
func TestConcurrentSameOld(t *testing.T) {
	l := mustLog(t, "ed25519")
	h := newHarness(t, nil, l)
	l.Append(40)
	cp := l.Checkpoint(10)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp)), l, cp)

	const n = 16
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = l.Request(10, int64(11+i)) // different new sizes, same old
	}
	results := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Post(h.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(bodies[i]))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results[i] = response{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b)}
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, r := range results {
		switch r.code {
		case http.StatusOK:
			if winner >= 0 {
				t.Fatalf("requests %d and %d both cosigned", winner, i)
			}
			winner = i
		case http.StatusConflict:
		default:
			t.Fatalf("request %d: status %d %q", i, r.code, r.body)
		}
	}
	if winner < 0 {
		t.Fatal("no request won")
	}
	won := int64(11 + winner)
	for i, r := range results {
		if i != winner {
			wantConflict(t, r, won)
		}
	}
	// The stored state is the winner's tree.
	wantConflict(t, h.post(l.Request(10, 40)), won)
	cp40 := l.Checkpoint(40)
	h.wantCosigned(t, h.post(testlog.Body(won, l.Proof(won, 40), cp40)), l, cp40)
}

func TestMalformed(t *testing.T) {
	l := mustLog(t, "ed25519")
	h := newHarness(t, nil, l)
	l.Append(3)
	cp := l.Checkpoint(3)
	hash := base64.StdEncoding.EncodeToString(randBytes(t, 32))
	root3 := l.Root(3)
	for name, body := range map[string]string{
		"empty":             "",
		"no old line":       "\n" + string(cp),
		"old without space": "old3\n\n" + string(cp),
		"old leading zero":  "old 03\n\n" + string(cp),
		"old negative":      "old -1\n\n" + string(cp),
		"old plus":          "old +0\n\n" + string(cp),
		"old too big":       "old 18446744073709551616\n\n" + string(cp),
		"no empty line":     "old 0\n" + string(cp),
		"no checkpoint":     "old 0\n\n",
		"proof not base64":  "old 0\n!!!!\n\n" + string(cp),
		"proof short hash":  "old 0\n" + base64.StdEncoding.EncodeToString(randBytes(t, 31)) + "\n\n" + string(cp),
		"proof with CR":     "old 0\n" + hash + "\r\n\n" + string(cp),
		"not a note":        "old 0\n\n" + l.Origin + "\n3\n",
		"control character": "old 0\n\n" + strings.Replace(string(cp), "\n3\n", "\n3\x01\n", 1),
		"size leading zero": "old 0\n\n" + string(l.SignText(l.Origin+"\n03\n"+base64.StdEncoding.EncodeToString(root3[:])+"\n")),
		"short root":        "old 0\n\n" + string(l.SignText(l.Origin+"\n3\nAAAA\n")),
		"empty ext line":    "old 0\n\n" + string(l.SignText(l.Text(3, root3)+"\nx\n")),
	} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, h.post([]byte(body)), http.StatusBadRequest)
		})
	}
	// None of these changed state: old 0 still works.
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp)), l, cp)
}

func TestOversizeBody(t *testing.T) {
	l := mustLog(t, "ed25519")
	h := newHarness(t, nil, l)
	l.Append(2)
	body := append(l.Request(0, 2), bytes.Repeat([]byte("x"), api.DefaultMaxBodyBytes)...)
	wantCode(t, h.post(body), http.StatusRequestEntityTooLarge)
	cp := l.Checkpoint(2)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp)), l, cp)
}

func TestMultipleKeys(t *testing.T) {
	// One origin trusted under two keys (rotation): either signature works.
	a := mustLog(t, "ed25519")
	b := mustLog(t, "ed25519")
	b.Origin = a.Origin
	h := newHarness(t, nil)
	h.addLog(a.Origin, a.VKey, b.VKey)
	a.Append(5)
	b.Append(5) // same leaves (same origin) → same tree
	if a.Root(5) != b.Root(5) {
		t.Fatal("trees differ")
	}
	cpA := a.Checkpoint(5)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cpA)), a, cpA)
	cpB := b.Checkpoint(5)
	h.wantCosigned(t, h.post(testlog.Body(5, nil, cpB)), b, cpB)
}

func TestRateLimit(t *testing.T) {
	l := mustLog(t, "ed25519")
	// Two requests, then one token per 1000 s.
	h := newHarness(t, tlogwitness.NewTokenBuckets(tlogwitness.Budget{Rate: 0.001, Burst: 2}, nil), l)
	l.Append(5)
	cp3, cp4 := l.Checkpoint(3), l.Checkpoint(4)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp3)), l, cp3)
	// Requests that cannot advance the state are not charged: stale old
	// sizes (409, e.g. a replay of the public checkpoint with old 0) and
	// the same checkpoint again (answered with the stored cosignature).
	for range 5 {
		wantConflict(t, h.post(testlog.Body(0, nil, cp3)), 3)
		h.wantCosigned(t, h.post(testlog.Body(3, nil, cp3)), l, cp3)
	}
	h.wantCosigned(t, h.post(l.Request(3, 4)), l, cp4)
	r := h.post(l.Request(4, 5))
	wantCode(t, r, http.StatusTooManyRequests)
	ra, err := strconv.Atoi(r.hdr.Get("Retry-After"))
	if err != nil || ra <= 0 {
		t.Fatalf("Retry-After %q", r.hdr.Get("Retry-After"))
	}
	// Requests without a valid log signature are not charged: still 403.
	forged, err := note.Sign(&note.Note{Text: l.Text(5, l.Root(5))}, otherEd25519Signer(t, l.Signer.Name()))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.post(testlog.Body(4, l.Proof(4, 5), forged)), http.StatusForbidden)
}

func TestMonitoringAndHealth(t *testing.T) {
	l := mustLog(t, "rekor")
	h := newHarness(t, nil, l)
	wantCode(t, h.get("/healthz"), http.StatusOK)
	wantCode(t, h.get("/readyz"), http.StatusOK)
	id := sha256.Sum256([]byte(l.Origin))
	for _, p := range []string{
		"/" + strings.ToUpper(hex.EncodeToString(id[:])) + "/checkpoint",
		"/" + hex.EncodeToString(id[:31]) + "/checkpoint",
		"/zz/checkpoint",
	} {
		wantCode(t, h.get(p), http.StatusNotFound)
	}
	l.Append(9)
	cp := l.Checkpoint(9)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp)), l, cp)
	r := h.get("/" + hex.EncodeToString(id[:]) + "/checkpoint")
	wantCode(t, r, http.StatusOK)
	verifyCosigned(t, []byte(r.body), l, h.signer.VerifierKey())

	m := h.get("/metrics")
	wantCode(t, m, http.StatusOK)
	for _, want := range []string{
		`witness_add_checkpoint_requests_total{outcome="ok"} 1`,
		`witness_cosign_duration_seconds_count 1`,
		fmt.Sprintf(`witness_log_tree_size{origin=%q} 9`, l.Origin),
	} {
		if !strings.Contains(m.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	h.api.Drain()
	wantCode(t, h.get("/readyz"), http.StatusServiceUnavailable)
	wantCode(t, h.get("/healthz"), http.StatusOK)
	resp, err := http.Get(h.srv.URL + "/add-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /add-checkpoint: %d", resp.StatusCode)
	}
}
