package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/internal/testsigner"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// race posts bodies at once and returns the answers.
func (h *harness) race(bodies [][]byte) []response {
	h.t.Helper()
	results := make([]response, len(bodies))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Post(h.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(bodies[i]))
			if err != nil {
				h.t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results[i] = response{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b), hdr: resp.Header}
		}()
	}
	close(start)
	wg.Wait()
	return results
}

// raceThroughSigner is the spec's rollback race with the witness key in
// a SoftHSM2 token behind the real signer service, whose witness tenant
// allows 8 requests in progress (the limit that turned losers into 500s):
// 5 rounds of 16 concurrent requests from the same old size. Each round has
// exactly one 200 and fifteen 409s carrying the winner's size, no 5xx, and
// the signer's audit trail grows by exactly one row per round: no loser
// reached the signer.
//
// TestThroughSigner runs this test, the strict signature case and the
// replay case on one signer service (their signer calls are counted as
// deltas of its audit rows); the pushback and outage case has its own.
func TestThroughSigner(t *testing.T) {
	sg := testsigner.Start(t, testsigner.Options{Quota: server.QuotaConfig{RPS: 1000, Burst: 1000, Concurrency: 8}})
	t.Run("race", func(t *testing.T) { raceThroughSigner(t, sg) })
	t.Run("strict", func(t *testing.T) { strictSignaturesThroughSigner(t, sg) })
	t.Run("replay", func(t *testing.T) { replayWhileFeeding(t, sg) })
}

func raceThroughSigner(t *testing.T, sg *testsigner.Signer) {
	l := mustLog(t, "ed25519")
	h := newHarnessWith(t, sg.Remote(t), nil, l)
	const n, rounds = 16, 5
	l.Append(rounds*n + 1)
	cp := l.Checkpoint(1)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp)), l, cp)
	old := int64(1)
	for round := range rounds {
		rows := sg.AuditRows(t)
		bodies := make([][]byte, n)
		for i := range bodies {
			bodies[i] = l.Request(old, old+int64(i)+1) // same old, different new sizes
		}
		results := h.race(bodies)
		winner := -1
		for i, r := range results {
			switch r.code {
			case http.StatusOK:
				if winner >= 0 {
					t.Fatalf("round %d: requests %d and %d both cosigned", round, winner, i)
				}
				winner = i
				h.wantCosigned(t, r, l, l.Checkpoint(old+int64(i)+1))
			case http.StatusConflict:
			default:
				t.Fatalf("round %d: request %d: %d %q", round, i, r.code, r.body)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no request won", round)
		}
		won := old + int64(winner) + 1
		for i, r := range results {
			if i != winner {
				wantConflict(t, r, won)
			}
		}
		if got := sg.AuditRows(t) - rows; got != 1 {
			t.Fatalf("round %d: the signer audited %d requests, want 1 (losers must not reach the signer)", round, got)
		}
		old = won
	}
}

// strictSignaturesThroughSigner: a valid trusted line followed by a
// corrupt line of the same key name and ID is 403, and costs no signature.
func strictSignaturesThroughSigner(t *testing.T, sg *testsigner.Signer) {
	l := mustLog(t, "ed25519")
	h := newHarnessWith(t, sg.Remote(t), nil, l)
	l.Append(3)
	good := l.Checkpoint(3)
	bad := append(bytes.Clone(good), corruptLine(t, good, l.Signer.Name())...)
	rows := sg.AuditRows(t)
	wantCode(t, h.post(testlog.Body(0, nil, bad)), http.StatusForbidden)
	if got := sg.AuditRows(t) - rows; got != 0 {
		t.Fatalf("a refused checkpoint reached the signer (%d audit rows)", got)
	}
	h.wantCosigned(t, h.post(testlog.Body(0, nil, good)), l, good)
}

// TestSignerPushbackAndOutage: when the signer refuses for load (its 429)
// or is down, add-checkpoint answers 503 with Retry-After and changes
// nothing; /readyz fails for the signer's Retry-After after a pushback and
// while the signer is down, and recovers with it.
func TestSignerPushbackAndOutage(t *testing.T) {
	// One signature per 2 s: the second request in a row is pushed back.
	sg := testsigner.Start(t, testsigner.Options{Quota: server.QuotaConfig{RPS: 0.5, Burst: 1, Concurrency: 8}})
	l := mustLog(t, "ed25519")
	h := newHarnessWith(t, sg.Remote(t), nil, l)
	l.Append(10)
	cp := l.Checkpoint(2)
	h.wantCosigned(t, h.post(testlog.Body(0, nil, cp)), l, cp)
	r := h.post(l.Request(2, 4))
	wantCode(t, r, http.StatusServiceUnavailable)
	if ra, err := strconv.Atoi(r.hdr.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("503 for signer pushback: Retry-After %q", r.hdr.Get("Retry-After"))
	}
	wantConflict(t, h.post(l.Request(0, 4)), 2) // nothing stored
	if rd := h.get("/readyz"); rd.code != http.StatusServiceUnavailable {
		t.Errorf("/readyz within the signer's Retry-After: %d %q, want 503", rd.code, rd.body)
	}
	time.Sleep(2100 * time.Millisecond)
	wantCode(t, h.get("/readyz"), http.StatusOK)
	cp4 := l.Checkpoint(4)
	h.wantCosigned(t, h.post(l.Request(2, 4)), l, cp4)

	wantCode(t, h.get("/readyz"), http.StatusOK)
	sg.Stop()
	r = h.post(l.Request(4, 6))
	wantCode(t, r, http.StatusServiceUnavailable)
	if ra, err := strconv.Atoi(r.hdr.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("503 for a signer that is down: Retry-After %q", r.hdr.Get("Retry-After"))
	}
	if rd := h.get("/readyz"); rd.code != http.StatusServiceUnavailable || !strings.Contains(rd.body, "cosigning key") {
		t.Fatalf("/readyz with the signer down: %d %q", rd.code, rd.body)
	}
	wantConflict(t, h.post(l.Request(0, 6)), 4)
	sg.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for h.get("/readyz").code != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover after the signer came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2100 * time.Millisecond) // the signer's rate quota
	cp6 := l.Checkpoint(6)
	h.wantCosigned(t, h.post(l.Request(4, 6)), l, cp6)
	m := h.get("/metrics")
	if want := `witness_add_checkpoint_requests_total{outcome="unavailable"} 2`; !strings.Contains(m.body, want) {
		t.Errorf("metrics lack %s", want)
	}
}

