package config

import (
	"time"

	"github.com/stellaops/tlog/internal/retry"
)

// Queue configures the durable pending queue (package logserver/queue):
// POST /api/v1/queue/entries and /api/v2/queue/entries answer 202 with an
// id and status transparency_pending, GET /api/v1/queue/entries/{id} the
// row's status or the logged entry; a drainer in every replica logs queued
// entries as budget allows, highest priority then oldest first. The rows
// are in the logserver's database, shared by its replicas. Admin commands:
// `logserver queue list|drain|cancel -config <this file>`.
type Queue struct {
	// Disabled turns the queue's API and drainer off (the seed's
	// queueEnabled: false). Rows already queued stay in the database.
	Disabled bool `yaml:"disabled"`
	// MaxSize is the most pending rows (all replicas together); past it a
	// submission to the queue gets 503 with Retry-After and nothing is
	// stored (the seed's maxQueueSize). Default 10000.
	MaxSize int `yaml:"max_size"`
	// MaxBodyBytes caps a queued request body (413 beyond); at most
	// api.max_request_bytes and 16 MiB - 1 (the column). Default the
	// smaller of api.max_request_bytes and sequencer.max_entry_bytes
	// (covered by the database's max_allowed_packet check).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Drain runs this replica's drainer. Default true; false: the replica
	// only accepts and answers (others drain).
	Drain *bool `yaml:"drain"`
	// Workers is how many queued entries this replica submits at once.
	// Default 8.
	Workers int `yaml:"workers"`
	// Poll is how often an idle drainer looks for due rows (an enqueue on
	// the same replica wakes it at once; `logserver queue drain` is seen
	// within Poll). Default 1s.
	Poll time.Duration `yaml:"poll"`
	// Lease is how long a drainer's claim on a row lasts; a crashed
	// replica's rows are taken over once it passes. More than
	// api.write_timeout + 10s. Default api.write_timeout + 30s.
	Lease time.Duration `yaml:"lease"`
	// Retry is the backoff of failed submissions (the seed's retry
	// block): after max_attempts failures a row is marked failed and kept
	// (`logserver queue drain -failed` puts failed rows back). A 4xx answer
	// other than 409 and 429 fails the row at once; a budget refusal or a
	// 429 waits its Retry-After without counting an attempt.
	Retry retry.Policy `yaml:"retry"`
	// DefaultTenant owns queued submissions of requests that carry no
	// tenant. Default "default".
	DefaultTenant string `yaml:"default_tenant"`
}

// Draining reports whether this replica runs the drainer.
func (q *Queue) Draining() bool { return q.Drain == nil || *q.Drain }

func (q *Queue) validate(c *Config, bad func(string, ...any)) {
	if q.MaxSize == 0 {
		q.MaxSize = 10000
	}
	if q.MaxSize < 1 {
		bad("queue.max_size %d: want at least 1", q.MaxSize)
	}
	if q.MaxBodyBytes == 0 {
		q.MaxBodyBytes = min(c.API.MaxRequestBytes, int64(c.Sequencer.MaxEntryBytes))
	}
	if q.MaxBodyBytes < 1024 || q.MaxBodyBytes > c.API.MaxRequestBytes || q.MaxBodyBytes > 1<<24-1 {
		bad("queue.max_body_bytes %d: want 1024..min(api.max_request_bytes, 16777215)", q.MaxBodyBytes)
	}
	if q.Workers == 0 {
		q.Workers = 8
	}
	if q.Workers < 1 || q.Workers > 256 {
		bad("queue.workers %d: want 1..256", q.Workers)
	}
	if q.Poll == 0 {
		q.Poll = time.Second
	}
	if q.Poll < 10*time.Millisecond || q.Poll > time.Minute {
		bad("queue.poll %v: want 10ms..1m", q.Poll)
	}
	if q.Lease == 0 {
		q.Lease = c.API.WriteTimeout + 30*time.Second
	}
	if q.Lease <= c.API.WriteTimeout+10*time.Second {
		bad("queue.lease %v: want more than api.write_timeout + 10s (%v)", q.Lease, c.API.WriteTimeout+10*time.Second)
	}
	if err := q.Retry.Validate(); err != nil {
		bad("queue.retry: %v", err)
	}
	if q.DefaultTenant == "" {
		q.DefaultTenant = "default"
	}
}
