package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/internal/service"
)

func load(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p)
}

func TestDefaults(t *testing.T) {
	c, err := load(t, "hostname: log.example\ndatabase:\n  dsn: u:p@tcp(127.0.0.1:3306)/db\nkey:\n  file: k.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:3000" || c.Trillian.Mode != "embedded" || c.Sequencer.BatchSize != 1000 ||
		c.Sequencer.Interval != 50*time.Millisecond || c.API.MaxRequestBytes != 32<<20 || c.Database.MaxConns != 32 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.HTTP != (service.Timeouts{ReadHeader: 5 * time.Second, Read: time.Minute, Write: 2 * time.Minute, Idle: 2 * time.Minute, Shutdown: 15 * time.Second}) ||
		c.Logging != (service.Logging{Level: "info", Format: "text"}) {
		t.Fatalf("HTTP or logging defaults: %+v %+v", c.HTTP, c.Logging)
	}
}

// TestHTTPTimeouts: the timeouts are top-level keys, as in every service.
func TestHTTPTimeouts(t *testing.T) {
	c, err := load(t, "hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nread_timeout: 30s\nwrite_timeout: 45s\nshutdown_timeout: 5s\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Read != 30*time.Second || c.HTTP.Write != 45*time.Second || c.HTTP.Shutdown != 5*time.Second || c.HTTP.Idle != 2*time.Minute {
		t.Fatalf("%+v", c.HTTP)
	}
}

func TestDSNFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "dsn")
	os.WriteFile(f, []byte("u:p@tcp(127.0.0.1:3306)/db\n"), 0o600)
	c, err := load(t, "hostname: h\ndatabase:\n  dsn_file: "+f+"\nkey:\n  file: k.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.DSN != "u:p@tcp(127.0.0.1:3306)/db" {
		t.Fatalf("dsn %q", c.Database.DSN)
	}
}

func TestRejects(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field":   {"hostname: h\nbogus: 1\n", "bogus"},
		"no dsn":          {"hostname: h\nkey:\n  file: k\n", "database.dsn"},
		"no key":          {"hostname: h\ndatabase:\n  dsn: x\n", "key.file"},
		"two keys":        {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\n  signer: {url: u, token_file: t, key: k}\n", "exclusive"},
		"signer no token": {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  signer: {url: u, key: k}\n", "token_file"},
		"bad mode":        {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\ntrillian:\n  mode: cloud\n", "trillian.mode"},
		"remote no addr":  {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\ntrillian:\n  mode: remote\n", "trillian.address"},
		"hostname spaces": {"hostname: a b\ndatabase:\n  dsn: x\nkey:\n  file: k\n", "hostname"},
		"bad listen":      {"listen: nope\nhostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\n", "listen"},
		"batch too big":   {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nsequencer:\n  batch_size: 100000\n", "batch_size"},
		"short write":     {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nwrite_timeout: 30s\n", "must exceed api.write_timeout"},
		"negative read":   {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nread_timeout: -1s\n", "read_timeout -1s"},
		"bad level":       {"hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nlogging:\n  level: loud\n", "logging.level"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestExample keeps the documented example configuration valid (its DSN
// file is replaced by one the test writes).
func TestExample(t *testing.T) {
	data, err := os.ReadFile("../logserver.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dsn := filepath.Join(t.TempDir(), "dsn")
	os.WriteFile(dsn, []byte("rekor:pw@tcp(127.0.0.1:3306)/rekor\n"), 0o600)
	c, err := load(t, strings.Replace(string(data), "/run/secrets/rekor-dsn", dsn, 1))
	if err != nil {
		t.Fatal(err)
	}
	if c.Key.Signer == nil || c.Witnessing.Origin != "rekor.stella.example/log" || c.Sequencer.Interval != 20*time.Millisecond ||
		c.Trust == nil || c.Trust.TUF == nil || c.Trust.TUF.OnlineKey.Signer.Key != "tuf-online" {
		t.Fatalf("example not loaded as written: %+v", c)
	}
}
