package main

import (
	"context"
	"flag"
	"testing"

	"github.com/stellaops/tlog/witness/internal/testsigner"
)

var (
	throughSigner = flag.Bool("through-signer", false, "run TestThroughSigner: the load run through a real signer service (SoftHSM2, durable MariaDB)")
	signerDurable = flag.Bool("signer-durable", true, "with -through-signer: the signer's audit MariaDB commits durably (as make run's)")
	signerFlight  = flag.Int("signer-max-in-flight", 8, "with -through-signer: the witness's signer.max_in_flight")
	signerHSM     = flag.Int("signer-sessions", 4, "with -through-signer: the signer's PKCS#11 sessions")
)

// TestBenchSmall runs the load tool on a few requests: every request must be
// cosigned (the tool advances each log with valid proofs).
func TestBenchSmall(t *testing.T) {
	for _, rekor := range []bool{false, true} {
		r, err := bench(context.Background(), options{Logs: 3, Clients: 2, Requests: 5, Step: 2, Rekor: rekor, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests != 15 || r.Errors != 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Fatalf("result %+v", r)
		}
		t.Log(r)
	}
}

// TestThroughSigner is the load figure of issue 13: c=32 over 50 logs, the
// witness cosigning through a real signer service whose key is in a
// SoftHSM2 token and whose audit trail is in a durable MariaDB. Slow, so
// only with -through-signer:
//
//	go test -tags batched_queue -run TestThroughSigner -through-signer -v ./witness/cmd/witnessbench
func TestThroughSigner(t *testing.T) {
	if !*throughSigner {
		t.Skip("needs -through-signer")
	}
	sg := testsigner.Start(t, testsigner.Options{Durable: *signerDurable, Sessions: *signerHSM, MaxInFlight: *signerFlight})
	// Baseline: the same run with the key in the process.
	base, err := bench(context.Background(), options{Logs: 50, Clients: 32, Requests: 200, Step: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("logs 50, c 32, key in the process: %v", base)
	for _, o := range []options{
		{Logs: 50, Clients: 32, Requests: 20, Step: 3}, // warm-up
		{Logs: 50, Clients: 32, Requests: 200, Step: 3},
	} {
		o.Dir, o.Cosigner = t.TempDir(), sg.Remote(t)
		r, err := bench(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("logs %d, c %d, through the signer (max in flight %d, %d HSM sessions, durable audit %v): %v (signer audit rows so far %d)", o.Logs, o.Clients, *signerFlight, *signerHSM, *signerDurable, r, sg.AuditRows(t))
		t.Logf("signer, cumulative: %s", sg.Breakdown(t))
		if r.Errors != 0 {
			t.Errorf("%d requests not cosigned: %v", r.Errors, r.Statuses)
		}
	}
}
