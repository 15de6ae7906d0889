package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/stellaops/tlog/signer/pkcs11"
)

type benchResult struct {
	count         int
	rate          float64 // signatures per second of wall time
	p50, p99, max time.Duration
}

// bench signs with s from g goroutines, each for d or n times (n > 0), and
// measures every signature from call to return, pool wait included.
func bench(ctx context.Context, s *pkcs11.Signer, g int, d time.Duration, n, msgSize int) (benchResult, error) {
	in, opts := make([]byte, msgSize), crypto.SignerOpts(crypto.Hash(0))
	if s.KeyType() == pkcs11.ECDSAP256 {
		sum := sha256.Sum256(in)
		in, opts = sum[:], crypto.SHA256
	}
	lat := make([][]time.Duration, g)
	errs := make([]error, g)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range g {
		wg.Go(func() {
			more := func(done int) bool { return done < n || n <= 0 && time.Now().Before(deadline) }
			for j := 0; more(j); j++ {
				t0 := time.Now()
				if _, err := s.SignContext(ctx, in, opts); err != nil {
					errs[i] = err
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return benchResult{}, err
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := benchResult{count: len(all)}
	if len(all) == 0 {
		return r, nil
	}
	r.rate = float64(len(all)) / wall.Seconds()
	r.p50 = all[len(all)*50/100]
	r.p99 = all[min(len(all)*99/100, len(all)-1)]
	r.max = all[len(all)-1]
	return r, nil
}
