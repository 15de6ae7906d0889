package app

import (
	"encoding/json"
	"net/http"
	"sync"
)

// writeLimit bounds the write requests being read and processed at once,
// by count and by body bytes (Content-Length, or the request cap when it is
// not known): past either, a write gets 503 with Retry-After at once,
// before its body is read, so memory stays bounded however many clients
// write. The write path bounds what it holds after that (sequence.Options).
type writeLimit struct {
	maxRequests int
	maxBytes    int64
	maxBody     int64

	mu       sync.Mutex
	requests int
	bytes    int64
}

// limitedWrites are the paths whose bodies writeLimit bounds: the v1 write
// and the pending queue's submissions (which read a whole entry too).
var limitedWrites = map[string]bool{"/api/v1/log/entries": true, "/api/v1/queue/entries": true, "/api/v2/queue/entries": true}

func (l *writeLimit) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !limitedWrites[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		n := r.ContentLength
		if n < 0 || n > l.maxBody {
			n = l.maxBody // larger bodies get 413 while being read
		}
		l.mu.Lock()
		ok := l.requests < l.maxRequests && (l.bytes == 0 || l.bytes+n <= l.maxBytes)
		if ok {
			l.requests++
			l.bytes += n
		}
		l.mu.Unlock()
		if !ok {
			// Rekor's error body.
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"code": http.StatusServiceUnavailable,
				"message": "the transparency log has too many writes in flight, retry later"})
			return
		}
		defer func() {
			l.mu.Lock()
			l.requests--
			l.bytes -= n
			l.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}
