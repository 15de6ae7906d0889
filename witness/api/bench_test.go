package api_test

import (
	"bytes"
	"net/http"
	"testing"
)

// BenchmarkAddCheckpoint measures one client advancing one log over real
// HTTP with durable (fsynced) state; each op is one cosigned request.
func BenchmarkAddCheckpoint(b *testing.B) {
	for _, kind := range []string{"ed25519", "rekor"} {
		b.Run(kind, func(b *testing.B) {
			l := mustLog(b, kind)
			h := newHarness(b, nil, l)
			l.Append(2 * b.N)
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = l.Request(int64(2*i), int64(2*i+2))
			}
			client := &http.Client{}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := client.Post(h.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(bodies[i]))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("request %d: %d", i, resp.StatusCode)
				}
			}
		})
	}
}
