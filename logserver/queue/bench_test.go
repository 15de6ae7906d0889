package queue_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/config"
)

// BenchmarkDrain measures the drain rate of one logserver (in-process
// submission, the default sequencer interval of 50ms): 500 rows queued
// while no drainer runs, then drained by queue.workers workers.
//
//	go test -tags batched_queue -run '^$' -bench Drain -benchtime 1x ./logserver/queue
func BenchmarkDrain(b *testing.B) {
	const n = 500
	for _, workers := range []int{8, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for range b.N {
				e := newEnv(b, func(c *config.Config) {
					c.Queue.Drain = boolp(false)
					c.Sequencer.Interval = 50 * time.Millisecond
				})
				for i := range n {
					e.enqueue(b, "v1", e.v1Body(b, fmt.Sprintf("bench %d", i)), nil)
				}
				e.ls.Config.Queue.Drain = boolp(true)
				e.ls.Config.Queue.Workers = workers
				b.ResetTimer()
				e.ls.Restart()
				// From the first row logged (the server is up) to the last.
				logged := func() int { return e.count(b, "SELECT COUNT(*) FROM queue_entries WHERE state = 'logged'") }
				c0 := logged()
				for ; c0 == 0; c0 = logged() {
					time.Sleep(time.Millisecond)
				}
				start := time.Now()
				for logged() < n {
					time.Sleep(5 * time.Millisecond)
				}
				el := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(n-c0)/el.Seconds(), "entries/s")
			}
		})
	}
}

// BenchmarkDirectWrite is the comparison for BenchmarkDrain: the same 500
// entries written by 32 concurrent clients to POST /api/v1/log/entries.
func BenchmarkDirectWrite(b *testing.B) {
	const n, clients = 500, 32
	for range b.N {
		b.StopTimer()
		e := newEnv(b, func(c *config.Config) { c.Sequencer.Interval = 50 * time.Millisecond })
		bodies := make(chan []byte, n)
		for i := range n {
			bodies <- e.v1Body(b, fmt.Sprintf("direct %d", i))
		}
		close(bodies)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for body := range bodies {
					if a := do(b, "POST", e.ls.URL+"/api/v1/log/entries", body, nil); a.code != http.StatusCreated {
						b.Errorf("write: %d %s", a.code, a.body)
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
	}
}
