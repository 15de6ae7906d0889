package config

import (
	"strings"
	"testing"
)

func TestRekorV2(t *testing.T) {
	base := "hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nwitnessing:\n  origin: log.example\n  key_file: n.pem\n"
	c, err := load(t, base+"rekor_v2:\n  url: http://127.0.0.1:3000/\n  key_file: v2.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.RekorV2.Origin() != "127.0.0.1" || c.RekorV2.TilesPrefix != "/api/v2/" {
		t.Fatalf("origin %q, prefix %q", c.RekorV2.Origin(), c.RekorV2.TilesPrefix)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"no url":        {"rekor_v2:\n  key_file: v2.pem\n", "rekor_v2.url"},
		"no host":       {"rekor_v2:\n  url: http:///x\n  key_file: v2.pem\n", "rekor_v2.url"},
		"origin of v1":  {"rekor_v2:\n  url: https://log.example\n  key_file: v2.pem\n", "two logs need two origins"},
		"no key":        {"rekor_v2:\n  url: https://v2.example\n", "rekor_v2.key_file or rekor_v2.signer"},
		"both keys":     {"rekor_v2:\n  url: https://v2.example\n  key_file: k\n  signer: {url: u, token_file: t, key: k}\n", "exclusive"},
		"signer no key": {"rekor_v2:\n  url: https://v2.example\n  signer: {url: u, token_file: t}\n", "rekor_v2.signer"},
		"same prefix":   {"rekor_v2:\n  url: https://v2.example\n  key_file: k\n  tiles_prefix: /\n", "also tiles.prefix"},
		"bad prefix":    {"rekor_v2:\n  url: https://v2.example\n  key_file: k\n  tiles_prefix: v2\n", "rekor_v2.tiles_prefix"},
		"bad v1 prefix": {"tiles:\n  prefix: /x\n", "tiles.prefix"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, base+tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}
