package upstream

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Entry is one outbox row as GET /api/v1/upstream/entries lists it.
type Entry struct {
	ID       int64  `json:"id"`
	Log      string `json:"log"`      // "v1" or "v2": the local log
	LeafHash string `json:"leafHash"` // hex; the entry's Rekor UUID
	// Status is transparency_pending (logged locally, waiting for the
	// upstream), awaiting_local (the local write has not completed, or the
	// process died before it did: forwarded if the entry appears, dropped
	// after the grace if not), failed (refused by the upstream, or its
	// answer did not verify: see lastError) or forwarded.
	Status string `json:"status"`
	// LocalIndex is the entry's index in the local log; absent while the
	// local write has not completed.
	LocalIndex    *int64    `json:"localIndex,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"lastError,omitempty"`
	UpstreamIndex *int64    `json:"upstreamIndex,omitempty"`
	UpstreamUUID  string    `json:"upstreamUUID,omitempty"`
	// UpstreamVerified: the upstream's answer was verified (see the
	// package contract); false for a v2 409, which carries no proof.
	UpstreamVerified bool `json:"upstreamVerified"`
	// UpstreamTime is the upstream's integrated time (v1), Unix seconds.
	UpstreamTime *int64     `json:"upstreamIntegratedTime,omitempty"`
	ForwardedAt  *time.Time `json:"forwardedAt,omitempty"`
}

// List is the answer of GET /api/v1/upstream/entries.
type List struct {
	Entries []Entry `json:"entries"`
	// Next, if set, is the after= of the next page.
	Next string `json:"next,omitempty"`
	// Pending counts every row still waiting (transparency_pending and
	// awaiting_local, all pages; of the log= given) and OldestPending is
	// the oldest one's creation time.
	Pending       int64      `json:"pending"`
	OldestPending *time.Time `json:"oldestPending,omitempty"`
}

// Register adds the listing to mux:
//
//	GET /api/v1/upstream/entries?state=pending|failed|forwarded|all&log=v1|v2&after=<id>&limit=<n>
//	GET /api/v1/upstream/entries/{leafHash}
//
// state defaults to pending, limit to 1000 (at most 10000), ordered by id
// (oldest first).
func (r *Replay) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/upstream/entries", r.list)
	mux.HandleFunc("GET /api/v1/upstream/entries/{leafHash}", r.byLeaf)
}

var states = map[string]string{
	"pending":   "state IN ('awaiting_local', 'pending')",
	"failed":    "state = 'failed'",
	"forwarded": "state = 'forwarded'",
	"all":       "TRUE",
}

func (r *Replay) list(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "pending"
	}
	cond, ok := states[state]
	if !ok {
		httpError(w, http.StatusBadRequest, "state %q: want pending, failed, forwarded or all", state)
		return
	}
	where := []string{cond}
	var args []any
	countWhere, countArgs := states["pending"], []any{}
	if l := q.Get("log"); l != "" {
		if r.outbox[API(l)] == nil {
			httpError(w, http.StatusBadRequest, "log %q: not replayed here (configured: %s)", l, r.apis())
			return
		}
		where, args = append(where, "api = ?"), append(args, l)
		countWhere, countArgs = countWhere+" AND api = ?", append(countArgs, l)
	}
	after, err := intParam(q.Get("after"), 0)
	if err != nil {
		httpError(w, http.StatusBadRequest, "after: %v", err)
		return
	}
	limit, err := intParam(q.Get("limit"), 1000)
	if err != nil || limit < 1 || limit > 10000 {
		httpError(w, http.StatusBadRequest, "limit %q: want 1 to 10000", q.Get("limit"))
		return
	}
	where, args = append(where, "id > ?"), append(args, after)
	entries, err := r.query(req, strings.Join(where, " AND ")+" ORDER BY id LIMIT ?", append(args, limit+1)...)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "listing the upstream outbox failed")
		r.cfg.Logger.Error("upstream replay: list", "error", err)
		return
	}
	out := List{Entries: entries}
	if len(entries) > int(limit) {
		out.Entries = entries[:limit]
		out.Next = strconv.FormatInt(out.Entries[limit-1].ID, 10)
	}
	var oldest sql.NullInt64
	if err := r.cfg.DB.QueryRowContext(req.Context(), "SELECT COUNT(*), "+micros("MIN(created_at)")+" FROM upstream_outbox WHERE "+countWhere, countArgs...).
		Scan(&out.Pending, &oldest); err != nil {
		httpError(w, http.StatusInternalServerError, "listing the upstream outbox failed")
		r.cfg.Logger.Error("upstream replay: list", "error", err)
		return
	}
	if oldest.Valid {
		t := time.UnixMicro(oldest.Int64).UTC()
		out.OldestPending = &t
	}
	writeJSON(w, http.StatusOK, out)
}

