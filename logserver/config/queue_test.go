package config

import (
	"strings"
	"testing"
	"time"
)

func TestQueue(t *testing.T) {
	base := "hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\n"
	c, err := load(t, base)
	if err != nil {
		t.Fatal(err)
	}
	q := c.Queue
	if q.Disabled || !q.Draining() || q.MaxSize != 10000 || q.Workers != 8 || q.Poll != time.Second ||
		q.Lease != 60*time.Second || q.MaxBodyBytes != 4<<20 || q.Retry.MaxAttempts != 3 || q.DefaultTenant != "default" {
		t.Fatalf("defaults: %+v", q)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"short lease":   {"api:\n  write_timeout: 30s\nqueue:\n  lease: 35s\n", "queue.lease"},
		"body too big":  {"queue:\n  max_body_bytes: 33554432\n", "queue.max_body_bytes"},
		"negative size": {"queue:\n  max_size: -1\n", "queue.max_size"},
		"bad retry":     {"queue:\n  retry: {backoff_multiplier: 0.5}\n", "queue.retry"},
		"bad poll":      {"queue:\n  poll: 1ms\n", "queue.poll"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, base+tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}
