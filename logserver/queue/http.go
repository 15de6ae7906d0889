package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stellaops/tlog/logserver/tenant"
)

// PriorityHeader sets a queued submission's priority: an integer 0..100,
// higher drained first; default 0.
const PriorityHeader = "X-Queue-Priority"

// Register adds the async API to mux:
//
//	POST /api/v1/queue/entries       a Rekor v1 proposed entry → 202 {"id","status"}
//	POST /api/v2/queue/entries       a Rekor v2 CreateEntryRequest → 202
//	GET  /api/v1/queue/entries/{id}  the row's status (also under /api/v2/)
//
// A POST is validated as the API's write endpoint would validate it; a
// refusal is that endpoint's answer, and nothing is stored.
func (q *Queue) Register(mux *http.ServeMux) {
	for _, api := range []string{APIv1, APIv2} {
		if q.opts.Check[api] != nil {
			mux.HandleFunc("POST /api/"+api+"/queue/entries", func(w http.ResponseWriter, r *http.Request) { q.post(w, r, api) })
		}
		mux.HandleFunc("GET /api/"+api+"/queue/entries/{id}", q.get)
	}
}

// ErrUnauthenticated: the request's credentials name no tenant, or the
// queue takes submissions only from authenticated tenants.
var ErrUnauthenticated = errors.New("unauthenticated")

// tenantOf is the request's tenant.
func (q *Queue) tenantOf(r *http.Request) (tenant.Tenant, error) {
	if q.opts.Resolve != nil {
		t, err := q.opts.Resolve(r)
		if err != nil {
			return t, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
		return t, nil
	}
	if t, ok := tenant.FromContext(r.Context()); ok {
		return t, nil
	}
	return tenant.Tenant{Name: q.opts.DefaultTenant}, nil
}

func (q *Queue) post(w http.ResponseWriter, r *http.Request, api string) {
	t, err := q.tenantOf(r)
	if err == nil && q.opts.RequireAuthentication && !t.Authenticated {
		err = fmt.Errorf("%w: this log accepts entries only from authenticated tenants: send Authorization: Bearer <token> or a client certificate", ErrUnauthenticated)
	}
	if err != nil {
		q.fail(w, r, err)
		return
	}
	prio := 0
	if h := r.Header.Get(PriorityHeader); h != "" {
		p, err := strconv.Atoi(h)
		if err != nil || p < 0 || p > 100 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want an integer 0..100", PriorityHeader, h))
			return
		}
		prio = p
	}
	body, ok := q.opts.Check[api](w, r)
	if !ok {
		q.m.rejectedInvalid.Inc()
		return
	}
	tier := "graph"
	if q.opts.Tier != nil {
		if tier, err = q.opts.Tier(r, api, body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	id, err := q.insert(r.Context(), api, t.Name, tier, prio, body)
	if err != nil {
		q.fail(w, r, err)
		return
	}
	loc := "/api/" + api + "/queue/entries/" + id
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": StatusPending})
}

// status is a row as the API shows it.
type status struct {
	ID            string          `json:"id"`
	Status        string          `json:"status"`
	API           string          `json:"api"`
	Tier          string          `json:"tier"`
	Priority      int             `json:"priority"`
	CreatedAt     time.Time       `json:"created_at"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	FinishedAt    *time.Time      `json:"finished_at,omitempty"`
	LogIndex      *int64          `json:"log_index,omitempty"`
	UUID          string          `json:"uuid,omitempty"`
	Entry         json.RawMessage `json:"entry,omitempty"`
}

func (q *Queue) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) != 32 {
		q.fail(w, r, ErrNotFound)
		return
	}
	t, err := q.tenantOf(r)
	if err != nil {
		q.fail(w, r, err)
		return
	}
	e, err := q.Get(r.Context(), id, t.Name)
	if err != nil {
		q.fail(w, r, err)
		return
	}
	st := status{ID: e.ID, Status: e.State, API: e.API, Tier: e.Tier, Priority: e.Priority, CreatedAt: e.CreatedAt,
		Attempts: e.Attempts, LastError: e.LastError, LogIndex: e.LogIndex, UUID: e.EntryUUID}
	if e.State == StatePending {
		st.Status = StatusPending
		st.NextAttemptAt = &e.NextAttemptAt
	} else {
		st.FinishedAt = &e.FinishedAt
	}
	if e.State == StateLogged {
		st.Entry = e.Result
	}
	writeJSON(w, http.StatusOK, st)
}

// fail is the API's one mapping of errors to answers.
func (q *Queue) fail(w http.ResponseWriter, r *http.Request, err error) {
	var full *FullError
	var rej *RejectedError
	switch {
	case errors.As(err, &full):
		full.WriteResponse(w)
	case errors.As(err, &rej):
		rej.WriteResponse(w)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no such queued entry")
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="transparency log"`)
		writeError(w, http.StatusUnauthorized, err.Error())
	default:
		q.opts.Logger.ErrorContext(r.Context(), "queue request", "method", r.Method, "path", r.URL.Path, "error", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "the queue's database is unavailable; retry later")
	}
}

// writeError answers {"code","message"}, the Rekor v1 error shape.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
