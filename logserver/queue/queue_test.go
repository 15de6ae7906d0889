package queue_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/queue"
	"github.com/stellaops/tlog/logserver/tenant"
)

// treeSize is the v1 log's size.
func treeSize(t testing.TB, base string) int64 {
	t.Helper()
	a := do(t, "GET", base+"/api/v1/log", nil, nil)
	var li struct{ TreeSize int64 }
	if err := json.Unmarshal(a.body, &li); err != nil {
		t.Fatal(err)
	}
	return li.TreeSize
}

// TestQueueLogsV1AndV2: a queued v1 and v2 submission is drained, and GET
// returns the logged entry, whose inclusion proof verifies (v1 with Rekor's
// verifier, v2 against its signed checkpoint); the log holds each once, and
// the metrics count them.
func TestQueueLogsV1AndV2(t *testing.T) {
	e := newEnv(t, nil)
	id1 := e.enqueue(t, "v1", e.v1Body(t, "queued v1"), nil)
	id2 := e.enqueue(t, "v2", v2Body(t, "queued v2"), nil)

	st := waitState(t, e.ls.URL, id1, "logged", 30*time.Second)
	uuid, idx := e.verifyV1(t, st.Entry)
	if st.UUID != uuid || st.LogIndex == nil || *st.LogIndex != idx || st.Attempts != 1 || st.API != "v1" || st.Tier != "graph" {
		t.Fatalf("v1 status %+v (entry %s at %d)", st, uuid, idx)
	}
	// The log serves the same entry by its UUID.
	if a := do(t, "GET", e.ls.URL+"/api/v1/log/entries/"+uuid, nil, nil); a.code != http.StatusOK {
		t.Fatalf("logged entry not served by the log: %d", a.code)
	}

	st2 := waitState(t, e.ls.URL, id2, "logged", 30*time.Second)
	var tle rekorpb.TransparencyLogEntry
	if err := protojson.Unmarshal(st2.Entry, &tle); err != nil {
		t.Fatalf("v2 entry %s: %v", st2.Entry, err)
	}
	verifyV2(t, e.v2vkey, &tle)
	leaf := rfc6962.DefaultHasher.HashLeaf(tle.CanonicalizedBody)
	if st2.UUID != hex.EncodeToString(leaf) || *st2.LogIndex != tle.LogIndex {
		t.Fatalf("v2 status %+v", st2)
	}

	if n := treeSize(t, e.ls.URL); n != 1 {
		t.Fatalf("v1 tree size %d, want 1", n)
	}
	if got := metric(t, e.ls.URL, "attestor_rekor_success_total"); got != 2 {
		t.Fatalf("attestor_rekor_success_total %v, want 2", got)
	}
	if got := metric(t, e.ls.URL, "rekor_inclusion_latency_count"); got != 2 {
		t.Fatalf("rekor_inclusion_latency_count %v, want 2", got)
	}
	if got := metric(t, e.ls.URL, `attestor_rekor_queue_depth{tier="graph"}`); got != 0 {
		t.Fatalf("queue depth %v, want 0", got)
	}
	if got := metric(t, e.ls.URL, "attestor_rekor_retry_total"); got != 0 {
		t.Fatalf("attestor_rekor_retry_total %v, want 0", got)
	}
	// An unknown id, and a malformed one, are 404.
	if code, _ := getStatus(t, e.ls.URL, strings.Repeat("ab", 16)); code != http.StatusNotFound {
		t.Fatalf("unknown id: %d", code)
	}
	if code, _ := getStatus(t, e.ls.URL, "x"); code != http.StatusNotFound {
		t.Fatalf("malformed id: %d", code)
	}
}

