package pkcs11

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkSign measures raw token signatures through the session pool
// (pool size = goroutines) and reports sig/s, p50 and p99 in µs.
// go test -run '^$' -bench Sign -benchtime 3s ./signer/pkcs11
func BenchmarkSign(b *testing.B) {
	for _, kt := range []KeyType{ECDSAP256, Ed25519} {
		for _, g := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", kt, g), func(b *testing.B) {
				tok, err := Open(b.Context(), Config{Module: testModule, TokenLabel: testToken, PIN: testPIN, Sessions: g})
				if err != nil {
					b.Fatal(err)
				}
				defer tok.Close()
				label := fmt.Sprintf("bench-%s-%d-%d", kt, g, time.Now().UnixNano())
				s, err := tok.Generate(b.Context(), label, kt)
				if err != nil {
					b.Fatal(err)
				}
				in, opts := make([]byte, 256), crypto.SignerOpts(crypto.Hash(0))
				if kt == ECDSAP256 {
					d := sha256.Sum256(in)
					in, opts = d[:], crypto.SHA256
				}
				lat := make([][]time.Duration, g)
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for i := range g {
					wg.Go(func() {
						for j := i; j < b.N; j += g {
							t0 := time.Now()
							if _, err := s.SignContext(b.Context(), in, opts); err != nil {
								b.Error(err)
								return
							}
							lat[i] = append(lat[i], time.Since(t0))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				if len(all) > 0 {
					b.ReportMetric(float64(len(all))/time.Since(start).Seconds(), "sig/s")
					b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(all[min(len(all)*99/100, len(all)-1)].Microseconds()), "p99-µs")
				}
			})
		}
	}
}
