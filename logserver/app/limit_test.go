package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWriteLimit: past the count or the byte bound, a submission gets 503
// with Retry-After before its body is read; reads are never limited.
func TestWriteLimit(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	h := (&writeLimit{maxRequests: 2, maxBytes: 1000, maxBody: 600}).wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			entered <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusCreated)
	}))
	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/log/entries", strings.NewReader(body)))
		return w
	}
	done := make(chan int, 2)
	go func() { done <- post(strings.Repeat("x", 500)).Code }()
	<-entered
	// 500 + 600 bytes > 1000: refused although one request slot is free.
	if w := post(strings.Repeat("x", 600)); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the byte bound: %d %q", w.Code, w.Header().Get("Retry-After"))
	}
	go func() { done <- post("small").Code }()
	<-entered
	if w := post("x"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("over the request bound: %d", w.Code)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/log", nil))
	if w.Code != http.StatusCreated {
		t.Fatalf("a read was limited: %d", w.Code)
	}
	close(release)
	<-done
	<-done
	go func() { <-entered }()
	if w := post("after"); w.Code != http.StatusCreated {
		t.Fatalf("after the others finished: %d", w.Code)
	}
}
