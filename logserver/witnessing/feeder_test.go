package witnessing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/witness/cosig"
)

type pw struct{ name, vkey, url string }

func policyText(logVKey string, group string, ws ...pw) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# test policy\nlog %s\n", logVKey)
	var names []string
	for _, w := range ws {
		fmt.Fprintf(&b, "witness %s %s %s\n", w.name, w.vkey, w.url)
		names = append(names, w.name)
	}
	fmt.Fprintf(&b, "group main %s %s\nquorum main\n", group, strings.Join(names, " "))
	return b.String()
}

func (rw *realWitness) pw(name string) pw { return pw{name, rw.vkey, rw.url} }

// verifyPublished checks a published note the way an auditor does, with
// transparency-dev/formats only: log signature, then each cosignature with
// NewVerifierForCosignatureV1; it returns the names of the verified cosigners.
func verifyPublished(t *testing.T, e *env, cp []byte, ws map[string]string) []string {
	t.Helper()
	logV, err := fnote.NewVerifier(e.signer.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, err := flog.ParseCheckpoint(cp, e.origin, logV)
	if err != nil {
		t.Fatalf("log signature: %v\n%s", err, cp)
	}
	_ = c
	var got []string
	for name, vkey := range ws {
		v, err := fnote.NewVerifierForCosignatureV1(vkey)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open(cp, note.VerifierList(logV, v))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range n.Sigs {
			if s.Name == v.Name() && s.Hash == v.KeyHash() {
				ts, err := fnote.CoSigV1Timestamp(s)
				if err != nil || ts.Unix() == 0 {
					t.Errorf("cosignature of %s: timestamp %v, %v", name, ts, err)
				}
				got = append(got, name)
			}
		}
	}
	slices.Sort(got)
	return got
}

func sigLines(n []byte) int {
	_, sigs, _ := bytes.Cut(n, []byte("\n\n"))
	return bytes.Count(sigs, []byte("\u2014 "))
}

// Three real witnesses, 2-of-3: every cosignature verifies with
// transparency-dev/formats, the real witness accepts our consistency proofs
// (it verifies them with transparency-dev/merkle) across tile boundaries and
// odd sizes, and the published note carries the log signature plus three
// cosignatures.
func TestQuorumWithRealWitnesses(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example/witness", e.origin, e.signer.VerifierKey())
	w2 := startRealWitness(t, "w2.example/witness", e.origin, e.signer.VerifierKey())
	w3 := startRealWitness(t, "w3.example/witness", e.origin, e.signer.VerifierKey())
	f := e.feeder(t, policyText(e.signer.VerifierKey(), "2", w1.pw("W1"), w2.pw("W2"), w3.pw("W3")))
	vkeys := map[string]string{"W1": w1.vkey, "W2": w2.vkey, "W3": w3.vkey}
	ctx := context.Background()

	for _, size := range []int64{1, 2, 3, 7, 8, 9, 255, 256, 257, 600, 1000, 1001} {
		h := e.tree.grow(t, size)
		f.Update(h)
		f.step(ctx)
		cp := f.Latest()
		if cp == nil || cp.Size != size || !cp.QuorumMet || cp.Root != h.Root {
			t.Fatalf("size %d: latest = %+v", size, cp)
		}
		if got := verifyPublished(t, e, cp.Note, vkeys); !slices.Equal(got, []string{"W1", "W2", "W3"}) {
			t.Fatalf("size %d: verified cosigners %v, want W1 W2 W3\n%s", size, got, cp.Note)
		}
		if n := sigLines(cp.Note); n != 4 {
			t.Fatalf("size %d: %d signature lines, want 4", size, n)
		}
		for _, w := range []*realWitness{w1, w2, w3} {
			if got := w.size(t, e.origin); got != uint64(size) {
				t.Fatalf("witness %s stored size %d, want %d", w.name, got, size)
			}
		}
	}
	for _, w := range []string{"W1", "W2", "W3"} {
		if got := requests(t, f, w, OutcomeOK); got != 12 {
			t.Errorf("%s ok requests = %v, want 12", w, got)
		}
		if got := requests(t, f, w, OutcomeConflict) + requests(t, f, w, OutcomeInconsistent); got != 0 {
			t.Errorf("%s conflict+inconsistent = %v, want 0", w, got)
		}
		if got := testutil.ToFloat64(f.m.cosignedSize.WithLabelValues(w)); got != 1001 {
			t.Errorf("%s cosigned size metric = %v", w, got)
		}
	}
	if got := testutil.ToFloat64(f.m.quorumMet); got != 1 {
		t.Errorf("quorum_met = %v", got)
	}
	// Every version is in the store, the last is what Latest serves.
	all := e.store.all()
	if len(all) != 12 || !bytes.Equal(all[11].Note, f.Latest().Note) {
		t.Errorf("store has %d versions", len(all))
	}
}

// A witness that is down does not stop publication while the others meet
// the quorum; with two down the quorum fails and the previous checkpoint
// stays served; when they return they catch up from the size they last
// accepted (no 409 needed).
func TestWitnessDownAndCatchUp(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	w2 := startRealWitness(t, "w2.example", e.origin, e.signer.VerifierKey())
	w3 := startRealWitness(t, "w3.example", e.origin, e.signer.VerifierKey())
	f := e.feeder(t, policyText(e.signer.VerifierKey(), "2", w1.pw("W1"), w2.pw("W2"), w3.pw("W3")))
	ctx := context.Background()

	f.Update(e.tree.grow(t, 10))
	f.step(ctx)
	if cp := f.Latest(); cp == nil || len(cp.Cosigners) != 3 {
		t.Fatalf("latest %+v", cp)
	}

	w3.down.Store(true)
	f.Update(e.tree.grow(t, 20))
	f.step(ctx)
	cp := f.Latest()
	if cp.Size != 20 || !slices.Equal(cp.Cosigners, []string{"W1", "W2"}) || !cp.QuorumMet {
		t.Fatalf("with W3 down: size %d cosigners %v", cp.Size, cp.Cosigners)
	}
	if requests(t, f, "W3", OutcomeUnavailable) != 1 || testutil.ToFloat64(f.m.up.WithLabelValues("W3")) != 0 {
		t.Errorf("W3 failure not in metrics")
	}

	w2.down.Store(true)
	f.Update(e.tree.grow(t, 30))
	f.step(ctx)
	if cp := f.Latest(); cp.Size != 20 {
		t.Fatalf("quorum of 1 published size %d", cp.Size)
	}
	if testutil.ToFloat64(f.m.quorumMet) != 0 {
		t.Errorf("quorum_met gauge should be 0")
	}
	if testutil.ToFloat64(f.m.publishedSize) != 20 || testutil.ToFloat64(f.m.headSize) != 30 {
		t.Errorf("published/head size metrics %v/%v", testutil.ToFloat64(f.m.publishedSize), testutil.ToFloat64(f.m.headSize))
	}
	// Collect shows the same: only W1 cosigns, the quorum is not met.
	signed, _ := e.signer.SignCheckpoint(30, e.tree.grow(t, 30).Root)
	got, err := f.Collect(ctx, signed)
	if err != nil || got.QuorumMet || !slices.Equal(got.Cosigners, []string{"W1"}) {
		t.Fatalf("Collect: %+v, %v", got, err)
	}

	// Both return: W2 was at 20, W3 at 10; they get proofs 20→40 and 10→40.
	w2.down.Store(false)
	w3.down.Store(false)
	f.Update(e.tree.grow(t, 40))
	f.step(ctx)
	cp = f.Latest()
	if cp.Size != 40 || len(cp.Cosigners) != 3 {
		t.Fatalf("after return: size %d cosigners %v", cp.Size, cp.Cosigners)
	}
	if w3.size(t, e.origin) != 40 || w2.size(t, e.origin) != 40 {
		t.Fatalf("witnesses did not catch up")
	}
	for _, w := range []string{"W2", "W3"} {
		if c := requests(t, f, w, OutcomeConflict); c != 0 {
			t.Errorf("%s needed %v conflicts; it should resume from its last accepted size", w, c)
		}
	}
	vk := map[string]string{"W1": w1.vkey, "W2": w2.vkey, "W3": w3.vkey}
	if v := verifyPublished(t, e, cp.Note, vk); len(v) != 3 {
		t.Fatalf("verified %v", v)
	}
}

// After a restart the feeder knows no witness size: it sends old 0, learns
// the size from the 409 (text/x.tlog.size) and resends with the proof from
// there. The restarted feeder also serves the stored checkpoint at once.
func TestRestartKeepsWitnessSizes(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	w2 := startRealWitness(t, "w2.example", e.origin, e.signer.VerifierKey())
	policy := policyText(e.signer.VerifierKey(), "all", w1.pw("W1"), w2.pw("W2"))
	ctx := context.Background()

	f := e.feeder(t, policy)
	f.Update(e.tree.grow(t, 100))
	f.step(ctx)
	before := f.Latest()
	if before == nil || before.Size != 100 {
		t.Fatalf("first feeder: %+v", before)
	}
	if got := e.store.sizes[w1.vkey]; got != 100 {
		t.Fatalf("stored size of W1 %d, want 100", got)
	}

	f2 := e.feeder(t, policy) // restart: same store
	if l := f2.Latest(); l == nil || !bytes.Equal(l.Note, before.Note) || !slices.Equal(l.Cosigners, []string{"W1", "W2"}) || !l.QuorumMet {
		t.Fatalf("restarted feeder serves %+v", l)
	}
	f2.Update(e.tree.grow(t, 300))
	f2.step(ctx)
	cp := f2.Latest()
	if cp.Size != 300 || len(cp.Cosigners) != 2 {
		t.Fatalf("after restart: %+v", cp)
	}
	for _, w := range []string{"W1", "W2"} {
		if requests(t, f2, w, OutcomeConflict) != 0 || requests(t, f2, w, OutcomeOK) != 1 {
			t.Errorf("%s: conflict %v ok %v, want 0 and 1 (the stored size saves the 409)", w, requests(t, f2, w, OutcomeConflict), requests(t, f2, w, OutcomeOK))
		}
	}
	if w1.size(t, e.origin) != 300 {
		t.Fatal("witness not at 300")
	}

	// Without stored sizes (a new database), the 409 teaches the size.
	e.store.sizes = nil
	f3 := e.feeder(t, policy)
	f3.Update(e.tree.grow(t, 320))
	f3.step(ctx)
	if cp := f3.Latest(); cp.Size != 320 || requests(t, f3, "W1", OutcomeConflict) != 1 {
		t.Fatalf("without stored sizes: %+v, conflicts %v", cp, requests(t, f3, "W1", OutcomeConflict))
	}

	// A witness fed by someone else meanwhile (it is ahead of our memory):
	// 409 teaches us its size again.
	other := e.feeder(t, policy)
	other.Update(e.tree.grow(t, 350))
	other.step(ctx)
	f2.Update(e.tree.grow(t, 400))
	f2.step(ctx)
	if cp := f2.Latest(); cp.Size != 400 || len(cp.Cosigners) != 2 {
		t.Fatalf("after another feeder: %+v", cp)
	}
	if requests(t, f2, "W1", OutcomeConflict) != 1 {
		t.Errorf("want a conflict for W1")
	}
}

// A witness that reports a tree larger than the log's (here: the log's
// database was restored from an older backup, same leaves) is counted,
// logged once however often it is retried, does not hold back the other
// witness, and recovers once the log is past its size again.
func TestWitnessAheadReportedAndRecovers(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	w2 := startRealWitness(t, "w2.example", e.origin, e.signer.VerifierKey())
	policy := policyText(e.signer.VerifierKey(), "1", w1.pw("W1"), w2.pw("W2"))
	ctx := context.Background()
	f := e.feeder(t, fmt.Sprintf("log %s\nwitness W1 %s %s\nquorum W1\n", e.signer.VerifierKey(), w1.vkey, w1.url))
	f.Update(e.tree.grow(t, 60))
	f.step(ctx)
	if w1.size(t, e.origin) != 60 {
		t.Fatal("W1 not at 60")
	}

	// The rolled-back log: same leaves, only 40 of them, no stored sizes.
	e.tree, e.store = newTestTree(), &memStore{}
	var logs bytes.Buffer
	p, err := ParsePolicy([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	e.reg = prometheus.NewRegistry()
	f2, err := New(ctx, Config{
		Policy: p, Signer: e.signer, Proofs: TreeProofs(e.tree.t), Store: e.store,
		MinRetry: time.Nanosecond, MaxRetry: time.Nanosecond, MinInterval: time.Nanosecond,
		Logger: slog.New(slog.NewJSONHandler(&syncWriter{w: &logs}, nil)), Registerer: e.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	f2.Update(e.tree.grow(t, 40))
	for range 5 {
		f2.step(ctx)
	}
	if cp := f2.Latest(); cp == nil || cp.Size != 40 || !slices.Equal(cp.Cosigners, []string{"W2"}) {
		t.Fatalf("W2 alone must carry the log: %+v", cp)
	}
	if got := testutil.ToFloat64(f2.m.ahead.WithLabelValues("W1")); got != 1 {
		t.Fatalf("logserver_witness_ahead{W1} = %v, want 1", got)
	}
	if got := requests(t, f2, "W1", OutcomeAhead); got < 5 {
		t.Fatalf("ahead outcomes %v, want one per retry (5)", got)
	}
	if n := strings.Count(logs.String(), "witness reports a tree larger"); n != 1 {
		t.Fatalf("%d log lines about the witness ahead over 5 retries, want 1:\n%s", n, logs.String())
	}
	if e.store.sizes[w1.vkey] != 60 {
		t.Fatalf("stored W1 size %d, want the 60 it reported", e.store.sizes[w1.vkey])
	}
	// The log catches up past the witness: W1 cosigns again from 60.
	f2.Update(e.tree.grow(t, 80))
	f2.step(ctx)
	if cp := f2.Latest(); cp.Size != 80 || !slices.Equal(cp.Cosigners, []string{"W1", "W2"}) {
		t.Fatalf("after catching up: %+v", cp)
	}
	if got := testutil.ToFloat64(f2.m.ahead.WithLabelValues("W1")); got != 0 {
		t.Fatalf("logserver_witness_ahead{W1} = %v after recovery, want 0", got)
	}
	if !strings.Contains(logs.String(), "witness is back") {
		t.Fatalf("no recovery log line:\n%s", logs.String())
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// cosignLine makes a cosignature/v1 line by key named name over text at ts.
func cosignLine(name string, key ed25519.PrivateKey, text []byte, ts uint64) []byte {
	return cosignLineID(name, notekey.KeyID(name, notekey.CosignatureV1, key.Public().(ed25519.PublicKey)), key, text, ts)
}

func cosignLineID(name string, id uint32, key ed25519.PrivateKey, text []byte, ts uint64) []byte {
	msg := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", ts, text)
	sig := ed25519.Sign(key, msg)
	raw := binary.BigEndian.AppendUint32(nil, id)
	raw = binary.BigEndian.AppendUint64(raw, ts)
	raw = append(raw, sig...)
	return []byte("\u2014 " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
}

func checkpointOf(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	_, cp, _ := bytes.Cut(body, []byte("\n\n"))
	return cp
}

// Witnesses that misbehave are ignored, counted and never make it into the
// published note: a cosignature by the wrong key under the policy's key name
// and ID, one over another text, a zero or far-future timestamp, a 200
// without a cosignature, 403/404, 500 and a malformed 409.
func TestMisbehavingWitnessesIgnored(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	w2 := startRealWitness(t, "w2.example", e.origin, e.signer.VerifierKey())

	_, good := mustKey(t)
	const fname = "fake.example/witness"
	fakeVKey := mustCosigVKey(t, fname, good)
	_, wrong := mustKey(t)
	now := uint64(time.Now().Unix())

	cases := []struct {
		name    string
		handle  http.HandlerFunc
		outcome string
	}{
		{"wrong key", func(w http.ResponseWriter, r *http.Request) {
			text, _, _ := bytes.Cut(checkpointOf(r), []byte("\n\n"))
			w.Write(cosignLineID(fname, notekey.KeyID(fname, notekey.CosignatureV1, good.Public().(ed25519.PublicKey)), wrong, append(text, '\n'), now))
		}, OutcomeBadResponse},
		{"other text", func(w http.ResponseWriter, r *http.Request) {
			text, _, _ := bytes.Cut(checkpointOf(r), []byte("\n\n"))
			text = bytes.Replace(text, []byte("\n"), []byte("\n9"), 1) // other size
			w.Write(cosignLine(fname, good, append(text, '\n'), now))
		}, OutcomeBadResponse},
		{"zero timestamp", func(w http.ResponseWriter, r *http.Request) {
			text, _, _ := bytes.Cut(checkpointOf(r), []byte("\n\n"))
			w.Write(cosignLine(fname, good, append(text, '\n'), 0))
		}, OutcomeBadResponse},
		{"future timestamp", func(w http.ResponseWriter, r *http.Request) {
			text, _, _ := bytes.Cut(checkpointOf(r), []byte("\n\n"))
			w.Write(cosignLine(fname, good, append(text, '\n'), now+86400))
		}, OutcomeBadResponse},
		{"no cosignature", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok\n")
		}, OutcomeBadResponse},
		{"403", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "untrusted", http.StatusForbidden)
		}, OutcomeRejected},
		{"404", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "unknown log", http.StatusNotFound)
		}, OutcomeRejected},
		{"422", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "inconsistent", http.StatusUnprocessableEntity)
		}, OutcomeInconsistent},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, OutcomeUnavailable},
		{"429", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}, OutcomeRateLimited},
		{"409 without size type", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "5", http.StatusConflict)
		}, OutcomeBadResponse},
		{"409 with the size we sent", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/x.tlog.size")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, "0\n")
		}, OutcomeBadResponse},
		{"409 forever", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			var old int
			fmt.Sscanf(string(body), "old %d", &old)
			w.Header().Set("Content-Type", "text/x.tlog.size")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, "%d\n", old+1)
		}, OutcomeConflict},
		{"409 ahead of the log", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/x.tlog.size")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, "999999\n")
		}, OutcomeAhead},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.store = &memStore{}
			url := fakeWitness(t, c.handle)
			f := e.feeder(t, policyText(e.signer.VerifierKey(), "2", w1.pw("W1"), w2.pw("W2"), pw{"F", fakeVKey, url}))
			f.Update(e.tree.grow(t, e.tree.t.Size()+5))
			f.step(context.Background())
			cp := f.Latest()
			if cp == nil || !slices.Equal(cp.Cosigners, []string{"W1", "W2"}) || !cp.QuorumMet {
				t.Fatalf("latest %+v", cp)
			}
			if n := sigLines(cp.Note); n != 3 {
				t.Fatalf("%d signature lines, want 3:\n%s", n, cp.Note)
			}
			if got := requests(t, f, "F", c.outcome); got < 1 {
				t.Errorf("outcome %s not counted", c.outcome)
			}
			if got := requests(t, f, "F", OutcomeOK); got != 0 {
				t.Errorf("fake counted ok")
			}
		})
	}

	// Control: the same fake signing correctly is accepted, so the cases
	// above fail for the reason they test.
	t.Run("control", func(t *testing.T) {
		url := fakeWitness(t, func(w http.ResponseWriter, r *http.Request) {
			text, _, _ := bytes.Cut(checkpointOf(r), []byte("\n\n"))
			w.Write(cosignLine(fname, good, append(text, '\n'), now))
		})
		f := e.feeder(t, policyText(e.signer.VerifierKey(), "2", w1.pw("W1"), w2.pw("W2"), pw{"F", fakeVKey, url}))
		f.Update(e.tree.grow(t, e.tree.t.Size()+5))
		f.step(context.Background())
		if cp := f.Latest(); !slices.Equal(cp.Cosigners, []string{"W1", "W2", "F"}) {
			t.Fatalf("control cosigners %v", cp.Cosigners)
		}
	})
}

func mustKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func mustCosigVKey(t *testing.T, name string, k ed25519.PrivateKey) string {
	s, err := cosig.NewSigner(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return s.VerifierKey()
}

// A slow witness does not delay publication: the checkpoint is published
// once two of three cosigned, newer heads are published while it hangs,
// and its cosignature is added (new version of the same size) once it
// answers. Run, Update and the wake-ups are
// the real loop.
func TestRunPublishesBeforeSlowWitness(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	w2 := startRealWitness(t, "w2.example", e.origin, e.signer.VerifierKey())
	w3 := startRealWitness(t, "w3.example", e.origin, e.signer.VerifierKey())
	release := make(chan struct{})
	var held atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-release
		w3.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer slow.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	f := e.feeder(t, policyText(e.signer.VerifierKey(), "2", w1.pw("W1"), w2.pw("W2"), pw{"W3", w3.vkey, slow.URL}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()

	h := e.tree.grow(t, 50)
	f.Update(h)
	waitFor(t, "publication with W1 and W2", func() bool {
		cp := f.Latest()
		return cp != nil && cp.Size == 50
	})
	if cp := f.Latest(); !slices.Equal(cp.Cosigners, []string{"W1", "W2"}) || held.Load() != 1 {
		t.Fatalf("published %v while W3 held %d", cp.Cosigners, held.Load())
	}
	// Newer heads are published while W3 still hangs on size 50: a hung
	// witness does not hold back the rounds.
	f.Update(e.tree.grow(t, 60))
	waitFor(t, "size 60 while W3 hangs", func() bool { return f.Latest().Size == 60 })
	if held.Load() != 1 {
		t.Fatalf("W3 was fed again while busy: %d requests", held.Load())
	}
	close(release)
	waitFor(t, "W3's cosignature on 60", func() bool { return len(f.Latest().Cosigners) == 3 })
	vs := e.store.all()
	if len(vs) != 3 || vs[0].Size != 50 || vs[1].Size != 60 || vs[2].Size != 60 || sigLines(vs[1].Note) != 3 || sigLines(vs[2].Note) != 4 {
		for _, v := range vs {
			t.Logf("version size %d, %d signatures", v.Size, sigLines(v.Note))
		}
		t.Fatalf("stored versions: %d", len(vs))
	}

	// Heads coalesce: many updates, the loop ends on the newest.
	for n := int64(51); n <= 400; n += 7 {
		f.Update(e.tree.grow(t, n))
	}
	final := e.tree.grow(t, 401)
	f.Update(final)
	waitFor(t, "size 401 cosigned by all", func() bool {
		cp := f.Latest()
		return cp.Size == 401 && len(cp.Cosigners) == 3
	})

	// A witness that goes down is retried by the loop (backoff, no new
	// head needed) and its cosignature is added when it returns.
	w2.down.Store(true)
	f.Update(e.tree.grow(t, 500))
	waitFor(t, "size 500 without W2", func() bool { return f.Latest().Size == 500 })
	waitFor(t, "W2 failures counted", func() bool { return requests(t, f, "W2", OutcomeUnavailable) >= 2 })
	if cs := f.Latest().Cosigners; slices.Contains(cs, "W2") {
		t.Fatalf("W2 cosigned while down: %v", cs)
	}
	w2.down.Store(false)
	waitFor(t, "W2 catching up at 500", func() bool { return len(f.Latest().Cosigners) == 3 })
	if w2.size(t, e.origin) != 500 {
		t.Fatal("W2 not at 500")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// With quorum none (or no policy) the log-signed checkpoint is published
// at once; witnesses that are configured still add cosignatures.
func TestQuorumNone(t *testing.T) {
	e := newEnv(t)
	f := e.feeder(t, "")
	f.Update(e.tree.grow(t, 3))
	f.step(context.Background())
	cp := f.Latest()
	if cp == nil || cp.Size != 3 || sigLines(cp.Note) != 1 || !cp.QuorumMet {
		t.Fatalf("no policy: %+v", cp)
	}

	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	w1.down.Store(true)
	f = e.feeder(t, fmt.Sprintf("log %s\nwitness W1 %s %s\nquorum none\n", e.signer.VerifierKey(), w1.vkey, w1.url))
	f.Update(e.tree.grow(t, 4))
	f.step(context.Background())
	if cp := f.Latest(); cp.Size != 4 || sigLines(cp.Note) != 1 {
		t.Fatalf("quorum none, witness down: %+v", cp)
	}
	w1.down.Store(false)
	f.step(context.Background())
	if cp := f.Latest(); cp.Size != 4 || !slices.Equal(cp.Cosigners, []string{"W1"}) || sigLines(cp.Note) != 2 {
		t.Fatalf("quorum none, witness back: %+v", cp)
	}
}

// A store failure keeps the previous checkpoint served and is retried.
func TestStoreFailure(t *testing.T) {
	e := newEnv(t)
	f := e.feeder(t, "")
	f.Update(e.tree.grow(t, 3))
	f.step(context.Background())
	e.store.fail.Store(true)
	f.Update(e.tree.grow(t, 5))
	if d := f.step(context.Background()); d <= 0 {
		t.Errorf("step after a store failure should ask for a retry, got %v", d)
	}
	if cp := f.Latest(); cp.Size != 3 {
		t.Fatalf("published %d without storing it", cp.Size)
	}
	if testutil.ToFloat64(f.m.publishErrors.WithLabelValues("store")) != 1 {
		t.Error("store error not counted")
	}
	e.store.fail.Store(false)
	f.step(context.Background())
	if cp := f.Latest(); cp.Size != 5 {
		t.Fatalf("not republished after the store came back: %d", cp.Size)
	}
}

// The Rekor-API checkpoint is a separate note: the feeder never takes it
// (Collect refuses a note not signed by the C2SP key, with the Rekor
// origin), and what it publishes has its own origin and key, so the Rekor
// note keeps its single signature.
func TestRekorCheckpointSeparate(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	f := e.feeder(t, fmt.Sprintf("witness W1 %s %s\nquorum W1\n", w1.vkey, w1.url))
	h := e.tree.grow(t, 12)

	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	hint := sha256.Sum256(der)
	rekorText := fmt.Sprintf("rekor.stella.example - 42\n12\n%s\n", base64.StdEncoding.EncodeToString(h.Root[:]))
	d := sha256.Sum256([]byte(rekorText))
	sig, _ := ecdsa.SignASN1(rand.Reader, ek, d[:])
	rekorNote := []byte(rekorText + "\n\u2014 rekor.stella.example " + base64.StdEncoding.EncodeToString(append(hint[:4], sig...)) + "\n")
	orig := bytes.Clone(rekorNote)

	if _, err := f.Collect(context.Background(), rekorNote); err == nil {
		t.Fatal("Collect accepted the Rekor note")
	}
	f.Update(h)
	f.step(context.Background())
	cp := f.Latest()
	if cp == nil || !cp.QuorumMet || !bytes.HasPrefix(cp.Note, []byte(e.origin+"\n12\n")) {
		t.Fatalf("C2SP checkpoint %+v", cp)
	}
	if !bytes.Equal(rekorNote, orig) || sigLines(rekorNote) != 1 {
		t.Fatal("Rekor note changed")
	}
	if w1.size(t, "rekor.stella.example - 42") != 0 {
		t.Fatal("witness saw the Rekor origin")
	}
}

func TestHandler(t *testing.T) {
	e := newEnv(t)
	f := e.feeder(t, "")
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("before publication: %d", resp.StatusCode)
	}
	f.Update(e.tree.grow(t, 9))
	f.step(context.Background())
	resp, err = http.Get(srv.URL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !bytes.Equal(body, f.Latest().Note) {
		t.Fatalf("GET /checkpoint: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	v, _ := note.NewVerifier(e.signer.VerifierKey())
	if _, err := note.Open(body, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(srv.URL+"/checkpoint", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

// Construction refuses policies this log cannot work with.
func TestNewChecksPolicy(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	_, k := mustKey(t)
	wv := mustCosigVKey(t, "w.example", k)
	for name, text := range map[string]string{
		"other log":      fmt.Sprintf("log %s\nwitness W %s http://127.0.0.1:1\nquorum W\n", other.signer.VerifierKey(), wv),
		"no url quorum":  fmt.Sprintf("witness W %s\nquorum W\n", wv),
		"no url 2 of 2 ": fmt.Sprintf("witness W %s\nwitness V %s http://127.0.0.1:1\ngroup g all W V\nquorum g\n", wv, mustCosigVKey(t, "v.example", mustPriv(t))),
	} {
		p, err := ParsePolicy([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := New(context.Background(), Config{Policy: p, Signer: e.signer, Proofs: TreeProofs(e.tree.t), Store: e.store}); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
}

func mustPriv(t *testing.T) ed25519.PrivateKey { _, k := mustKey(t); return k }

// A witness behind what we remember (restored from a backup, or our memory
// came from a 409 of another feeder's race) answers 409 with its real,
// older size; the feeder resends with the proof from there.
func TestWitnessBehindOurMemory(t *testing.T) {
	e := newEnv(t)
	w1 := startRealWitness(t, "w1.example", e.origin, e.signer.VerifierKey())
	f := e.feeder(t, fmt.Sprintf("witness W1 %s %s\nquorum W1\n", w1.vkey, w1.url))
	ctx := context.Background()
	f.Update(e.tree.grow(t, 20))
	f.step(ctx)
	if w1.size(t, e.origin) != 20 {
		t.Fatal("witness not at 20")
	}
	f.mu.Lock()
	f.witnesses[0].size = 35 // what we wrongly believe
	f.mu.Unlock()
	f.Update(e.tree.grow(t, 40))
	f.step(ctx)
	if cp := f.Latest(); cp.Size != 40 || !cp.QuorumMet {
		t.Fatalf("latest %+v", cp)
	}
	if requests(t, f, "W1", OutcomeConflict) != 1 || w1.size(t, e.origin) != 40 {
		t.Fatalf("conflicts %v, witness size %d", requests(t, f, "W1", OutcomeConflict), w1.size(t, e.origin))
	}
}
