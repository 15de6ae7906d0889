package tlogtiles_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkReads measures tile and entry-bundle reads over HTTP against a
// real logserver and MariaDB (go test -bench Reads -run ^$): full tiles and
// bundles come from MySQL, partial tiles from memory, partial bundles from
// the stored entries.
func BenchmarkReads(b *testing.B) {
	e := newTilesEnv(b, "/")
	e.add(b, 600)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, path := range []string{"/tile/0/001", "/tile/0/002.p/88", "/tile/entries/001", "/tile/entries/002.p/88", "/checkpoint"} {
		b.Run(path, func(b *testing.B) {
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(e.ls.URL + path)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("%s: %d", path, resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