func verifyV2(t *testing.T, vkey string, tle *rekorpb.TransparencyLogEntry) {
	t.Helper()
	p := tle.InclusionProof
	leaf := rfc6962.DefaultHasher.HashLeaf(tle.CanonicalizedBody)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(p.LogIndex), uint64(p.TreeSize), leaf, p.Hashes, p.RootHash); err != nil {
		t.Fatalf("v2 inclusion proof: %v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(p.Checkpoint.Envelope), note.VerifierList(v))
	if err != nil {
		t.Fatalf("v2 checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 3 || lines[1] != strconv.FormatInt(p.TreeSize, 10) || lines[2] != base64.StdEncoding.EncodeToString(p.RootHash) {
		t.Fatalf("v2 checkpoint %q does not match the proof (size %d)", n.Text, p.TreeSize)
	}
}

// TestQueueDuplicateIsLoggedOnce: an entry already in the log, queued, is
// marked logged with the existing entry (the log's 409): the log does not
// grow and no attempt fails.
func TestQueueDuplicateIsLoggedOnce(t *testing.T) {
	e := newEnv(t, nil)
	body := e.v1Body(t, "logged directly first")
	a := do(t, "POST", e.ls.URL+"/api/v1/log/entries", body, nil)
	if a.code != http.StatusCreated {
		t.Fatalf("direct write: %d %s", a.code, a.body)
	}
	direct, _ := e.verifyV1(t, a.body)
	st := waitState(t, e.ls.URL, e.enqueue(t, "v1", body, nil), "logged", 30*time.Second)
	if uuid, _ := e.verifyV1(t, st.Entry); uuid != direct || st.Attempts != 1 {
		t.Fatalf("queued duplicate: %+v, want the direct entry %s", st, direct)
	}
	v2 := v2Body(t, "v2 twice")
	if a := do(t, "POST", e.ls.URL+"/api/v2/log/entries", v2, nil); a.code != http.StatusCreated {
		t.Fatalf("direct v2 write: %d %s", a.code, a.body)
	}
	st2 := waitState(t, e.ls.URL, e.enqueue(t, "v2", v2, nil), "logged", 30*time.Second)
	var tle rekorpb.TransparencyLogEntry
	if err := protojson.Unmarshal(st2.Entry, &tle); err != nil {
		t.Fatal(err)
	}
	verifyV2(t, e.v2vkey, &tle)
	if tle.LogIndex != 0 {
		t.Fatalf("v2 duplicate logged at %d, want the existing 0", tle.LogIndex)
	}
	if n := treeSize(t, e.ls.URL); n != 1 {
		t.Fatalf("tree size %d, want 1", n)
	}
}

// TestQueueRefusesBadInput: a body the write endpoint refuses gets that
// endpoint's very answer from the queue, and nothing is stored.
func TestQueueRefusesBadInput(t *testing.T) {
	e := newEnv(t, nil)
	good := e.v1Body(t, "good")
	var pe map[string]any
	_ = json.Unmarshal(good, &pe)
	pe["spec"].(map[string]any)["signature"].(map[string]any)["content"] = base64.StdEncoding.EncodeToString([]byte("not a signature"))
	badSig, _ := json.Marshal(pe)
	cases := []struct {
		name, api string
		body      []byte
		hdr       map[string]string
	}{
		{"malformed JSON", "v1", []byte(`{"kind":`), nil},
		{"empty body", "v1", []byte(` `), nil},
		{"unknown kind", "v1", []byte(`{"kind":"nope","apiVersion":"0.0.1","spec":{}}`), nil},
		{"bad signature", "v1", badSig, nil},
		{"wrong content type", "v1", good, map[string]string{"Content-Type": "text/plain"}},
		{"v2 malformed", "v2", []byte(`{"hashedRekordRequestV002":{"digest":"AA=="}}`), nil},
		{"v2 unknown field", "v2", []byte(`{"nope":1}`), nil},
	}
	for _, c := range cases {
		want := do(t, "POST", e.ls.URL+"/api/"+c.api+"/log/entries", c.body, c.hdr)
		got := do(t, "POST", e.ls.URL+"/api/"+c.api+"/queue/entries", c.body, c.hdr)
		if want.code < 400 || want.code >= 500 || got.code != want.code || !bytes.Equal(got.body, want.body) {
			t.Errorf("%s: queue %d %s, write endpoint %d %s", c.name, got.code, got.body, want.code, want.body)
		}
	}
	if a := do(t, "POST", e.ls.URL+"/api/v1/queue/entries", good, map[string]string{"X-Queue-Priority": "high"}); a.code != http.StatusBadRequest {
		t.Errorf("bad priority: %d %s", a.code, a.body)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM queue_entries"); n != 0 {
		t.Fatalf("%d rows stored from bad input", n)
	}
	if got := metric(t, e.ls.URL, "logserver_queue_rejected_invalid_total"); got != float64(len(cases)) {
		t.Fatalf("rejected_invalid %v, want %d", got, len(cases))
	}
}

// TestQueueBackpressure: with max_size 5 and no drainer, 20 concurrent
// submissions get exactly 5 accepted and 15 × 503 with Retry-After, and
// the table holds 5 rows; the depth gauge says 5.
func TestQueueBackpressure(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Queue.MaxSize = 5
		c.Queue.Drain = boolp(false)
	})
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := do(t, "POST", e.ls.URL+"/api/v1/queue/entries", e.v1Body(t, fmt.Sprintf("bp %d", i)), nil)
			if a.code == http.StatusServiceUnavailable && a.header.Get("Retry-After") != "30" {
				t.Errorf("503 without Retry-After: %v", a.header)
			}
			mu.Lock()
			codes[a.code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusAccepted] != 5 || codes[http.StatusServiceUnavailable] != 15 {
		t.Fatalf("answers %v, want 5 × 202 and 15 × 503", codes)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM queue_entries"); n != 5 {
		t.Fatalf("%d rows, want 5", n)
	}
	if got := metric(t, e.ls.URL, `attestor_rekor_queue_depth{tier="graph"}`); got != 5 {
		t.Fatalf("queue depth %v, want 5", got)
	}
	if got := metric(t, e.ls.URL, "logserver_queue_rejected_full_total"); got != 15 {
		t.Fatalf("rejected_full %v, want 15", got)
	}
}