func (r *Replay) byLeaf(w http.ResponseWriter, req *http.Request) {
	leaf, err := hex.DecodeString(req.PathValue("leafHash"))
	if err != nil || len(leaf) != 32 {
		httpError(w, http.StatusBadRequest, "want the entry's leaf hash (its UUID), 64 hex digits")
		return
	}
	entries, err := r.query(req, "leaf_hash = ? ORDER BY id", leaf)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "reading the upstream outbox failed")
		r.cfg.Logger.Error("upstream replay: by leaf", "error", err)
		return
	}
	if len(entries) == 0 {
		httpError(w, http.StatusNotFound, "no upstream replay of entry %x", leaf)
		return
	}
	writeJSON(w, http.StatusOK, List{Entries: entries})
}

func (r *Replay) query(req *http.Request, where string, args ...any) ([]Entry, error) {
	ctx := req.Context()
	rs, err := r.cfg.DB.QueryContext(ctx, "SELECT id, api, leaf_hash, state, local_index, "+micros("created_at")+", attempts, last_error,"+
		" upstream_index, upstream_uuid, upstream_time, upstream_verified, "+micros("forwarded_at")+" FROM upstream_outbox WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := []Entry{}
	for rs.Next() {
		var e Entry
		var leaf []byte
		var state string
		var local, uidx, utime, fwd sql.NullInt64
		var lastErr, uuid sql.NullString
		var created int64
		if err := rs.Scan(&e.ID, &e.Log, &leaf, &state, &local, &created, &e.Attempts, &lastErr, &uidx, &uuid, &utime, &e.UpstreamVerified, &fwd); err != nil {
			return nil, err
		}
		e.LeafHash = hex.EncodeToString(leaf)
		e.Status = state
		if state == "pending" {
			e.Status = "transparency_pending"
		}
		e.CreatedAt = time.UnixMicro(created).UTC()
		e.LastError, e.UpstreamUUID = lastErr.String, uuid.String
		if local.Valid {
			e.LocalIndex = &local.Int64
		}
		if uidx.Valid {
			e.UpstreamIndex = &uidx.Int64
		}
		if utime.Valid {
			e.UpstreamTime = &utime.Int64
		}
		if fwd.Valid {
			t := time.UnixMicro(fwd.Int64).UTC()
			e.ForwardedAt = &t
		}
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	// Rows never attempted have no local index yet: look it up.
	for i := range out {
		e := &out[i]
		if e.LocalIndex != nil {
			continue
		}
		for _, f := range r.fwd {
			if string(f.log.API) != e.Log {
				continue
			}
			id, err := f.log.TreeID(ctx)
			if err != nil || id == 0 {
				break
			}
			leaf, _ := hex.DecodeString(e.LeafHash)
			if le, err := r.cfg.Entries.EntryByHash(ctx, id, leaf); err == nil {
				e.LocalIndex = &le.Index
				if e.Status == "awaiting_local" {
					e.Status = "transparency_pending" // logged; the answer was lost
				}
			}
		}
	}
	return out, nil
}

func (r *Replay) apis() string {
	var s []string
	for _, f := range r.fwd {
		s = append(s, string(f.log.API))
	}
	return strings.Join(s, ", ")
}

func intParam(v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative integer")
	}
	return n, nil
}

func httpError(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, map[string]any{"code": status, "message": fmt.Sprintf(format, a...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// micros is the SQL of a TIMESTAMP(6) expression in Unix microseconds (the
// logserver's connections do not parse times).
func micros(expr string) string { return "CAST(UNIX_TIMESTAMP(" + expr + ") * 1000000 AS SIGNED)" }
