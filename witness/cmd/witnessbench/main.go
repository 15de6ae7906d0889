// Command witnessbench measures add-checkpoint throughput and latency of a
// witness with durable state: it starts a real witness (bbolt store with
// fsync, HTTP on 127.0.0.1) in-process, registers -logs logs, pre-computes
// their signed checkpoints and consistency proofs, then lets -c clients
// advance the logs -requests times each (a log is advanced by one client
// at a time, as its feeder would), and reports requests/s, latency
// percentiles, every answer that was not 200 by status, and the CPU time
// per request of the process and of its child processes.
//
// The witness cosigns with an Ed25519 key in the process, or, with
// -signer-url, through a running signer service (as `make run` deploys it):
//
//	witnessbench -logs 50 -c 32 -requests 200
//	witnessbench -logs 50 -c 32 -signer-url $SIGNER_URL -signer-token-file .run/secrets/witness-signer-token \
//	    -signer-key witness -name stella.local/witness
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/witness/api"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/store"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// options of one run.
type options struct {
	Logs     int            // logs
	Clients  int            // concurrent clients (0: one per log)
	Requests int            // requests per log
	Step     int            // leaves added between checkpoints
	Rekor    bool           // ECDSA Rekor-style logs instead of Ed25519
	Dir      string         // directory for the database
	Cosigner cosig.Cosigner // nil: a fresh Ed25519 key in the process
}

// result of one run.
type result struct {
	Requests      int
	Errors        int         // answers that were not 200, and transport errors
	Statuses      map[int]int // answers that were not 200, by status (0: transport error)
	Elapsed       time.Duration
	P50, P99, Max time.Duration
	// CPU is the CPU time this process (client, witness and, in tests, the
	// signer and its PKCS#11 module) used during the run; ChildCPU that of
	// its child processes (a test's MariaDB). Zero without /proc.
	CPU, ChildCPU time.Duration
}

func (r result) String() string {
	s := fmt.Sprintf("%d requests (%d not 200) in %v: %.0f req/s, p50 %v, p99 %v, max %v",
		r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), float64(r.Requests)/r.Elapsed.Seconds(),
		r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond))
	for _, code := range slices.Sorted(maps.Keys(r.Statuses)) {
		s += fmt.Sprintf("; status %d: %d", code, r.Statuses[code])
	}
	if r.CPU > 0 {
		per := func(d time.Duration) time.Duration { return (d / time.Duration(r.Requests)).Round(time.Microsecond) }
		s += fmt.Sprintf("; CPU per request: this process %v, child processes %v (%.2f cores busy)",
			per(r.CPU), per(r.ChildCPU), (r.CPU+r.ChildCPU).Seconds()/r.Elapsed.Seconds())
	}
	return s
}

func main() {
	var o options
	var signerURL, tokenFile, key, name string
	var maxInFlight int
	flag.IntVar(&o.Logs, "logs", 8, "number of logs")
	flag.IntVar(&o.Clients, "c", 0, "concurrent clients (default: one per log)")
	flag.IntVar(&o.Requests, "requests", 250, "add-checkpoint requests per log")
	flag.IntVar(&o.Step, "step", 3, "leaves appended between consecutive checkpoints")
	flag.BoolVar(&o.Rekor, "rekor", false, "use Rekor-style ECDSA logs")
	flag.StringVar(&o.Dir, "dir", "", "directory for the state database (default: a temporary directory)")
	flag.StringVar(&signerURL, "signer-url", "", "cosign through the signer service at this URL")
	flag.StringVar(&tokenFile, "signer-token-file", "", "bearer token file of the witness tenant (with -signer-url)")
	flag.StringVar(&key, "signer-key", "witness", "the signer's cosignature key (with -signer-url)")
	flag.StringVar(&name, "name", "stella.local/witness", "the witness's cosigner name, the key's note name (with -signer-url)")
	flag.IntVar(&maxInFlight, "signer-max-in-flight", 8, "cosigning calls in flight at once (with -signer-url; the witness's signer.max_in_flight)")
	flag.Parse()
	ctx := context.Background()
	if signerURL != "" {
		c, err := client.Open(ctx, client.Config{URL: signerURL, TokenFile: tokenFile, Key: key, Timeout: 5 * time.Second}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "witnessbench:", err)
			os.Exit(1)
		}
		if o.Cosigner, err = cosig.NewRemote(ctx, c, key, name, 5*time.Second, maxInFlight); err != nil {
			fmt.Fprintln(os.Stderr, "witnessbench:", err)
			os.Exit(1)
		}
	}
	r, err := bench(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "witnessbench:", err)
		os.Exit(1)
	}
	fmt.Println(r)
}