// replayWhileFeeding runs the log's real feeder (logserver/witnessing)
// against the witness, cosigning through the signer with the witness's
// default budget, while an attacker replays the public checkpoint with old
// 0 as fast as it can. The replays all get 409 and never reach the signer;
// the feeder is never throttled and its last head is cosigned.
func replayWhileFeeding(t *testing.T, sg *testsigner.Signer) {
	rows0 := sg.AuditRows(t)
	def := tlogwitness.Budget{Rate: 20, Burst: 200} // config's default
	h := newHarnessWith(t, sg.Remote(t), tlogwitness.NewTokenBuckets(def, nil))

	_, key, _ := ed25519.GenerateKey(rand.Reader)
	cs, err := witnessing.NewCheckpointSigner("example.com/fed-log", key)
	if err != nil {
		t.Fatal(err)
	}
	h.addLog(cs.Origin(), cs.VerifierKey())
	l := &testlog.Log{Origin: cs.Origin(), VKey: cs.VerifierKey(), Signer: cs}
	pol, err := witnessing.ParsePolicy([]byte(fmt.Sprintf("log %s\nwitness w1 %s %s\nquorum w1\n", cs.VerifierKey(), h.signer.VerifierKey(), h.srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	st := &publishedStore{}
	reg := prometheus.NewRegistry()
	f, err := witnessing.New(context.Background(), witnessing.Config{
		Policy: pol, Signer: cs, Store: st, Registerer: reg, MinRetry: 50 * time.Millisecond,
		Proofs: func(_ context.Context, old, n int64) ([][32]byte, error) {
			var out [][32]byte
			for _, p := range l.Proof(old, n) {
				out = append(out, [32]byte(p))
			}
			return out, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The attacker: replays of the latest public checkpoint with old 0.
	var replays, replayConflicts atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cp := f.Latest()
				if cp == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				resp, err := http.Post(h.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(testlog.Body(0, nil, cp.Note)))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				replays.Add(1)
				if resp.StatusCode == http.StatusConflict {
					replayConflicts.Add(1)
				}
			}
		}()
	}
	// The log: a new head every 5 ms for 8 s, long enough for a feeder
	// sending 60/s (what an unpaced one does here) to drain the default
	// budget's burst of 200 at 20/s.
	var last int64
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		l.Append(3)
		last = l.Size()
		f.Update(witnessing.Head{Size: last, Root: [32]byte(l.Root(last))})
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for cp := f.Latest(); cp == nil || cp.Size != last || !cp.QuorumMet; cp = f.Latest() {
		if time.Now().After(deadline) {
			t.Fatalf("the last head %d was not published with the witness's cosignature: %+v", last, cp)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	m := h.get("/metrics").body
	ok, limited := metricValue(t, m, `witness_add_checkpoint_requests_total{outcome="ok"}`),
		metricValue(t, m, `witness_add_checkpoint_requests_total{outcome="rate_limited"}`)
	if fed := feederRequests(t, reg, "rate_limited"); fed != 0 {
		t.Errorf("the feeder counted %v rate-limited requests", fed)
	}
	rows := sg.AuditRows(t) - rows0
	t.Logf("feeder: %v cosigned requests; attacker: %d replays, %d got 409; witness 429s: %v; signer audit rows %d",
		ok, replays.Load(), replayConflicts.Load(), limited, rows)
	if limited != 0 {
		t.Fatalf("the witness answered %v requests with 429", limited)
	}
	if replays.Load() == 0 || replayConflicts.Load() != replays.Load() {
		t.Fatalf("replays: %d, 409s: %d; want all 409", replays.Load(), replayConflicts.Load())
	}
	if float64(rows) != ok {
		t.Fatalf("signer audit rows %d, cosigned requests %v: a replay reached the signer", rows, ok)
	}
}

// metricValue returns the value of the sample named series (name and
// labels, as exposed) in a Prometheus text exposition.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s", series)
	return 0
}

// feederRequests is the feeder's request count with the outcome.
func feederRequests(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "logserver_witness_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" && lp.GetValue() == outcome {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// publishedStore is an in-memory witnessing.Store.
type publishedStore struct {
	mu   sync.Mutex
	last *witnessing.StoredCheckpoint
}

func (s *publishedStore) SaveCheckpoint(_ context.Context, size int64, root [32]byte, note []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = &witnessing.StoredCheckpoint{Size: size, Root: root, Note: bytes.Clone(note), Created: time.Now()}
	return nil
}

func (s *publishedStore) LatestCheckpoint(context.Context) (witnessing.StoredCheckpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return witnessing.StoredCheckpoint{}, witnessing.ErrNoCheckpoint
	}
	return *s.last, nil
}

func (s *publishedStore) WitnessSizes(context.Context) (map[string]int64, error) {
	return map[string]int64{}, nil
}

func (s *publishedStore) SaveWitnessSize(context.Context, string, int64) error { return nil }
