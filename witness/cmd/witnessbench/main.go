// Command witnessbench measures add-checkpoint throughput and latency of a
// witness with durable state: it starts a real witness (bbolt store with
// fsync, HTTP on 127.0.0.1) in-process, registers -logs logs, pre-computes
// their signed checkpoints and consistency proofs, then lets one client per
// log advance its log -requests times, and reports requests/s and latency
// percentiles.
//
//	witnessbench -logs 8 -requests 250 -step 3 -dir /var/tmp
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stellaops/tlog/witness/api"
	"github.com/stellaops/tlog/witness/cosig"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/store"
	"github.com/stellaops/tlog/witness/tlogwitness"
)

// options of one run.
type options struct {
	Logs     int    // concurrent logs, one client each
	Requests int    // requests per log
	Step     int    // leaves added between checkpoints
	Rekor    bool   // ECDSA Rekor-style logs instead of Ed25519
	Dir      string // directory for the database
}

// result of one run.
type result struct {
	Requests      int
	Errors        int
	Elapsed       time.Duration
	P50, P99, Max time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("%d requests (%d not 200) in %v: %.0f req/s, p50 %v, p99 %v, max %v",
		r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), float64(r.Requests)/r.Elapsed.Seconds(),
		r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond))
}

func main() {
	var o options
	flag.IntVar(&o.Logs, "logs", 8, "number of logs (one concurrent client each)")
	flag.IntVar(&o.Requests, "requests", 250, "add-checkpoint requests per log")
	flag.IntVar(&o.Step, "step", 3, "leaves appended between consecutive checkpoints")
	flag.BoolVar(&o.Rekor, "rekor", false, "use Rekor-style ECDSA logs")
	flag.StringVar(&o.Dir, "dir", "", "directory for the state database (default: a temporary directory)")
	flag.Parse()
	r, err := bench(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "witnessbench:", err)
		os.Exit(1)
	}
	fmt.Println(r)
}

func bench(ctx context.Context, o options) (result, error) {
	if o.Logs < 1 || o.Requests < 1 || o.Step < 1 {
		return result{}, fmt.Errorf("logs, requests and step must be positive")
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
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := cosig.NewSigner("bench.example/w", key)
	if err != nil {
		return result{}, err
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
	h := api.New(api.Config{Witness: w})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Shutdown(ctx)
	url := "http://" + ln.Addr().String() + "/add-checkpoint"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Logs}}

	lat := make([][]time.Duration, o.Logs)
	errs := make([]int, o.Logs)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range bodies[i] {
				t0 := time.Now()
				resp, err := client.Post(url, "text/plain", strings.NewReader(string(b)))
				if err != nil {
					errs[i]++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = append(lat[i], time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					errs[i]++
				}
			}
		}()
	}
	wg.Wait()
	r := result{Elapsed: time.Since(start)}
	var all []time.Duration
	for i := range lat {
		all = append(all, lat[i]...)
		r.Errors += errs[i]
	}
	r.Requests = o.Logs * o.Requests
	if len(all) == 0 {
		return r, fmt.Errorf("no request completed")
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	r.P50, r.P99, r.Max = pct(0.50), pct(0.99), all[len(all)-1]
	return r, nil
}
