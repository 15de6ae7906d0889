package main

import (
	"context"
	"testing"
)

// TestBenchSmall runs the load tool on a few requests: every request must be
// cosigned (the tool advances each log with valid proofs).
func TestBenchSmall(t *testing.T) {
	for _, rekor := range []bool{false, true} {
		r, err := bench(context.Background(), options{Logs: 3, Requests: 5, Step: 2, Rekor: rekor, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests != 15 || r.Errors != 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Fatalf("result %+v", r)
		}
		t.Log(r)
	}
}
