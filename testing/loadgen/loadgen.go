// Package loadgen drives a Rekor v1 API with concurrent writers or readers
// and reports throughput and latency percentiles. Writers post unique,
// freshly signed hashedrekord entries; a sample of the answers is verified
// with Rekor's own code (inclusion proof, SET, checkpoint signature).
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/testing/entries"
)

// Config of one run.
type Config struct {
	URL         string             // Rekor API base URL
	N           int                // requests
	Concurrency int                // workers
	VerifyEvery int                // verify every k-th answer (0: none)
	Verifier    signature.Verifier // log key, for verification
}

// Result of one run.
type Result struct {
	Mode                string
	N, Concurrency      int
	OK, Errors          int64
	Verified, BadProofs int64
	Elapsed             time.Duration
	Latencies           []time.Duration // sorted
	FirstError          string
}

// Rate is successful requests per second.
func (r Result) Rate() float64 { return float64(r.OK) / r.Elapsed.Seconds() }

// Pct returns the p-quantile latency (0 <= p <= 1).
func (r Result) Pct(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[int(float64(len(r.Latencies)-1)*p)]
}

func (r Result) String() string {
	return fmt.Sprintf("%s n=%d c=%d: %.0f req/s ok=%d errors=%d p50=%v p90=%v p99=%v max=%v verified=%d bad=%d%s",
		r.Mode, r.N, r.Concurrency, r.Rate(), r.OK, r.Errors,
		r.Pct(.5).Round(100*time.Microsecond), r.Pct(.9).Round(100*time.Microsecond),
		r.Pct(.99).Round(100*time.Microsecond), r.Pct(1).Round(100*time.Microsecond),
		r.Verified, r.BadProofs, func() string {
			if r.FirstError != "" {
				return " first_error=" + r.FirstError
			}
			return ""
		}())
}

func client(c int) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: c, MaxIdleConnsPerHost: c, IdleConnTimeout: time.Minute}}
}

// Write posts cfg.N unique hashedrekord entries with cfg.Concurrency workers.
// Entries are signed before the clock starts.
func Write(ctx context.Context, cfg Config) (Result, error) {
	bodies := make([][]byte, cfg.N)
	var wg sync.WaitGroup
	var genErr atomic.Value
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s, err := entries.NewSigner()
			if err != nil {
				genErr.Store(err)
				return
			}
			for i := w; i < cfg.N; i += 4 {
				pe, err := s.HashedRekord([]byte(fmt.Sprintf("loadgen %s artifact %d", run, i)))
				if err == nil {
					bodies[i], err = json.Marshal(pe)
				}
				if err != nil {
					genErr.Store(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if err, _ := genErr.Load().(error); err != nil {
		return Result{}, err
	}
	hc := client(cfg.Concurrency)
	return drive(ctx, "write", cfg, func(i int) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+"/api/v1/log/entries", bytes.NewReader(bodies[i]))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		return do(hc, req)
	}, http.StatusCreated)
}

// Read fetches random entries of the first size entries, alternating by
// index and by UUID (UUIDs are learnt from the index reads).
func Read(ctx context.Context, cfg Config, size int64) (Result, error) {
	if size <= 0 {
		return Result{}, fmt.Errorf("read: the log is empty")
	}
	hc := client(cfg.Concurrency)
	var uuids sync.Map
	return drive(ctx, "read", cfg, func(i int) (int, []byte, error) {
		idx := rand.Int64N(size)
		url := cfg.URL + "/api/v1/log/entries?logIndex=" + strconv.FormatInt(idx, 10)
		if id, ok := uuids.Load(idx); ok && i%2 == 1 {
			url = cfg.URL + "/api/v1/log/entries/" + id.(string)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, nil, err
		}
		code, body, err := do(hc, req)
		if err == nil && code == http.StatusOK {
			var le models.LogEntry
			if json.Unmarshal(body, &le) == nil {
				for id := range le {
					uuids.Store(idx, id)
				}
			}
		}
		return code, body, err
	}, http.StatusOK)
}

func do(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func drive(ctx context.Context, mode string, cfg Config, op func(i int) (int, []byte, error), want int) (Result, error) {
	res := Result{Mode: mode, N: cfg.N, Concurrency: cfg.Concurrency}
	lat := make([]time.Duration, cfg.N)
	okMask := make([]bool, cfg.N)
	var next atomic.Int64
	next.Store(-1)
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i >= cfg.N || ctx.Err() != nil {
					return
				}
				t := time.Now()
				code, body, err := op(i)
				lat[i] = time.Since(t)
				if err == nil && code != want {
					err = fmt.Errorf("status %d: %s", code, bytes.TrimSpace(body))
				}
				if err != nil {
					atomic.AddInt64(&res.Errors, 1)
					firstErr.Do(func() { res.FirstError = err.Error() })
					continue
				}
				okMask[i] = true
				atomic.AddInt64(&res.OK, 1)
				if cfg.VerifyEvery > 0 && i%cfg.VerifyEvery == 0 && cfg.Verifier != nil {
					if verifyAnswer(ctx, body, cfg.Verifier) != nil {
						atomic.AddInt64(&res.BadProofs, 1)
					} else {
						atomic.AddInt64(&res.Verified, 1)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	for i, ok := range okMask {
		if ok {
			res.Latencies = append(res.Latencies, lat[i])
		}
	}
	sort.Slice(res.Latencies, func(i, j int) bool { return res.Latencies[i] < res.Latencies[j] })
	return res, ctx.Err()
}

func verifyAnswer(ctx context.Context, body []byte, v signature.Verifier) error {
	var le models.LogEntry
	if err := json.Unmarshal(body, &le); err != nil {
		return err
	}
	for _, a := range le {
		if err := verify.VerifyLogEntry(ctx, &a, v); err != nil {
			return err
		}
	}
	return nil
}
