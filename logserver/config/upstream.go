package config

import (
	"net/url"
	"time"

	"github.com/stellaops/tlog/internal/retry"
)

// Upstream configures upstream replay (package logserver/upstream): every
// entry this logserver logs is also submitted to an upstream
// Rekor-compatible log, the v1 log's entries to a Rekor v1 upstream
// (POST /api/v1/log/entries), the v2 log's to a Rekor v2 upstream
// (POST /api/v2/log/entries). While the upstream is unreachable entries
// wait in the database as transparency_pending (listed at
// GET /api/v1/upstream/entries) and drain, oldest first, when it answers
// again.
type Upstream struct {
	// V1 is the upstream of the Rekor v1 log. Empty: the v1 log is not
	// replayed.
	V1 *UpstreamLog `yaml:"v1"`
	// V2 is the upstream of the Rekor v2 log (needs rekor_v2). Empty: the
	// v2 log is not replayed.
	V2 *UpstreamLog `yaml:"v2"`
	// Timeout bounds one request to the upstream (a Rekor write waits
	// until the entry is integrated). Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// PollInterval is how often the forwarder looks for entries to send
	// when it has nothing in hand (a local write also wakes it at once).
	// Default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Retry is the backoff after the upstream failed to take an entry
	// (unreachable, 429, 5xx); a Retry-After answer is honoured instead
	// when longer. Here max_attempts defaults to -1 (retry for ever: an
	// outage must not turn entries into failures); a positive value marks
	// an entry failed after that many failed attempts.
	Retry retry.Policy `yaml:"retry"`
	// Tenant is the tenant the upstream submissions are charged to in the
	// submission budgets, so the drain after an outage stays within them.
	// Default "upstream".
	Tenant string `yaml:"tenant"`
	// Tier is the budget tier of an upstream submission. Default "graph".
	Tier string `yaml:"tier"`
	// Parallel is how many submissions per log are in flight to the
	// upstream (a Rekor write waits for integration, so a drain at one at
	// a time is slow). Default 4.
	Parallel int `yaml:"parallel"`
	// MaxOutbox caps the entries waiting for the upstream (per log): when
	// it is reached, local writes answer 503 rather than log what could
	// not be replayed. Default 100000.
	MaxOutbox int64 `yaml:"max_outbox"`
	// Grace is how long an outbox row whose local write never answered
	// (the process died in between) waits for its entry to appear in the
	// local log before it is dropped: an entry queued in Trillian is
	// integrated at the next start, well within it. Default 1h.
	Grace time.Duration `yaml:"grace"`
}

// UpstreamLog is one upstream log.
type UpstreamLog struct {
	// URL is the upstream's base URL, e.g. https://rekor.sigstore.dev
	// (v1) or https://log2025-1.rekor.sigstore.dev (v2).
	URL string `yaml:"url"`
	// PublicKeyFile verifies the upstream's answers. v1: its PEM public
	// key (GET /api/v1/log/publicKey), which must verify the signed entry
	// timestamp and the checkpoint of the inclusion proof it returns. v2:
	// a file holding its checkpoint note verifier key (vkey,
	// "<origin>+<hash>+<key>"), which must verify the checkpoint of the
	// inclusion proof it returns.
	PublicKeyFile string `yaml:"public_key_file"`
}

// validate fills the defaults of u and checks it.
func (u *Upstream) validate(c *Config, bad func(string, ...any)) {
	if u.V1 == nil && u.V2 == nil {
		bad("upstream: give v1 or v2 (or both)")
	}
	for _, l := range []struct {
		name string
		log  *UpstreamLog
	}{{"v1", u.V1}, {"v2", u.V2}} {
		if l.log == nil {
			continue
		}
		if p, err := url.Parse(l.log.URL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("upstream.%s.url %q: want http(s)://host[:port][/path]", l.name, l.log.URL)
		}
		if l.log.PublicKeyFile == "" {
			bad("upstream.%s.public_key_file: required (the upstream's answers are verified)", l.name)
		}
	}
	if u.V2 != nil && c.RekorV2 == nil {
		bad("upstream.v2 needs rekor_v2 (the local v2 log it replays)")
	}
	if u.Timeout == 0 {
		u.Timeout = 30 * time.Second
	}
	if u.PollInterval == 0 {
		u.PollInterval = time.Second
	}
	if u.Grace == 0 {
		u.Grace = time.Hour
	}
	if u.Timeout < 0 || u.PollInterval < 0 || u.Grace < 0 {
		bad("upstream.timeout, poll_interval, grace: must be positive")
	}
	if u.Retry.MaxAttempts == 0 {
		u.Retry.MaxAttempts = -1
	}
	if err := u.Retry.Validate(); err != nil {
		bad("upstream.retry: %v", err)
	}
	if u.Tenant == "" {
		u.Tenant = "upstream"
	}
	if u.Tier == "" {
		u.Tier = "graph"
	}
	if u.Parallel == 0 {
		u.Parallel = 4
	}
	if u.Parallel < 1 || u.Parallel > 64 {
		bad("upstream.parallel %d: want 1 to 64", u.Parallel)
	}
	if u.MaxOutbox == 0 {
		u.MaxOutbox = 100000
	}
	if u.MaxOutbox < 0 {
		bad("upstream.max_outbox %d: want at least 1", u.MaxOutbox)
	}
}