func bench(ctx context.Context, o options) (result, error) {
	if o.Logs < 1 || o.Requests < 1 || o.Step < 1 || o.Clients < 0 {
		return result{}, fmt.Errorf("logs, requests and step must be positive")
	}
	if o.Clients == 0 {
		o.Clients = o.Logs
	}
	dir, err := os.MkdirTemp(o.Dir, "witnessbench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir+"/witness.db", store.Options{})
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	signer := o.Cosigner
	if signer == nil {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		if signer, err = cosig.NewSigner("bench.example/w", key); err != nil {
			return result{}, err
		}
	}

	// Logs and their pre-signed requests, so the timed part is the witness.
	bodies := make([][][]byte, o.Logs)
	for i := range bodies {
		var l *testlog.Log
		if o.Rekor {
			l, err = testlog.NewRekor(fmt.Sprintf("rekor%d.example.com", i), int64(1000+i))
		} else {
			l, err = testlog.NewEd25519(fmt.Sprintf("example.com/bench/%d", i))
		}
		if err != nil {
			return result{}, err
		}
		if err := st.AddLog(store.Log{Origin: l.Origin, VerifierKeys: []string{l.VKey}, Source: store.SourceAdmin}); err != nil {
			return result{}, err
		}
		l.Append(o.Requests * o.Step)
		for r := 0; r < o.Requests; r++ {
			old, n := int64(r*o.Step), int64((r+1)*o.Step)
			bodies[i] = append(bodies[i], l.Request(old, n))
		}
	}

	w := tlogwitness.New(st, signer, tlogwitness.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h := api.New(api.Config{Witness: w, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Shutdown(ctx)
	url := "http://" + ln.Addr().String() + "/add-checkpoint"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Clients}}

	// Logs wait in ready until a client takes one, sends its next request
	// and puts it back: each log advances in order, o.Clients at a time.
	ready := make(chan int, o.Logs)
	next := make([]int, o.Logs)
	for i := range o.Logs {
		ready <- i
	}
	var mu sync.Mutex
	var all []time.Duration
	statuses := map[int]int{}
	var wg sync.WaitGroup
	var left sync.WaitGroup
	left.Add(o.Logs * o.Requests)
	go func() { left.Wait(); close(ready) }()
	cpu0, child0 := cpuTimes()
	start := time.Now()
	for range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			bad := map[int]int{}
			for i := range ready {
				b := bodies[i][next[i]]
				next[i]++
				t0 := time.Now()
				code := 0
				if resp, err := hc.Post(url, "text/plain", strings.NewReader(string(b))); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				lat = append(lat, time.Since(t0))
				if code != http.StatusOK {
					bad[code]++
				}
				if next[i] < len(bodies[i]) {
					ready <- i
				}
				left.Done()
			}
			mu.Lock()
			all = append(all, lat...)
			for c, n := range bad {
				statuses[c] += n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := result{Elapsed: time.Since(start), Requests: o.Logs * o.Requests, Statuses: statuses}
	cpu1, child1 := cpuTimes()
	r.CPU, r.ChildCPU = cpu1-cpu0, child1-child0
	for _, n := range statuses {
		r.Errors += n
	}
	if len(all) == 0 {
		return r, fmt.Errorf("no request completed")
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	r.P50, r.P99, r.Max = pct(0.50), pct(0.99), all[len(all)-1]
	return r, nil
}
