package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/stellaops/tlog/internal/service"
)

// Config names a key held by the signer service, as the services that use
// one configure it (the logserver's log, Rekor v2 and TUF keys, the
// witness's cosigning key). [Open] makes the client.
type Config struct {
	// URL is the signer's base URL, e.g. https://signer:8090.
	URL string `yaml:"url"`
	// TokenFile holds the caller's bearer token (surrounding whitespace
	// ignored; keep it mode 0600): the logserver's needs scope
	// sign:digests (log and TUF keys) and sign:checkpoint (Rekor v2), the
	// witness's sign:cosignature.
	TokenFile string `yaml:"token_file"`
	// Key is the key's name in the signer's configuration. Its newest
	// active version signs; the public key is read from the signer at
	// start-up.
	Key string `yaml:"key"`
	// Timeout bounds one signing call. Default 10s (the witness: 5s, the
	// wait for a free call slot included).
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultTimeout is Config.Timeout's default.
const DefaultTimeout = 10 * time.Second

// Check fills Timeout (def if zero; DefaultTimeout if def is zero too)
// and reports what is missing or wrong, each problem prefixed by name
// (the field's YAML path, e.g. "key.signer").
func (c *Config) Check(name string, def time.Duration) error {
	var errs []error
	if c.URL == "" || c.TokenFile == "" || c.Key == "" {
		errs = append(errs, fmt.Errorf("%s: url, token_file and key are required", name))
	}
	if c.URL != "" {
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.url %q: want http(s)://host[:port]", name, c.URL))
		}
	}
	if c.Timeout == 0 {
		c.Timeout = def
		if def == 0 {
			c.Timeout = DefaultTimeout
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout %v: must be positive", name, c.Timeout))
	}
	return errors.Join(errs...)
}

// NewHTTPClient returns the HTTP client of a service calling the signer:
// keep-alive connections for up to maxConns requests in flight (Go's
// default keeps 2 idle connections per host, so under load most requests
// would open a new connection), each call bounded by timeout.
func NewHTTPClient(timeout time.Duration, maxConns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxConns
	tr.MaxIdleConns = maxConns
	return &http.Client{Timeout: timeout, Transport: tr}
}

// MaxConns is the keep-alive connections a client made by [Open] keeps.
const MaxConns = 256

// waitEvery is how often [Open] asks a starting signer again.
var waitEvery = time.Second

// Open reads c.TokenFile (with [service.ReadSecret]), builds a client with
// [NewHTTPClient] and waits for the signer to list c.Key with an active,
// available version, so that a service can start before its signer (make
// run, compose). The rule, the same for every caller:
//
//   - unreachable, a 5xx answer, or the key listed without an active,
//     available version (the token is still opening or reconnecting):
//     ask again every second, logging now and then, until ctx ends;
//   - a 4xx answer or a signer without the key at all: fail at once
//     (a configuration fault that waiting cannot fix).
//
// What the key must be (algorithm, note name, purpose) is checked by the
// caller with the client returned.
func Open(ctx context.Context, c Config, logger *slog.Logger) (*Client, error) {
	tok, err := service.ReadSecret(c.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token_file: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	cl := New(c.URL, tok, NewHTTPClient(c.Timeout, MaxConns))
	for attempt := 0; ; attempt++ {
		err := cl.keyAvailable(ctx, c.Key)
		var ce *Error
		switch {
		case err == nil:
			return cl, nil
		case errors.Is(err, errNoKey), errors.As(err, &ce) && ce.Status < 500:
			return nil, fmt.Errorf("key %q from signer %s: %w", c.Key, c.URL, err)
		}
		if attempt%10 == 0 {
			logger.WarnContext(ctx, "waiting for the signer", slog.String("url", c.URL), slog.String("key", c.Key), slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("key %q from signer %s: %w (last error: %v)", c.Key, c.URL, ctx.Err(), err)
		case <-time.After(waitEvery):
		}
	}
}

var errNoKey = errors.New("the signer has no such key")

// keyAvailable is nil when the signer lists key with an active, available
// version.
func (c *Client) keyAvailable(ctx context.Context, key string) error {
	ks, err := c.Keys(ctx)
	if err != nil {
		return err
	}
	for _, k := range ks.Keys {
		if k.Name != key {
			continue
		}
		for _, v := range k.Versions {
			if v.State == "active" && v.Available {
				return nil
			}
		}
		return errors.New("no active, available version yet")
	}
	return errNoKey
}
