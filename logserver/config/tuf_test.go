package config

import (
	"strings"
	"testing"
	"time"
)

func TestTUF(t *testing.T) {
	base := "hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\ntrust:\n  url: https://rekor.example\n"
	keys := "    root_key: {file: root.pem}\n    online_key: {signer: {url: https://signer, token_file: t, key: tuf-online}}\n"
	c, err := load(t, base+"  dir: /trust\n  tuf:\n"+keys)
	if err != nil {
		t.Fatal(err)
	}
	tuf := c.Trust.TUF
	if tuf.Path != "/tuf/" || tuf.Dir != "/trust/tuf" || tuf.TimestampExpiry != 24*time.Hour || tuf.RefreshMargin != 12*time.Hour ||
		tuf.RootExpiry != 8760*time.Hour || tuf.TargetsExpiry != 2160*time.Hour || tuf.OnlineKey.Signer.Timeout != 10*time.Second {
		t.Fatalf("defaults: %+v", tuf)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"no dir":        {"  tuf:\n" + keys, "trust.tuf.dir"},
		"no root key":   {"  dir: d\n  tuf:\n    online_key: {file: o.pem}\n", "trust.tuf.root_key.file or trust.tuf.root_key.signer"},
		"both":          {"  dir: d\n  tuf:\n    root_key: {file: r, signer: {url: u, token_file: t, key: k}}\n    online_key: {file: o}\n", "trust.tuf.root_key.file and"},
		"signer no key": {"  dir: d\n  tuf:\n    root_key: {file: r}\n    online_key: {signer: {url: u, token_file: t}}\n", "trust.tuf.online_key.signer: url, token_file and key are required"},
		"bad path":      {"  dir: d\n  tuf:\n    path: tuf\n" + keys, "trust.tuf.path"},
		"taken path":    {"  dir: d\n  tuf:\n    path: /trust/\n" + keys, "taken"},
		"margin":        {"  dir: d\n  tuf:\n    timestamp_expiry: 1h\n    refresh_margin: 2h\n" + keys, "refresh_margin"},
		"negative":      {"  dir: d\n  tuf:\n    root_expiry: -1h\n" + keys, "root_expiry"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, base+tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}
