package server_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	softhsmtest "github.com/stellaops/tlog/testing/softhsm"
)

// rawRate is the raw token rate measured by the first sub-benchmark; the
// others report their rate as a percentage of it.
var rawRate float64

// BenchmarkThroughput compares, on the same SoftHSM2 token and key type
// (ECDSA P-256, token key) and the same session pool size:
//
//   - raw: PKCS#11 signatures through the pool, one goroutine per session;
//   - digests: POST /sign/digests with batches of 1000 (the logserver's
//     SET signing), audit row committed per call;
//   - dsse: POST /sign/dsse, one statement per request, 8 and 32
//     concurrent clients, audit row committed per request (group commit;
//     rows/INSERT is the mean batch);
//   - dsse-stella: the same with a Stella payload type (schema validation
//     and RFC 8785 canonicalisation on).
//
// Each reports signatures/s, p50/p99 latency (per signature for raw, per
// HTTP call otherwise) and, for the service, its rate as % of raw.
//
//	go test -run '^$' -bench Throughput -benchtime 3s ./signer/server
func BenchmarkThroughput(b *testing.B) {
	const sessions = 2
	cfg := baseConfig(time.Now())
	cfg.Token.Sessions = sessions
	if n, err := strconv.Atoi(os.Getenv("BENCH_COMMITTERS")); err == nil {
		cfg.Audit.Committers = n
	}
	e := newEnv(b, cfg, server.Options{})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	c := client.New(e.url, tokBench, hc)

	b.Run("raw-pkcs11", func(b *testing.B) {
		tok, err := pkcs11.Open(b.Context(), pkcs11.Config{Module: hsmModule, TokenLabel: tokenLabel, PIN: softhsmtest.PIN, Sessions: sessions})
		if err != nil {
			b.Fatal(err)
		}
		defer tok.Close()
		s, err := tok.Signer(b.Context(), "bench-ecdsa")
		if err != nil {
			b.Fatal(err)
		}
		d := sha256.Sum256([]byte("bench"))
		lat := make([][]time.Duration, sessions)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for g := range sessions {
			wg.Go(func() {
				for i := g; i < b.N; i += sessions {
					t0 := time.Now()
					if _, err := s.SignContext(b.Context(), d[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
					lat[g] = append(lat[g], time.Since(t0))
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		rawRate = float64(b.N) / el.Seconds()
		report(b, rawRate, slices.Concat(lat...), false)
	})

	b.Run("http-digests-batch1000", func(b *testing.B) {
		ds, err := c.NewDigestSigner(b.Context(), "bench-log")
		if err != nil {
			b.Fatal(err)
		}
		digests := make([][32]byte, 1000)
		for i := range digests {
			digests[i] = sha256.Sum256(fmt.Appendf(nil, "%d", i))
		}
		var lat []time.Duration
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			t0 := time.Now()
			sigs, err := ds.SignDigests(b.Context(), digests)
			if err != nil || len(sigs) != len(digests) {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		el := time.Since(start)
		b.StopTimer()
		report(b, float64(b.N*len(digests))/el.Seconds(), lat, true)
	})

	// dsse: an SPDX statement (signed as sent); dsse-stella: the
	// promotion fixture, a Stella payload type (JSON Schema validation and
	// RFC 8785 canonicalisation before signing).
	for _, tc := range []struct{ name, st string }{
		{"dsse", statement("https://spdx.dev/Document", "")},
		{"dsse-stella", stellaFixture(b, "promotion")},
	} {
		for _, clients := range []int{8, 32} {
			benchDSSE(b, c, e.url, fmt.Sprintf("http-%s-%dclients", tc.name, clients), tc.st, clients)
		}
	}
}

func benchDSSE(b *testing.B, c *client.Client, url, name, statement string, clients int) {
	b.Run(name, func(b *testing.B) {
		st := json.RawMessage(statement)
		lat := make([][]time.Duration, clients)
		var next atomic.Int64
		rows0, inserts0 := auditBatches(b, url)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for g := range clients {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					t0 := time.Now()
					if _, err := c.SignDSSE(context.Background(), api.DSSERequest{Key: "bench-attest", Statement: st}); err != nil {
						b.Error(err)
						return
					}
					lat[g] = append(lat[g], time.Since(t0))
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		report(b, float64(b.N)/el.Seconds(), slices.Concat(lat...), true)
		rows1, inserts1 := auditBatches(b, url)
		b.ReportMetric((rows1-rows0)/(inserts1-inserts0), "rows/INSERT")
	})
}

// auditBatches reads the audit rows and INSERTs so far from the service's
// metrics (signer_audit_batch_rows).
func auditBatches(b *testing.B, url string) (rows, inserts float64) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "signer_audit_batch_rows_sum "); ok {
			rows, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
		if v, ok := strings.CutPrefix(line, "signer_audit_batch_rows_count "); ok {
			inserts, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return rows, inserts
}

func report(b *testing.B, rate float64, lat []time.Duration, vsRaw bool) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p50 := lat[len(lat)/2]
	p99 := lat[min(len(lat)*99/100, len(lat)-1)]
	b.ReportMetric(rate, "sig/s")
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
	if vsRaw && rawRate > 0 {
		b.ReportMetric(100*rate/rawRate, "%-of-raw")
	}
}