// TestQueuePriorityOrder: rows queued while no drainer runs are logged,
// by one worker, highest priority first, then oldest first.
func TestQueuePriorityOrder(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Queue.Drain = boolp(false) })
	prios := []int{0, 5, 0, 9, 5, 0, 9, 1}
	ids := make([]string, len(prios))
	for i, p := range prios {
		ids[i] = e.enqueue(t, "v1", e.v1Body(t, fmt.Sprintf("prio %d", i)), map[string]string{"X-Queue-Priority": strconv.Itoa(p)})
	}
	e.ls.Config.Queue.Drain = boolp(true)
	e.ls.Config.Queue.Workers = 1
	e.ls.Restart()
	// Expected order: priority 9 (#3, #6), 5 (#1, #4), 1 (#7), 0 (#0, #2, #5).
	want := []int{3, 6, 1, 4, 7, 0, 2, 5}
	for pos, i := range want {
		st := waitState(t, e.ls.URL, ids[i], "logged", 30*time.Second)
		if *st.LogIndex != int64(pos) || st.Priority != prios[i] {
			t.Fatalf("row #%d (priority %d) logged at %d, want %d", i, prios[i], *st.LogIndex, pos)
		}
	}
}

// TestEnqueueHook: the admission middleware's hook validates like the
// write endpoint (a refusal carries that endpoint's answer, nothing is
// stored), stores the tenant and tier it is given, and the drainer logs
// the row; a body over queue.max_body_bytes is refused with 413.
func TestEnqueueHook(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Queue.MaxBodyBytes = 4096 })
	q := e.ls.App.Queue()
	ctx := context.Background()
	_, err := q.Enqueue(ctx, "v1", tenant.Tenant{Name: "alice", Authenticated: true}, "edge", []byte(`{"kind":"nope"}`))
	var rej *queue.RejectedError
	want := do(t, "POST", e.ls.URL+"/api/v1/log/entries", []byte(`{"kind":"nope"}`), nil)
	if !errors.As(err, &rej) || rej.Status != want.code || !bytes.Equal(rej.Body, want.body) {
		t.Fatalf("hook on bad input: %v; the write endpoint answers %d %s", err, want.code, want.body)
	}
	if _, err := q.Enqueue(ctx, "v3", tenant.Tenant{Name: "alice"}, "graph", e.v1Body(t, "x")); err == nil {
		t.Fatal("unknown api accepted")
	}
	// Valid, padded past the queue's cap (the log's own cap is 32 MiB).
	big := append(e.v1Body(t, "big"), bytes.Repeat([]byte(" "), 5000)...)
	if a := do(t, "POST", e.ls.URL+"/api/v1/queue/entries", big, nil); a.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body of %d bytes over max_body_bytes: %d %s", len(big), a.code, a.body)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM queue_entries"); n != 0 {
		t.Fatalf("%d rows stored from refused input", n)
	}
	id, err := q.Enqueue(ctx, "v1", tenant.Tenant{Name: "alice", Authenticated: true}, "edge", e.v1Body(t, "via the hook"))
	if err != nil {
		t.Fatal(err)
	}
	var tn, tier string
	if err := e.db.QueryRow("SELECT tenant, tier FROM queue_entries WHERE id = ?", id).Scan(&tn, &tier); err != nil || tn != "alice" || tier != "edge" {
		t.Fatalf("row: tenant %q tier %q %v", tn, tier, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		row, err := q.Get(ctx, id, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if row.State == queue.StateLogged {
			e.verifyV1(t, row.Result)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook row not logged: %+v", row)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The default tenant does not see alice's row.
	if code, _ := getStatus(t, e.ls.URL, id); code != http.StatusNotFound {
		t.Fatalf("another tenant's row: %d", code)
	}
	if got := metric(t, e.ls.URL, `attestor_rekor_queue_depth{tier="edge"}`); got != 0 {
		t.Fatalf("edge depth %v", got)
	}
}
