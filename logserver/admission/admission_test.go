package admission_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/logserver/admission"
	"github.com/stellaops/tlog/logserver/budget"
	"github.com/stellaops/tlog/logserver/tenant"
	sqlschema "github.com/stellaops/tlog/sql"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

func TestClassifier(t *testing.T) {
	signer, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	v1 := v1Encoder(t)
	hashed := v1(signer.HashedRekord([]byte("a")))
	dsse := v1(signer.DSSE([]byte("a")))               // predicate https://slsa.dev/provenance/v1
	intoto1 := v1(signer.Intoto("0.0.1", []byte("a"))) // predicate https://spdx.dev/Document
	intoto2 := v1(signer.Intoto("0.0.2", []byte("a")))
	v2dsse := []byte(`{"dsseRequestV002":{"envelope":{"payload":"eyJwcmVkaWNhdGVUeXBlIjoiaHR0cHM6Ly9zbHNhLmRldi9wcm92ZW5hbmNlL3YxIn0=","payloadType":"application/vnd.in-toto+json","signatures":[]},"verifiers":[]}}`)
	v2hashed := v2Body(t, []byte("a"))

	byKind := admission.Classifier{EdgeKinds: []string{"intoto"}}
	byPredicate := admission.Classifier{EdgePredicateTypes: []string{"https://slsa.dev/provenance/v1"}}
	bySPDX := admission.Classifier{EdgePredicateTypes: []string{"https://spdx.dev/Document"}}
	bySize := admission.Classifier{EdgeMinBytes: int64(len(hashed))}
	for _, c := range []struct {
		name   string
		c      admission.Classifier
		api    string
		header string
		body   []byte
		want   string
	}{
		{"nothing configured", admission.Classifier{}, "v1", "", dsse, "graph"},
		{"header edge", admission.Classifier{}, "v1", "edge", hashed, "edge"},
		{"header graph wins over kind", byKind, "v1", "graph", intoto2, "graph"},
		{"kind intoto 0.0.1", byKind, "v1", "", intoto1, "edge"},
		{"kind not listed", byKind, "v1", "", dsse, "graph"},
		{"v2 kind dsse", admission.Classifier{EdgeKinds: []string{"dsse"}}, "v2", "", v2dsse, "edge"},
		{"v2 kind hashedrekord", admission.Classifier{EdgeKinds: []string{"dsse"}}, "v2", "", v2hashed, "graph"},
		{"predicate of v1 dsse", byPredicate, "v1", "", dsse, "edge"},
		{"predicate of v1 intoto 0.0.1", bySPDX, "v1", "", intoto1, "edge"},
		{"predicate of v1 intoto 0.0.2", bySPDX, "v1", "", intoto2, "edge"},
		{"predicate not listed", byPredicate, "v1", "", intoto2, "graph"},
		{"predicate of v2 dsse", byPredicate, "v2", "", v2dsse, "edge"},
		{"hashedrekord has no predicate", byPredicate, "v1", "", hashed, "graph"},
		{"size at the threshold", bySize, "v1", "", hashed, "edge"},
		{"size below", bySize, "v1", "", hashed[:len(hashed)-1], "graph"},
		{"unparsable body", byKind, "v1", "", []byte("{"), "graph"},
	} {
		got, err := c.c.Tier(c.api, c.header, c.body)
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	for _, h := range []string{"Edge", "bulk", " "} {
		if got, err := byKind.Tier("v1", h, hashed); err == nil {
			t.Errorf("header %q: %q, want an error", h, got)
		}
	}
}

// queue records what the admission hands it (the queue helper's Queuer
// is tested with it; here only the hook's contract).
type queue struct {
	calls atomic.Int64
	api   string
	t     tenant.Tenant
	tier  string
	body  []byte
}

func (q *queue) Enqueue(_ context.Context, api string, t tenant.Tenant, tier string, body []byte) (string, error) {
	q.calls.Add(1)
	q.api, q.t, q.tier, q.body = api, t, tier, body
	return "q-42", nil
}

// TestAdmissionFaults covers what a real logserver cannot easily show:
// the budget store failing (a closed pool: 503, never the handler) and
// the queue hook, over a real budget store and real HTTP.
func TestAdmissionFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB")
	}
	m := stack.TestMariaDB(t, false)
	db, err := sql.Open("mysql", stack.TestDatabase(t, m, "budgets"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrate.Apply(context.Background(), db, sqlschema.FS, "logserver", "logserver"); err != nil {
		t.Fatal(err)
	}
	closed, _ := sql.Open("mysql", stack.TestDatabase(t, m, "closed"))
	closed.Close()
	res, err := tenant.NewResolver(nil, "public")
	if err != nil {
		t.Fatal(err)
	}
	policy := budget.Policy{Default: budget.Limits{HourlyLimit: 1, BurstLimit: 200, BurstWindow: 10 * time.Minute, EdgeDailyLimit: 1}}
	var handled atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		if got, ok := tenant.FromContext(r.Context()); !ok || got.Name != "public" {
			t.Errorf("handler got tenant %+v %v", got, ok)
		}
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"x":1}` {
			t.Errorf("handler got body %q", b)
		}
		w.WriteHeader(http.StatusCreated)
	})
	serve := func(store *budget.Store, q admission.Queuer) (string, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		a := &admission.Admission{Resolver: res, Budgets: store, MaxRequestBytes: 1 << 20, V2: true,
			Metrics: admission.NewMetrics(reg), Logger: slog.New(slog.DiscardHandler)}
		if q != nil {
			a.Queue = q
		}
		mux := http.NewServeMux()
		mux.Handle("/", a.Wrap(handler))
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv.URL, reg
	}
	post := func(url, path string, header ...string) reply {
		return client{base: url, http: http.DefaultClient}.post(t, path, []byte(`{"x":1}`), header...)
	}

	t.Run("store down", func(t *testing.T) {
		url, _ := serve(budget.New(closed, policy, budget.Options{}), nil)
		for _, c := range []struct {
			path string
			code int
		}{{admission.PathV1, 503}, {admission.PathV2, 14}} {
			r := post(url, c.path)
			code, msg := r.message(t)
			if r.code != 503 || code != c.code || r.header.Get("Retry-After") != "5" || !strings.Contains(msg, "budget store") {
				t.Fatalf("%s with the store down: %d %v %s", c.path, r.code, r.header, r.body)
			}
		}
		if handled.Load() != 0 {
			t.Fatal("a submission reached the handler without a budget decision")
		}
		wantMetrics(t, client{base: url, http: http.DefaultClient}, map[string]float64{subm("graph", "unavailable"): 2, subm("graph", "admitted"): 0})
	})

	t.Run("queue hook", func(t *testing.T) {
		q := &queue{}
		url, _ := serve(budget.New(db, policy, budget.Options{}), q)
		if r := post(url, admission.PathV1); r.code != 201 {
			t.Fatalf("first: %d %s", r.code, r.body)
		}
		// Over budget without Prefer: 429, nothing queued.
		if r := post(url, admission.PathV1); r.code != 429 || q.calls.Load() != 0 {
			t.Fatalf("over budget: %d %s, queued %d", r.code, r.body, q.calls.Load())
		}
		r := post(url, admission.PathV2, "Prefer", "wait=5, respond-async")
		var got map[string]string
		if err := json.Unmarshal(r.body, &got); err != nil || r.code != 202 || got["id"] != "q-42" || got["status"] != "transparency_pending" ||
			r.header.Get("Location") != "/api/v2/queue/entries/q-42" {
			t.Fatalf("queued: %d %v %s", r.code, r.header, r.body)
		}
		if q.api != "v2" || q.t.Name != "public" || q.tier != "graph" || string(q.body) != `{"x":1}` {
			t.Fatalf("queue got %q %+v %q %q", q.api, q.t, q.tier, q.body)
		}
		if handled.Load() != 1 {
			t.Fatalf("handler called %d times, want 1", handled.Load())
		}
		wantMetrics(t, client{base: url, http: http.DefaultClient}, map[string]float64{subm("graph", "admitted"): 1,
			subm("graph", "logged"): 1, subm("graph", "rejected"): 1, subm("graph", "queued"): 1, "attestor_rekor_submissions_rejected": 1})
	})
}
