package export

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config is one export job: what to mirror, where to, and with what trust.
// The comments are the operator manual; Validate checks it at start-up.
type Config struct {
	// Source is the log's URL. For Kind "tiles", the tlog-tiles prefix
	// (<Source>/checkpoint, <Source>/tile/...). For Kind "rekor-v1", the
	// Rekor API base URL (<Source>/api/v1/log). http or https.
	Source string
	// Kind is "tiles" (any tlog-tiles log: tessera, rekor-tiles, ours) or
	// "rekor-v1" (a Rekor v1 API log without tiles: entries are read by
	// index, the tree is rebuilt and checked against the signed tree head).
	// Default "tiles".
	Kind string
	// Dir is the mirror directory (created). Required.
	Dir string
	// PolicyFile is a c2sp.org/tlog-policy file: the log's vkey (Ed25519
	// note key, or for a Rekor v1 log its ECDSA key as a 0x02 vkey; see
	// `mirror vkey`), the witnesses' vkeys and the quorum. Required.
	PolicyFile string
	// CheckpointURL, for Kind "rekor-v1", is a C2SP checkpoint of the same
	// tree published beside the Rekor API (our logserver: <Source>/checkpoint,
	// cosigned by its witnesses). The snapshot is then taken at that
	// checkpoint, whose log signature and witness quorum are verified; the
	// Rekor signed tree head must verify too (list both log keys in the
	// policy) and be the same tree or a consistent extension of it.
	CheckpointURL string
	// PendingURL is our logserver's upstream replay list
	// (<logserver>/api/v1/upstream/entries, optionally with log=v1 or
	// log=v2). Each snapshot then keeps, as pending.json, the entries the
	// log had not yet replayed to its upstream (transparency_pending), so
	// an offline kit lists them; a failure to fetch it fails the export.
	// Empty: no pending list.
	PendingURL string
	// Origin pins the checkpoint origin. Empty: the log key's name, or
	// "<key name> - <tree ID>" (Rekor v1); the first snapshot's origin is
	// then pinned by the chain.
	Origin string
	// Every runs the export as a daemon, once now and then every interval
	// (e.g. 24h). Zero: run once.
	Every time.Duration
	// MetricsListen serves Prometheus /metrics in daemon mode (e.g.
	// 127.0.0.1:9464). Empty: no metrics server.
	MetricsListen string
	// Workers is the number of parallel downloads. Default 8.
	Workers int
	// Timeout bounds one HTTP request. Default 30s.
	Timeout time.Duration
	// Retries is how often a failed request is retried (with backoff)
	// before the export fails. Default 3.
	Retries int
}

// Kinds of source.
const (
	KindTiles   = "tiles"
	KindRekorV1 = "rekor-v1"
)

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Kind == "" {
		c.Kind = KindTiles
	}
	if c.Kind != KindTiles && c.Kind != KindRekorV1 {
		errs = append(errs, fmt.Errorf("kind %q: want %q or %q", c.Kind, KindTiles, KindRekorV1))
	}
	if u, err := url.Parse(c.Source); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("source %q: want an http(s) URL", c.Source))
	}
	c.Source = strings.TrimRight(c.Source, "/")
	if c.CheckpointURL != "" && c.Kind != KindRekorV1 {
		errs = append(errs, errors.New("checkpoint-url: only for kind rekor-v1"))
	}
	if c.PendingURL != "" {
		if u, err := url.Parse(c.PendingURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("pending-url %q: want an http(s) URL", c.PendingURL))
		}
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: required"))
	}
	if c.PolicyFile == "" {
		errs = append(errs, errors.New("policy: required (a c2sp.org/tlog-policy file)"))
	}
	if c.Every < 0 {
		errs = append(errs, errors.New("every: must not be negative"))
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Workers < 1 || c.Workers > 256 {
		errs = append(errs, fmt.Errorf("workers %d: want 1..256", c.Workers))
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 3
	}
	return errors.Join(errs...)
}
