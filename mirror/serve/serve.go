// Package serve serves a mirror (or an unpacked kit) read-only as a
// c2sp.org/tlog-tiles log, with the checkpoint history:
//
//	GET /checkpoint                       the served snapshot's checkpoint
//	GET /tile/<L>/<N>[.p/<W>]             hash tiles
//	GET /tile/entries/<N>[.p/<W>]         entry bundles
//	GET /snapshots                        JSON list of the snapshots
//	GET /snapshots/<date>/checkpoint      an older checkpoint
//	GET /snapshots/<date>/consistency     its consistency proof from the previous one
//
// Contract: nothing is ever written; only GET and HEAD are allowed; tiles
// are immutable (long cache lifetime), checkpoints are not cached. The
// served snapshot is fixed when the handler is made (the newest, or the
// one named), so clients see one consistent tree.
package serve

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/stellaops/tlog/mirror/snapshot"
)

// Handler serves the mirror at root.
type Handler struct {
	root    string
	fsys    fs.FS
	served  *snapshot.Snapshot
	entries []entry
}

type entry struct {
	Date         string   `json:"date"`
	Size         int64    `json:"size"`
	Root         string   `json:"root"`
	Previous     string   `json:"previous,omitempty"`
	PreviousSize int64    `json:"previous_size"`
	Witnesses    []string `json:"witnesses"`
}

// New returns a handler for the mirror at root serving snapshot date
// ("" for the newest).
func New(root, date string) (*Handler, error) {
	fsys := os.DirFS(root)
	dates, err := snapshot.List(fsys)
	if err != nil {
		return nil, err
	}
	if len(dates) == 0 {
		return nil, errors.New("serve: no snapshot in " + root)
	}
	h := &Handler{root: root, fsys: fsys}
	for _, d := range dates {
		s, err := snapshot.Read(fsys, d)
		if err != nil {
			return nil, err
		}
		h.entries = append(h.entries, entry{d, s.Meta.Size, s.Meta.Root, s.Meta.Previous, s.Meta.PreviousSize, s.Meta.Witnesses})
		if d == date || (date == "" && d == dates[len(dates)-1]) {
			h.served = s
		}
	}
	if h.served == nil {
		return nil, errors.New("serve: no snapshot " + date)
	}
	return h, nil
}

// Served is the served snapshot.
func (h *Handler) Served() *snapshot.Snapshot { return h.served }

var (
	tileRE = regexp.MustCompile(`^tile/(\d+|entries)/(x\d{3}/)*\d{3}(\.p/\d{1,3})?$`)
	histRE = regexp.MustCompile(`^snapshots/\d{4}-\d{2}-\d{2}/(checkpoint|consistency)$`)
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, http.StatusMethodNotAllowed, "read-only mirror")
		return
	}
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	switch {
	case p == "checkpoint":
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(h.served.Checkpoint)
	case p == "snapshots":
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.entries)
	case histRE.MatchString(p):
		h.file(w, p, "text/plain; charset=utf-8", "no-cache")
	case tileRE.MatchString(p):
		h.file(w, p, "application/octet-stream", "public, max-age=31536000, immutable")
	default:
		h.fail(w, http.StatusNotFound, "not found")
	}
}

func (h *Handler) file(w http.ResponseWriter, p, ctype, cache string) {
	data, err := fs.ReadFile(h.fsys, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		h.fail(w, http.StatusNotFound, "not found")
		return
	case err != nil:
		h.fail(w, http.StatusInternalServerError, "read error")
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", cache)
	w.Write(data)
}

// fail is the one place errors become HTTP answers.
func (h *Handler) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}
