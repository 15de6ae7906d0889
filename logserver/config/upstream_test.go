package config

import (
	"strings"
	"testing"
	"time"
)

func TestUpstream(t *testing.T) {
	base := "hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\n"
	c, err := load(t, base+"upstream:\n  v1: {url: https://rekor.example, public_key_file: up.pem}\n")
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstream
	if u.Timeout != 30*time.Second || u.PollInterval != time.Second || u.Grace != time.Hour || u.Retry.MaxAttempts != -1 ||
		u.Retry.InitialDelay != 5*time.Second || u.Tenant != "upstream" || u.Tier != "graph" || u.Parallel != 4 || u.MaxOutbox != 100000 {
		t.Fatalf("defaults %+v", u)
	}
	if c, err = load(t, base+"upstream:\n  v1: {url: https://rekor.example, public_key_file: up.pem}\n  retry: {max_attempts: 5}\n"); err != nil || c.Upstream.Retry.MaxAttempts != 5 {
		t.Fatalf("max_attempts 5: %v", err)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"no log":        {"upstream: {tenant: x}\n", "give v1 or v2"},
		"bad url":       {"upstream:\n  v1: {url: rekor.example, public_key_file: k}\n", "upstream.v1.url"},
		"no key":        {"upstream:\n  v1: {url: https://rekor.example}\n", "upstream.v1.public_key_file"},
		"v2 without v2": {"upstream:\n  v2: {url: https://v2.example, public_key_file: k}\n", "needs rekor_v2"},
		"bad retry":     {"upstream:\n  v1: {url: https://r.example, public_key_file: k}\n  retry: {backoff_multiplier: 0.5}\n", "upstream.retry"},
		"bad parallel":  {"upstream:\n  v1: {url: https://r.example, public_key_file: k}\n  parallel: 100\n", "upstream.parallel"},
		"bad outbox":    {"upstream:\n  v1: {url: https://r.example, public_key_file: k}\n  max_outbox: -1\n", "upstream.max_outbox"},
		"unknown field": {"upstream:\n  v1: {url: https://r.example, public_key_file: k, api: v1}\n", "api"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, base+tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}
