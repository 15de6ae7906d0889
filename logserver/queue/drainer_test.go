package queue_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stellaops/tlog/internal/retry"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/queue"
	"github.com/stellaops/tlog/logserver/tenant"
)

// faultLog is the fault injection: it forwards the drainer's requests to
// the real logserver over HTTP, except that the next scripted POSTs get
// the scripted answer instead (the log is not reached). It counts the
// POSTs that reached the log, per body.
type faultLog struct {
	base string

	mu     sync.Mutex
	script []int
	times  []time.Time // every POST, scripted or not
	posts  map[[32]byte]int
}

func newFaultLog(base string) *faultLog { return &faultLog{base: base, posts: map[[32]byte]int{}} }

func (f *faultLog) fail(codes ...int) {
	f.mu.Lock()
	f.script = append(f.script, codes...)
	f.times = nil
	f.mu.Unlock()
}

func (f *faultLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method == http.MethodPost {
		f.mu.Lock()
		f.times = append(f.times, time.Now())
		if len(f.script) > 0 {
			code := f.script[0]
			f.script = f.script[1:]
			f.mu.Unlock()
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"code":%d,"message":"injected fault"}`, code)
			return
		}
		f.posts[sha256.Sum256(body)]++
		f.mu.Unlock()
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, f.base+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (f *faultLog) postTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

// fakeBudget refuses the first refuse Takes.
type fakeBudget struct {
	refuse         atomic.Int64
	takes, refunds atomic.Int64
	retryAfter     time.Duration
}

func (b *fakeBudget) Take(_ context.Context, _, _ string) (queue.Admission, error) {
	b.takes.Add(1)
	if b.refuse.Add(-1) >= 0 {
		return queue.Admission{RetryAfter: b.retryAfter}, nil
	}
	return queue.Admission{Admitted: true}, nil
}

func (b *fakeBudget) Refund(_ context.Context, _, _ string) error {
	b.refunds.Add(1)
	return nil
}

// drainer is a queue.Queue of the test's own on e's database, submitting
// through log; its metrics are in reg.
type drainer struct {
	q   *queue.Queue
	reg *prometheus.Registry
}

func (e *env) drainer(t *testing.T, log http.Handler, o queue.Options) *drainer {
	t.Helper()
	db, err := sql.Open("mysql", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := &drainer{reg: prometheus.NewRegistry()}
	o.Log, o.Registerer = log, d.reg
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.MaxSize == 0 {
		o.MaxSize = 10000
	}
	o.MaxBodyBytes = 1 << 20
	if o.Workers == 0 {
		o.Workers = 1
	}
	o.Poll, o.Lease = 20*time.Millisecond, 20*time.Second
	if err := o.Retry.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.q, err = queue.New(db, o); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *drainer) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (d *drainer) counter(name string) float64 {
	mfs, _ := d.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// TestDrainerRetriesAndFailures: with a log that fails (fault injection
// in front of the real one), a 503 is retried with exponential backoff
// (200ms, then 400ms), a 400 fails the row at once with the reason,
// exhausted attempts fail it with the last error (and `drain -failed`
// brings it back), a 429 and a budget refusal wait without counting an
// attempt, and a duplicate is refunded.
func TestDrainerRetriesAndFailures(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Queue.Drain = boolp(false) })
	f := newFaultLog(e.ls.URL)
	b := &fakeBudget{retryAfter: 300 * time.Millisecond}
	d := e.drainer(t, f, queue.Options{Budget: b,
		Retry: retry.Policy{MaxAttempts: 4, InitialDelay: 200 * time.Millisecond, MaxDelay: time.Second, Multiplier: 2}})
	d.run(t)

	// Backoff: two 503s, then the real log.
	f.fail(503, 503)
	st := waitState(t, e.ls.URL, e.enqueue(t, "v1", e.v1Body(t, "backoff"), nil), "logged", 30*time.Second)
	e.verifyV1(t, st.Entry)
	ts := f.postTimes()
	if st.Attempts != 3 || len(ts) != 3 {
		t.Fatalf("attempts %d, posts %d; want 3", st.Attempts, len(ts))
	}
	if g1, g2 := ts[1].Sub(ts[0]), ts[2].Sub(ts[1]); g1 < 190*time.Millisecond || g2 < 390*time.Millisecond || g2 > 2*time.Second {
		t.Fatalf("retry gaps %v, %v; want about 200ms then 400ms", g1, g2)
	}
	if got := d.counter("attestor_rekor_retry_total"); got != 2 {
		t.Fatalf("retry_total %v, want 2", got)
	}

	// Permanent: a 400 fails the row at once.
	f.fail(400)
	st = waitState(t, e.ls.URL, e.enqueue(t, "v1", e.v1Body(t, "refused"), nil), "failed", 30*time.Second)
	if st.Attempts != 1 || !strings.Contains(st.LastError, "refused the entry (400)") || st.Entry != nil {
		t.Fatalf("permanent failure: %+v", st)
	}

	// Exhausted: four 503s fail it; made due with -failed, it is logged.
	f.fail(503, 503, 503, 503)
	id := e.enqueue(t, "v1", e.v1Body(t, "exhausted"), nil)
	st = waitState(t, e.ls.URL, id, "failed", 30*time.Second)
	if st.Attempts != 4 || !strings.Contains(st.LastError, "after 4 attempts") {
		t.Fatalf("exhausted: %+v", st)
	}
	if n, err := d.q.MakeDue(context.Background(), true); err != nil || n != 2 {
		t.Fatalf("MakeDue(failed): %d, %v; want the 2 failed rows", n, err)
	}
	e.verifyV1(t, waitState(t, e.ls.URL, id, "logged", 30*time.Second).Entry)
	// (the permanently refused row, made due too, is logged as well: the
	// real log takes it.)

	// 429 and budget refusals: waits, no attempt counted.
	f.fail(429)
	b.refuse.Store(2)
	takes := b.takes.Load()
	start := time.Now()
	waits := e.v1Body(t, "waits")
	st = waitState(t, e.ls.URL, e.enqueue(t, "v1", waits, nil), "logged", 30*time.Second)
	if st.Attempts != 1 || time.Since(start) < 1500*time.Millisecond {
		t.Fatalf("after a 429 and two budget refusals: attempts %d after %v; want 1 after >= 1.6s", st.Attempts, time.Since(start))
	}
	if n := b.takes.Load() - takes; n != 4 {
		t.Fatalf("%d budget takes, want 4 (2 refused, 1 before the 429, 1 logged)", n)
	}

	// A duplicate is logged with the existing entry and its unit refunded.
	refunds := b.refunds.Load()
	waitState(t, e.ls.URL, e.enqueue(t, "v1", waits, nil), "logged", 30*time.Second)
	if b.refunds.Load()-refunds != 1 {
		t.Fatalf("duplicate: %d refunds, want 1", b.refunds.Load()-refunds)
	}
	if got := d.counter("attestor_rekor_success_total"); got != 5 {
		t.Fatalf("success_total %v, want 5", got)
	}
	if got := testutil.CollectAndCount(d.reg, "rekor_inclusion_latency"); got != 1 {
		t.Fatalf("rekor_inclusion_latency series %d", got)
	}
}

// TestTwoDrainersNeverDoubleSubmit: two drainers (4 workers each) on one
// database drain 200 rows; every row is logged, each body reached the log
// exactly once, both drainers took part, and the log holds 200 entries.
func TestTwoDrainersNeverDoubleSubmit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Queue.Drain = boolp(false) })
	const n = 200
	ids := make([]string, n)
	for i := range n {
		ids[i] = e.enqueue(t, "v1", e.v1Body(t, fmt.Sprintf("two drainers %d", i)), nil)
	}
	f := newFaultLog(e.ls.URL)
	d1 := e.drainer(t, f, queue.Options{Workers: 4})
	d2 := e.drainer(t, f, queue.Options{Workers: 4})
	start := time.Now()
	d1.run(t)
	d2.run(t)
	for _, id := range ids {
		waitState(t, e.ls.URL, id, "logged", 2*time.Minute)
	}
	elapsed := time.Since(start)
	f.mu.Lock()
	for h, c := range f.posts {
		if c != 1 {
			t.Errorf("body %x submitted %d times", h[:4], c)
		}
	}
	posted := len(f.posts)
	f.mu.Unlock()
	s1, s2 := d1.counter("attestor_rekor_success_total"), d2.counter("attestor_rekor_success_total")
	if posted != n || s1+s2 != n || s1 == 0 || s2 == 0 {
		t.Fatalf("%d bodies posted, successes %v + %v; want %d, both drainers working", posted, s1, s2, n)
	}
	if size := treeSize(t, e.ls.URL); size != n {
		t.Fatalf("tree size %d, want %d", size, n)
	}
	t.Logf("two drainers, 8 workers: %d entries in %v (%.0f entries/s, through HTTP)", n, elapsed, float64(n)/elapsed.Seconds())
}

// TestTenantIsolation: a tenant reads only its own rows; the default
// tenant only its own. (The tenant comes from the request's context, set
// here as the budget's tenant middleware will.)
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Queue.Drain = boolp(false) })
	d := e.drainer(t, http.NotFoundHandler(), queue.Options{})
	st := queue.NewStore(e.db)
	for _, r := range []struct{ id, tenant string }{{strings.Repeat("a", 32), "alice"}, {strings.Repeat("b", 32), "default"}} {
		if err := st.Insert(context.Background(), &queue.Entry{ID: r.id, API: "v1", Tenant: r.tenant, Tier: "graph", Body: []byte("{}")}, 10); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	d.q.Register(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if name := r.Header.Get("X-Test-Tenant"); name != "" {
			ctx = tenant.WithContext(ctx, tenant.Tenant{Name: name, Authenticated: true})
		}
		mux.ServeHTTP(w, r.WithContext(ctx))
	}))
	defer srv.Close()
	get := func(id, who string) int {
		return do(t, "GET", srv.URL+"/api/v1/queue/entries/"+id, nil, map[string]string{"X-Test-Tenant": who}).code
	}
	alice, def := strings.Repeat("a", 32), strings.Repeat("b", 32)
	for _, c := range []struct {
		id, who string
		want    int
	}{{alice, "alice", 200}, {alice, "bob", 404}, {alice, "", 404}, {def, "", 200}, {def, "alice", 404}} {
		if got := get(c.id, c.who); got != c.want {
			t.Errorf("tenant %q reading %s…: %d, want %d", c.who, c.id[:4], got, c.want)
		}
	}
}
