package config

import (
	"strings"
	"testing"
)

// A freeze loads for either log; a successor needs frozen and an http(s)
// URL.
func TestFreeze(t *testing.T) {
	base := "hostname: h\ndatabase:\n  dsn: x\nkey:\n  file: k\nwitnessing:\n  key_file: n.pem\n  origin: v1.example\n" +
		"rekor_v2:\n  url: https://v2.example\n  key_file: v2.pem\n"
	c, err := load(t, base+"  freeze: {frozen: true, successor: https://v3.example}\nfreeze:\n  frozen: true\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Freeze.Frozen || c.Freeze.Successor != "" || !c.RekorV2.Freeze.Frozen || c.RekorV2.Freeze.Successor != "https://v3.example" {
		t.Fatalf("freezes: %+v %+v", c.Freeze, c.RekorV2.Freeze)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"successor not frozen": {base + "freeze: {successor: https://v3.example}\n", "freeze.successor is set but freeze.frozen is not"},
		"successor no URL":     {base + "  freeze: {frozen: true, successor: v3.example}\n", "rekor_v2.freeze.successor"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := load(t, tc.yaml); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
