package witnessing

import (
	"io"
	"net/http"
	"strconv"
)

// Handler serves GET (and HEAD) /checkpoint: the latest published C2SP
// checkpoint as text/plain; charset=utf-8, with Cache-Control: no-cache
// (c2sp.org/tlog-tiles asks for no long caching). Before the first
// publication it answers 503 with Retry-After.
func (f *Feeder) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		cp := f.Latest()
		if cp == nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "no checkpoint published yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Length", strconv.Itoa(len(cp.Note)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			io.WriteString(w, string(cp.Note))
		}
	})
}
